"""The one training loop: `dhm train`, `dhm distill` and `dhm distill-audio` are tasks it runs.

A task (`StepTask`) knows how to take one optimisation step, what to do after it (a held-out
evaluation, a loss record) and how to save its resumable state; the loop owns what makes a
run safe to leave for hours, the same for every task:

* the output folder is checked before any training, and until the first state or checkpoint
  is written a failure leaves nothing behind (`prepare_output`, `RunFolder`);
* `--resume` refuses a state saved with other settings (`RunConfig.first_difference`);
* Ctrl-C or SIGTERM stops after the step in flight and saves a resumable state (`StopFlag`;
  under `torchrun` every rank stops at the same step);
* a progress line with speed and ETA (`Progress`); the learning-rate schedules are here too.
Tasks stop on a non-finite loss themselves, naming the step (`TrainingError`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import torch

from dhm.errors import DhmError, OutputError
from dhm.io import atomic_path, check_output, read_json, write_owner

STATE_FILE = "resume.pt"
RUN_FILE = "run.json"


class TrainingError(DhmError):
    """Training had to stop (NaN loss, bad settings for a resume)."""


class Interrupted(DhmError):
    exit_code = 130


@dataclass
class RunConfig:
    """Everything that determines a run's result (compared on --resume)."""

    kind: str  # "train" or "distill"
    data: str
    data_hash: str
    student: dict[str, Any]
    teacher_sha256: str | None
    steps: int
    batch_size: int
    lr: float
    seed: int
    weights: dict[str, float]
    eval_every: int
    eval_frames: int
    init: str
    world_size: int = 1
    ema: float = 0.0  # decay of the weights' moving average that is evaluated and kept (0: the raw weights)
    teacher_pool: int = 0  # distill: training pairs whose teacher outputs are computed once (0: every step)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def first_difference(self, other: dict[str, Any]) -> str | None:
        mine = self.to_dict()
        # a key added since a state was saved compares as its default, the value that run used
        defaults = {f.name: f.default for f in fields(self) if f.default is not MISSING}
        for key in mine:
            saved = other.get(key, defaults.get(key))
            if key == "weights" and isinstance(saved, dict):
                # a loss term added since (LossWeights.border) did not exist then: weight 0
                saved = {**dict.fromkeys(mine[key], 0.0), **saved}
            if mine[key] != saved:
                return f"{key}: this run {mine[key]!r}, saved run {saved!r}"
        return None


@dataclass
class RunResult:
    out_dir: Path
    checkpoint: Path
    history: list[dict[str, Any]]
    best: dict[str, Any]
    seconds: float
    steps_done: int
    resumed_from: int
    extra: dict[str, Any] = field(default_factory=dict)


def lr_at(step: int, total: int, base: float) -> float:
    """Linear warm-up over 5% of the steps, then cosine decay to 5% of base."""
    warm = max(1, int(0.05 * total))
    if step < warm:
        return base * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


class Progress:
    """A progress line on stderr: step, loss, speed and ETA."""

    def __init__(self, total: int, start: int, label: str, enabled: bool = True) -> None:
        self.total, self.start, self.label, self.enabled = total, start, label, enabled
        self.t0 = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.last_print = 0.0

    def update(self, step: int, loss: float, extra: str = "") -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        done = step + 1 - self.start
        rate = done / max(now - self.t0, 1e-9)
        eta = (self.total - step - 1) / max(rate, 1e-9)
        line = (
            f"{self.label} step {step + 1}/{self.total} loss {loss:.4f} "
            f"{rate:.2f} it/s ETA {int(eta // 60)}:{int(eta % 60):02d}{extra}"
        )
        if self.tty:
            sys.stderr.write("\r" + line.ljust(100))
            if step + 1 == self.total:
                sys.stderr.write("\n")
        elif now - self.last_print > 5 or step + 1 == self.total or done == 1:
            sys.stderr.write(line + "\n")
            self.last_print = now
        sys.stderr.flush()

    def message(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write(("\n" if self.tty else "") + text + "\n")
            sys.stderr.flush()


def dist_env() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return world, rank


class RunFolder:
    """The run's output folder. It is created (or, with --force, an earlier folder is set
    aside beside it) before training; until the run has written its first checkpoint or
    resumable state, a failure, Ctrl-C or SIGTERM removes what this run created and brings
    the set-aside folder back. After that the folder is the run's (resumable) state and
    the set-aside one is deleted."""

    def __init__(self, out: Path, backup: Path | None, created: list[Path], fresh: bool) -> None:
        self.out, self.backup, self.created, self.fresh = out, backup, created, fresh
        self.committed = not fresh

    def commit(self) -> None:
        if not self.committed:
            self.committed = True
            if self.backup is not None:
                shutil.rmtree(self.backup, ignore_errors=True)
                self.backup = None

    def rollback(self) -> None:
        if self.committed:
            return
        shutil.rmtree(self.out, ignore_errors=True)
        if self.backup is not None:
            os.replace(self.backup, self.out)
        for p in reversed(self.created):
            with contextlib.suppress(OSError):
                p.rmdir()


def prepare_output(
    out: Path, config: RunConfig, resume: bool, force: bool, inputs: Sequence[str | Path | None] = ()
) -> tuple[dict[str, Any] | None, RunFolder]:
    """Check OUT before training: the saved state to resume from (if any) and the folder."""
    check_output(out, kind="dir", command=config.kind, force=force or resume, inputs=inputs)
    run_file = out / RUN_FILE
    state_file = out / STATE_FILE
    if resume:
        if not state_file.is_file():
            raise TrainingError(f"{out}: nothing to resume (no {STATE_FILE})")
        try:
            state = torch.load(state_file, map_location="cpu", weights_only=True)
            saved = state["config"]
        except Exception as exc:
            raise TrainingError(f"{state_file}: unreadable resume state ({type(exc).__name__})") from None
        diff = config.first_difference(saved)
        if diff:
            raise TrainingError(f"--resume from a run with other settings ({diff})")
        return state, RunFolder(out, None, [], fresh=False)
    backup = None
    if out.exists() and any(out.iterdir()):
        if not force:
            if run_file.is_file():
                saved = read_json(run_file, "run record")
                diff = config.first_difference(saved.get("config", {}) if isinstance(saved, dict) else {})
                if diff:
                    raise OutputError(f"{out}: holds a different run ({diff}); use --force to replace it")
                raise OutputError(
                    f"{out}: holds this run already; use --resume to continue it or --force to start over"
                )
            raise OutputError(f"{out}: exists and is not empty; use --force to replace it")
        backup = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, backup)
    created = [p for p in reversed([out, *out.absolute().parents]) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if backup is not None:
            os.replace(backup, out)
        raise OutputError(f"{out}: cannot create output folder ({exc.strerror or exc})") from None
    write_owner(out, config.kind)
    return None, RunFolder(out, backup, created, fresh=True)


class StopFlag:
    """Ctrl-C (or SIGTERM) asks the loop to stop after the step in flight (so the saved
    state is a complete step and --resume stays bit-for-bit); a second one stops at once."""

    def __init__(self) -> None:
        self.flag = False
        self._old: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True

    def install(self) -> None:
        import threading

        if threading.current_thread() is threading.main_thread():
            # SIGTERM (a scheduler stopping the job) saves the state like Ctrl-C does.
            self._old = {sig: signal.signal(sig, self._handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def uninstall(self) -> None:
        if self._old is not None:
            for sig, old in self._old.items():
                signal.signal(sig, old)
            self._old = None

    def requested(self, world: int, dev: torch.device) -> bool:
        if world > 1:  # every rank must stop at the same step
            import torch.distributed as dist

            t = torch.tensor([1.0 if self.flag else 0.0], device=dev)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            return bool(t.item())
        return self.flag


def write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def cosine(step: int, total: int, base: float) -> float:
    """Cosine decay from base to 0, no warm-up (the audio students)."""
    return base * 0.5 * (1 + math.cos(math.pi * step / total))


class StepTask(Protocol):
    label: str  # the progress line's name
    steps: int  # the run's total
    start: int  # the first step to take (after a resume)
    save_final: bool  # also save the resumable state after the last step

    def step(self, step: int) -> float: ...

    def after_step(self, done: int, loss: float) -> str | None: ...

    def save_state(self, done: int) -> None: ...


@dataclass
class LoopPlace:
    """Where a run saves and which process of a `torchrun` job this is."""

    out: Path
    save_every: int
    world: int = 1
    rank: int = 0
    dev: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: bool = True
    on_step: Callable[[int], None] | None = None  # called with each finished step (tests interrupt through it)


def run_loop(task: StepTask, place: LoopPlace) -> float:
    """Steps `task.start` .. `task.steps`; the seconds it took. Ctrl-C saves and raises Interrupted."""
    is_main = place.rank == 0
    bar = Progress(task.steps, task.start, task.label, enabled=place.progress and is_main)
    stop = StopFlag()
    t0 = time.perf_counter()
    try:
        stop.install()
        for step in range(task.start, task.steps):
            loss = task.step(step)
            done = step + 1
            message = task.after_step(done, loss)
            if message is not None:
                bar.message(message)
            bar.update(step, loss)
            if place.on_step is not None:
                place.on_step(done)
            interrupted = stop.requested(place.world, place.dev)
            if done % place.save_every == 0 or (task.save_final and done == task.steps) or interrupted:
                task.save_state(done)
            if interrupted:
                raise Interrupted(
                    f"interrupted: state saved after step {done} in {place.out / STATE_FILE} (continue with --resume)"
                )
    finally:
        stop.uninstall()
    return time.perf_counter() - t0
