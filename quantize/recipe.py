"""The quantize recipe: what `dhm quantize` decided, so `dhm export` can rebuild it.

A quantize output folder holds the source checkpoint (`model.pt`), the calibration and
evaluation sets (`calib.npz`, `eval.npz`) and `recipe.json`: the generator spec and, per
engine, the INT8 build config (`dhm.runtime_py.engines.build`, serialized) with the measurements that
chose it. Export rebuilds each INT8 file from its config through the engine layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dhm.errors import SpecError
from dhm.io import read_json
from dhm.spec import GeneratorSpec

RECIPE_FILE = "recipe.json"
RECIPE_SCHEMA = "dhm.quantize-recipe/1"
SOURCE_FILE = "model.pt"
CALIB_FILE = "calib.npz"
EVAL_FILE = "eval.npz"
# recipe section -> the engine whose INT8 build it describes
INT8_SECTIONS = {"onnx_int8": "onnxruntime", "mnn_int8": "mnn"}


def read_recipe(folder: str | Path) -> dict[str, Any]:
    """A quantize folder's recipe, checked (one clear line for one that is not usable)."""
    path = Path(folder) / RECIPE_FILE
    if not path.is_file():
        raise SpecError(f"{folder}: a folder, but not a `dhm quantize` output (no {RECIPE_FILE})")
    recipe = read_json(path, "quantize recipe")
    if not isinstance(recipe, dict) or recipe.get("schema") != RECIPE_SCHEMA:
        found = recipe.get("schema") if isinstance(recipe, dict) else type(recipe).__name__
        raise SpecError(f"{path}: recipe schema {found!r}, expected {RECIPE_SCHEMA!r}")
    problem = recipe_problem(recipe)
    if problem:
        raise SpecError(f"{path}: not a usable recipe ({problem})")
    return recipe


def _plain(v: Any) -> bool:
    return isinstance(v, str) and "/" not in v and "\\" not in v and v not in ("", ".", "..")


def recipe_problem(recipe: dict[str, Any]) -> str | None:
    """What is missing or mistyped in a recipe (the parts export reads), or None."""
    checks: list[tuple[str, tuple[str, ...], Any]] = [
        ("source.file", ("source", "file"), _plain),
        ("source.sha256", ("source", "sha256"), lambda v: isinstance(v, str) and len(v) == 64),
        ("spec", ("spec",), lambda v: isinstance(v, dict)),
        ("calibration.file", ("calibration", "file"), _plain),
        ("evaluation.file", ("evaluation", "file"), _plain),
    ]
    for section in INT8_SECTIONS:
        if section in recipe:
            checks.append((f"{section}.fallback", (section, "fallback"), lambda v: isinstance(v, list)))
    for name, keys, ok in checks:
        value: Any = recipe
        for k in keys:
            value = value.get(k) if isinstance(value, dict) else None
        if value is None:
            return f"missing {name}"
        if not ok(value):
            return f"{name} has the wrong type or value"
    try:
        GeneratorSpec.from_dict(recipe["spec"])
        for section in INT8_SECTIONS:
            if section in recipe:
                int8_config(recipe, section)
    except SpecError as exc:
        return str(exc)
    return None


def int8_config(recipe: dict[str, Any], section: str) -> Any:
    """The INT8 build config a recipe section describes (older recipes list the fields)."""
    from dhm.runtime_py.engines.configs import MnnInt8, OnnxInt8, config_from_dict

    q = recipe[section]
    if not isinstance(q, dict):
        raise SpecError(f"{section} has the wrong type")
    if "config" in q:
        config = config_from_dict(q["config"])
    else:  # recipes written before configs were serialized
        try:
            if section == "onnx_int8":
                config = OnnxInt8(
                    method=str(q["method"]),
                    exclude=tuple(q["nodes_to_exclude"]),
                    act_symmetric=bool(q.get("act_symmetric", False)),
                    weight_type=str(q.get("weight_type", "int8")),
                )
            else:
                config = MnnInt8(method=str(q["method"]), skip=tuple(q["skip_quant_op_names"]))
        except (KeyError, TypeError) as exc:
            raise SpecError(f"{section}: missing or mistyped {exc}") from None
    expected = OnnxInt8 if section == "onnx_int8" else MnnInt8
    if not isinstance(config, expected) or not all(
        isinstance(x, str) for x in getattr(config, "exclude", getattr(config, "skip", ()))
    ):
        raise SpecError(f"{section}: not an {expected.__name__} config")
    return config


def measured_psnr(recipe: dict[str, Any], section: str) -> float | None:
    """The held-out PSNR quantize measured for the INT8 file it kept (the best round)."""
    steps = (recipe.get(section) or {}).get("fallback", [])
    kept = [s for s in steps if isinstance(s, dict) and (s.get("gain_db") is None or s["gain_db"] >= 0.1)]
    if not kept:
        return None
    value = kept[-1].get("psnr")
    return 99.0 if value == "inf" else float(value) if isinstance(value, (int, float)) else None
