"""A stage's settings, declared once: each field of its config dataclass carries its default,
its help and its range, and the command line is generated from them (`click_options`), so a
default or a bound is never restated in the CLI.

    @dataclass(frozen=True)
    class QuantizeConfig:
        calib_frames: int = setting(24, "Calibration frames.", lo=8, hi=10_000)

    @click_options(QuantizeConfig)      # --calib-frames INTEGER RANGE [default: 24; 8<=x<=10000]
    def quantize(..., **settings): quantize_model(..., QuantizeConfig(**settings))
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click


class Finite(click.ParamType):
    """A finite float in [lo, hi] (`lo_open`: above lo). click.FloatRange lets NaN through,
    since every comparison with NaN is false."""

    name = "number"

    def __init__(self, lo: float, hi: float, lo_open: bool = False) -> None:
        self.lo, self.hi, self.lo_open = lo, hi, lo_open

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        low_ok = v > self.lo if self.lo_open else v >= self.lo
        if not math.isfinite(v) or not low_ok or v > self.hi:
            self.fail(
                f"{value!r} is not a finite number in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}]",
                param,
                ctx,
            )
        return v

    def __repr__(self) -> str:
        return f"Finite({self.lo}, {self.hi})"


def Count(lo: int, hi: int) -> click.IntRange:  # noqa: N802 (reads like a type)
    return click.IntRange(lo, hi)


@dataclass(frozen=True)
class Setting:
    """How one config field appears on the command line."""

    help: str
    option: str | None = None  # "--method", "--fp16/--no-fp16"; default: --field-name
    lo: float | None = None  # a number's range (ints: Count, floats: Finite)
    hi: float | None = None
    lo_open: bool = False  # floats: above lo, not at it
    choices: tuple[str, ...] | None = None
    path: bool = False  # a file or folder argument
    flag: bool = False  # a plain on/off switch (--inc)
    show_default: bool = True  # False where the default is a rule the help states ("default: steps/6")
    parse: Callable[[str], Any] | None = None  # a comma-separated list: its text -> the value (in `pick`)


def setting(default: Any, help: str, **how: Any) -> Any:
    """A config field with its command-line form (`Setting`'s fields as keywords)."""
    return dataclasses.field(default=default, metadata={"cli": Setting(help, **how)})


def _param_type(s: Setting, default: Any) -> Any:
    if s.choices is not None:
        return click.Choice(list(s.choices))
    if s.path:
        return click.Path(path_type=Path)
    if s.lo is not None and s.hi is not None:
        return Finite(s.lo, s.hi, s.lo_open) if isinstance(default, float) else Count(int(s.lo), int(s.hi))
    return None


def click_options(
    config: type,
    only: Sequence[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    helps: Mapping[str, str] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """click options for the fields of `config` that declare one (`only`: these, in this order),
    each a keyword argument named like the field (`pick` takes them back). `defaults` and
    `helps`: where one command uses a field with another default or meaning (train and distill
    share the training settings and the loss weights)."""
    declared = {f.name: f for f in dataclasses.fields(config) if "cli" in f.metadata}
    fields = [declared[n] for n in only] if only is not None else list(declared.values())
    defaults, helps = defaults or {}, helps or {}

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for f in reversed(fields):  # click lists options in the order their decorators are read
            s: Setting = f.metadata["cli"]
            default = defaults.get(f.name, f.default)
            option = s.option or "--" + f.name.replace("_", "-")
            kw: dict[str, Any] = {"help": helps.get(f.name, s.help) or None}
            if s.flag:
                kw["is_flag"] = True
            else:
                kw["default"] = ",".join(map(str, default)) if s.parse is not None else default
                kw["show_default"] = default is not None and s.show_default
                param_type = _param_type(s, default)
                if param_type is not None:
                    kw["type"] = param_type
            command = click.option(option, f.name, **kw)(command)
        return command

    return decorate


def crop_interpolation_option(f: Any) -> Any:
    """--crop-interpolation, for every command that reads a checkpoint."""
    from dhm.spec import INTERPOLATIONS

    return click.option(
        "--crop-interpolation",
        "crop_interpolation",
        type=click.Choice(list(INTERPOLATIONS)),
        default=None,
        help="The crop filter the model was trained with, when you know better than its revision's default "
        "(upstream before 2026-05-23: linear; since: area). Refused where a dhm checkpoint records another.",
    )(f)


def pick(config: type, values: dict[str, Any]) -> Any:
    """`config` built from the command's keyword arguments that are its fields (comma-separated
    lists parsed here: a bad one is one `dhm: error:` line)."""
    declared = {f.name: f.metadata["cli"] for f in dataclasses.fields(config) if "cli" in f.metadata}
    kw = {k: v for k, v in values.items() if k in declared}
    for name, value in kw.items():
        if declared[name].parse is not None and isinstance(value, str):
            kw[name] = declared[name].parse(value)
    return config(**kw)
