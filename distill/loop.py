"""The training loop behind `dhm train` and `dhm distill`.

One loop serves both: `train` fits a generator to ground truth; `distill` fits a
student to a frozen teacher (outputs, structure and intermediate features), optionally
with a ground-truth term. What makes it safe to run for hours:

* settings are checked (dataset split, widths, output folder) before any training;
* batches depend only on (seed, step[, rank]) and the learning rate is a function of the
  step, so `--resume` from the saved state continues bit-for-bit;
* Ctrl-C saves a resumable state; a NaN loss stops the run naming the step and keeps the
  last good checkpoint;
* held-out evaluation at regular steps keeps the best checkpoint;
* under `torchrun` it trains with DistributedDataParallel (rank 0 evaluates and writes).
"""

from __future__ import annotations

import contextlib
import hashlib
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
from typing import Any

import numpy as np
import torch
from torch import nn

from dhm.data import SampleBuilder, open_dataset, split_frames
from dhm.data.inputs import evenly_spaced
from dhm.errors import DhmError, OutputError, SpecError
from dhm.io import atomic_path, check_output, read_json, write_owner
from dhm.metrics import image_quality
from dhm.models import LoadedCheckpoint, build_model, fold_batchnorm, save_checkpoint
from dhm.models.checkpoint import write_torch
from dhm.spec import GeneratorSpec
from dhm.distill.losses import (
    FeatureAdapters,
    border_mask,
    feature_channels,
    masked_l1,
    mouth_weight_map,
    ssim,
    weighted_l1,
)
from dhm.distill.weights import LossWeights

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


def dataset_hash(ds) -> str:
    """Content hash of what training reads: features, landmarks, and each image's bytes."""
    h = hashlib.sha256()
    for mode in ds.modes:
        h.update(mode.encode())
        h.update(np.ascontiguousarray(ds.features[mode]).tobytes())
    h.update(np.ascontiguousarray(ds.landmarks).tobytes())
    for i in range(ds.n_frames):
        h.update(ds.image_path(i).read_bytes())
    return h.hexdigest()


def lr_at(step: int, total: int, base: float) -> float:
    """Linear warm-up over 5% of the steps, then cosine decay to 5% of base."""
    warm = max(1, int(0.05 * total))
    if step < warm:
        return base * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


class _Trainable(nn.Module):
    """Student plus feature adapters in one module (what DDP wraps)."""

    def __init__(self, student: nn.Module, adapters: FeatureAdapters | None) -> None:
        super().__init__()
        self.student = student
        self.adapters = adapters

    def forward(self, face: torch.Tensor, audio: torch.Tensor):
        logits, feats = self.student.features(face, audio)
        adapted = {k: self.adapters.maps[k](feats[k]) for k in self.adapters.maps} if self.adapters else {}
        return logits, adapted


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


def _dist_env() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return world, rank


class HeldOut:
    """The held-out frames a run is judged on, in both protocols (dhm.data.inputs):
    "inference" (reference = target, as deployed: a parity figure) and "generation"
    (reference = another held-out frame, as in training: the mouth must come from the
    audio). The best step is chosen by the generation protocol. Lips (`dhm.data.lips`) and,
    on the built-in data, lip sync (true mouth opening against the opening measured in the
    generated mouth window) are measured too."""

    def __init__(self, builder: SampleBuilder, frames: list[int], teacher: nn.Module | None, dev: torch.device) -> None:
        from dhm.data.inputs import generation_references, true_openness
        from dhm.data.lips import lip_region, union_box

        ds = builder.dataset
        self.dev, self.frames = dev, frames
        self.batches = {
            "inference": builder.batch(frames),
            "generation": builder.batch(frames, generation_references(frames)),
        }
        pre = builder.conventions.preprocess
        lips = [lip_region(ds.landmarks[i], ds.boxes[i], ds.frame_hw, pre) for i in frames]
        self.lips = lips if any(r is not None for r in lips) else None
        self.window = union_box(lips)
        opening = true_openness(ds.root)
        self.openness = [opening[i] for i in frames] if opening and len(opening) >= ds.n_frames else None
        self.teacher = {p: _predict(teacher, b, dev) for p, b in self.batches.items()} if teacher is not None else None
        self.key = ("generation", "vs_teacher" if teacher is not None else "vs_gt")

    def lip_sync(self, images: np.ndarray) -> float | None:
        from dhm.metrics import lip_sync

        if self.openness is None or self.window is None:
            return None
        return round(lip_sync(images, self.openness, self.window), 4)

    def ceiling(self) -> dict[str, Any]:
        """What the ground truth itself scores on lip sync (the best any model can)."""
        return {"lip_sync": self.lip_sync(self.batches["generation"]["target"])}

    def evaluate(self, model: nn.Module) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for protocol, batch in self.batches.items():
            pred = _predict(model, batch, self.dev)
            part = {"vs_gt": image_quality(pred, batch["target"], lips=self.lips).to_dict()}
            if self.teacher is not None:
                part["vs_teacher"] = image_quality(pred, self.teacher[protocol], lips=self.lips).to_dict()
            if protocol == "generation":
                part["lip_sync"] = self.lip_sync(pred)
                if self.teacher is not None:
                    part["teacher_lip_sync"] = self.lip_sync(self.teacher[protocol])
            row[protocol] = part
        return row

    def score(self, row: dict[str, Any]) -> float:
        protocol, against = self.key
        return float(row[protocol][against]["psnr"])


@dataclass
class TeacherPool:
    """The frozen teacher's outputs and features on a fixed set of (target, reference)
    training pairs, computed once before the first step. On a CPU the teacher's forward pass
    is a third of a distillation step (docs/distill.md); a pool of pairs drawn with the run's
    seed keeps --resume bit-for-bit. Features are kept in float16 to halve the memory."""

    pairs: np.ndarray  # [P, 2] frame indices: target, reference
    out: torch.Tensor  # [P, 3, H, W] the teacher's output after the sigmoid, float16
    feats: dict[str, torch.Tensor]  # name -> [P, C, h, w] float16

    @classmethod
    @torch.no_grad()
    def build(
        cls, builder: SampleBuilder, teacher: nn.Module, train_frames: np.ndarray, config: RunConfig,
        dev: torch.device, report: bool = True,
    ) -> "TeacherPool":  # fmt: skip
        rng = np.random.default_rng([config.seed, 0x7EAC])  # its own stream: the steps' draws stay as they were
        n = config.teacher_pool
        pairs = np.stack([rng.choice(train_frames, size=n), rng.choice(train_frames, size=n)], axis=1)
        t0 = time.perf_counter()
        outs: list[torch.Tensor] = []
        feats: dict[str, list[torch.Tensor]] = {}
        for lo in range(0, n, 8):
            batch = builder.batch(pairs[lo : lo + 8, 0].tolist(), pairs[lo : lo + 8, 1].tolist())
            face, audio = (_nhwc(torch.from_numpy(batch[k]).to(dev)) for k in ("face", "audio"))
            logits, maps = teacher.features(face, audio)
            outs.append(torch.sigmoid(logits.float()).half().cpu())
            for k, v in maps.items():
                feats.setdefault(k, []).append(v.half().cpu())
            if lo == 0:
                _check_pool_fits(n, outs[0], [f[0] for f in feats.values()])
        pool = cls(pairs, torch.cat(outs), {k: torch.cat(v) for k, v in feats.items()})
        if report:
            size = sum(t.numel() * t.element_size() for t in [pool.out, *pool.feats.values()])
            sys.stderr.write(f"teacher pool: {n} pairs, {size / 2**20:.0f} MiB, {time.perf_counter() - t0:.1f} s\n")
        return pool

    def take(self, chosen: np.ndarray, dev: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        rows = torch.from_numpy(chosen)
        return self.out[rows].to(dev).float(), {k: _nhwc(v[rows].to(dev).float()) for k, v in self.feats.items()}


def _check_pool_fits(pairs: int, out: torch.Tensor, maps: list[torch.Tensor]) -> None:
    """Refuse a pool larger than the free memory, judged from its first batch, before filling it."""
    need = pairs * sum(t.numel() * t.element_size() for t in [out, *maps]) / len(out)
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if need > 0.8 * free:
        raise SpecError(
            f"--teacher-pool {pairs}: the pool needs {need / 2**30:.1f} GiB and {free / 2**30:.1f} GiB are free; "
            "use fewer pairs"
        )


def objective(
    w: LossWeights,
    pred: torch.Tensor,
    target: torch.Tensor,
    lips: torch.Tensor,
    mouth_w: torch.Tensor,
    teacher_out: torch.Tensor | None = None,
    adapted: dict[str, torch.Tensor] | None = None,
    teacher_feats: dict[str, torch.Tensor] | None = None,
    logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """train: L1 (mouth-weighted) + SSIM + lips to the ground truth; distill: the same to
    the teacher's output, plus feature matching and an optional ground-truth term; both a
    BCE on the logits, whose gradient no saturated sigmoid can switch off."""
    goal = teacher_out if teacher_out is not None else target
    loss = w.pixel * weighted_l1(pred, goal, mouth_w) + w.ssim * (1 - ssim(pred, goal))
    if w.bce > 0 and logits is not None:
        loss = loss + w.bce * torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), goal)
    if w.lips > 0:
        loss = loss + w.lips * masked_l1(pred, goal, lips)
    if w.border > 0:
        loss = loss + w.border * masked_l1(pred, goal, border_mask(pred.shape[-1], pred.device))
    if teacher_out is not None:
        if adapted:
            loss = (
                loss
                + w.feature
                * torch.stack(
                    [torch.nn.functional.mse_loss(adapted[k].float(), teacher_feats[k].float()) for k in adapted]  # type: ignore[index]
                ).mean()
            )
        if w.gt > 0:
            loss = loss + w.gt * weighted_l1(pred, target, mouth_w)
    return loss


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


def run_training(
    config: RunConfig,
    out: Path,
    *,
    student_spec: GeneratorSpec,
    teacher: LoadedCheckpoint | None,
    resume: bool = False,
    force: bool = False,
    device: str = "cpu",
    save_every: int = 50,
    checkpoint_name: str = "student.pt",
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
    on_step: Callable[[int], None] | None = None,
    inputs: Sequence[str | Path | None] = (),
) -> RunResult:
    """`inputs`: the dataset and teacher, which OUT may not be, hold or lie inside."""
    world, rank = _dist_env()
    is_main = rank == 0
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SpecError("--device cuda: no CUDA device is available here")
    dev = torch.device(device)

    ds = open_dataset(config.data, mode=student_spec.mode)
    split = split_frames(ds.n_frames, min_train=max(config.batch_size, 16), min_heldout=4)
    folder: RunFolder | None = None
    if is_main:
        state, folder = prepare_output(out, config, resume, force, inputs=inputs)
    else:
        state = None
    try:
        return _train(
            config,
            out,
            student_spec,
            teacher,
            ds,
            split,
            state,
            folder,
            world,
            rank,
            dev,
            save_every,
            checkpoint_name,
            progress,
            metadata,
            on_step,
            resume,
        )
    except BaseException:
        if folder is not None:
            folder.rollback()
        raise


@dataclass
class _Session:
    """One run's mutable state: the models, the optimizer, the evaluation record."""

    config: RunConfig
    out: Path
    spec: GeneratorSpec
    builder: SampleBuilder
    student: nn.Module
    trainable: _Trainable
    model: nn.Module  # trainable, or its DDP wrapper
    teacher: nn.Module | None
    optimizer: torch.optim.Optimizer
    weights: LossWeights
    mouth_w: torch.Tensor
    heldout: HeldOut
    dev: torch.device
    checkpoint_name: str
    folder: "RunFolder | None"
    metadata: dict[str, Any] | None
    is_main: bool
    init_note: str
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    start: int = 0
    scaler: Any = None
    ema: nn.Module | None = None  # the moving average of the student's weights (config.ema > 0)
    pool: "TeacherPool | None" = None  # the teacher's outputs on fixed pairs (config.teacher_pool > 0)

    @property
    def kept(self) -> nn.Module:
        """The weights that are evaluated and saved: the moving average, else the student."""
        return self.ema if self.ema is not None else self.student

    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        """ema <- d*ema + (1-d)*student, with d ramping up over the first steps so the
        average does not stay anchored at the initial weights. Buffers (BatchNorm
        statistics) are averaged too."""
        if self.ema is None:
            return
        d = min(self.config.ema, (1 + step) / (10 + step))
        for avg, live in zip(self.ema.state_dict().values(), self.student.state_dict().values(), strict=True):
            if avg.dtype.is_floating_point:
                avg.lerp_(live, 1 - d)
            else:
                avg.copy_(live)

    def save_state(self, step_done: int) -> None:
        if not self.is_main:
            return
        payload = {
            "config": self.config.to_dict(),
            "step": step_done,
            "trainable": _cpu(self.trainable.state_dict()),
            "optimizer": self.optimizer.state_dict(),
            **({"ema": _cpu(self.ema.state_dict())} if self.ema is not None else {}),
            "history": json.dumps(self.history),
            "best": json.dumps(self.best),
        }
        with atomic_path(self.out / STATE_FILE) as tmp:
            write_torch(payload, tmp, self.out / STATE_FILE)
        if self.folder is not None:
            self.folder.commit()

    def evaluate(self, step_done: int, loss_value: float) -> str:
        """Score the student on the held-out frames, keep the best step's checkpoint, and
        return the progress line."""
        self.trainable.eval()
        row: dict[str, Any] = {"step": step_done, "loss": loss_value, **self.heldout.evaluate(self.kept)}
        self.trainable.train()
        self.history.append(row)
        if not self.best or self.heldout.score(row) > self.heldout.score(self.best):
            self.best.clear()
            self.best.update(row)
            c = self.config
            save_checkpoint(
                self.out / self.checkpoint_name,
                self.kept,
                self.spec,
                kind=c.kind,
                step=step_done,
                teacher_sha256=c.teacher_sha256,
                data_hash=c.data_hash,
                heldout=row,
                **(self.metadata or {}),
            )
            if self.folder is not None:
                self.folder.commit()
        protocol, against = self.heldout.key
        q = row[protocol][against]
        lip = f", lip-box {q['lip_psnr']:.2f} dB" if "lip_psnr" in q else ""
        return (
            f"  eval @ {step_done}: PSNR {q['psnr']:.2f} dB{lip}, SSIM {q['ssim']:.4f} "
            f"({against.replace('_', ' ')}, {protocol} protocol)"
        )

    def step(self, step: int, train_frames: np.ndarray, rank: int) -> float:
        """One optimization step on a random batch (reference = another training frame)."""
        c, dev = self.config, self.dev
        rng = np.random.default_rng([c.seed, step, rank])
        if self.pool is not None:
            chosen = rng.integers(0, len(self.pool.pairs), size=c.batch_size)
            idx, refs = self.pool.pairs[chosen, 0].tolist(), self.pool.pairs[chosen, 1].tolist()
        else:
            idx = rng.choice(train_frames, size=c.batch_size).tolist()
            refs = rng.choice(train_frames, size=c.batch_size).tolist()
        batch = self.builder.batch(idx, refs)
        face, audio, target, lips = (torch.from_numpy(batch[k]).to(dev) for k in ("face", "audio", "target", "lips"))
        face, audio = _nhwc(face), _nhwc(audio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(step, c.steps, c.lr)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=self.scaler is not None):
            logits, adapted = self.model(face, audio)
            pred = torch.sigmoid(logits.float())
            t_out = t_feats = None
            if self.pool is not None:
                t_out, t_feats = self.pool.take(chosen, dev)
            elif self.teacher is not None:
                with torch.no_grad():
                    t_logits, t_feats = self.teacher.features(face, audio)
                    t_out = torch.sigmoid(t_logits.float())
            loss = objective(self.weights, pred, target, lips, self.mouth_w, t_out, adapted, t_feats, logits)
        if not torch.isfinite(loss):
            kept = self.out / self.checkpoint_name
            note = f"; the last good checkpoint is kept: {kept}" if kept.exists() else "; no checkpoint was saved yet"
            raise TrainingError(f"loss became {float(loss.detach())} at step {step + 1}; training stopped{note}")
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.update_ema(step)
        return float(loss.detach())


def _session(
    config: RunConfig,
    out: Path,
    spec: GeneratorSpec,
    teacher: LoadedCheckpoint | None,
    ds: Any,
    eval_frames: list[int],
    train_frames: np.ndarray,
    state: dict[str, Any] | None,
    folder: "RunFolder | None",
    world: int,
    is_main: bool,
    dev: torch.device,
    checkpoint_name: str,
    metadata: dict[str, Any] | None,
) -> _Session:
    """The student (initialised from the teacher's channels or at random), its feature
    adapters, the optimizer, restored from `state` when resuming."""
    builder = SampleBuilder(ds, spec, cache_frames=ds.n_frames)
    torch.manual_seed(config.seed)
    student = build_model(spec)
    init_note = "random"
    if teacher is not None and config.init == "teacher":
        from dhm.distill.init import init_from_teacher

        sd, init_note = init_from_teacher(teacher.model.state_dict(), teacher.spec, spec, student.state_dict())
        student.load_state_dict(sd)
    w = LossWeights(**config.weights)
    adapters = None
    if teacher is not None and w.feature > 0:
        adapters = FeatureAdapters(feature_channels(student, spec), feature_channels(teacher.model, teacher.spec))
    trainable = _Trainable(student, adapters).to(dev, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(trainable.parameters(), lr=config.lr)
    teacher_model = None
    if teacher is not None:  # frozen: BatchNorm folded into its convolutions
        teacher_model = fold_batchnorm(teacher.model).to(dev, memory_format=torch.channels_last)
    if teacher_model is not None:
        for p in teacher_model.parameters():
            p.requires_grad_(False)
    model: nn.Module = trainable
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(trainable, device_ids=[dev.index] if dev.type == "cuda" else None)
    session = _Session(
        config=config, out=out, spec=spec, builder=builder, student=student, trainable=trainable, model=model,
        teacher=teacher_model, optimizer=optimizer, weights=w,
        mouth_w=mouth_weight_map(spec.image_size, w.mouth, dev),
        heldout=HeldOut(builder, eval_frames, teacher_model, dev), dev=dev, checkpoint_name=checkpoint_name,
        folder=folder, metadata=metadata, is_main=is_main, init_note=init_note,
        scaler=torch.amp.GradScaler("cuda") if dev.type == "cuda" else None,
    )  # fmt: skip
    if config.ema > 0:
        import copy

        session.ema = copy.deepcopy(student).eval()
        for p in session.ema.parameters():
            p.requires_grad_(False)
    if teacher_model is not None and config.teacher_pool > 0:
        session.pool = TeacherPool.build(builder, teacher_model, train_frames, config, dev, is_main)
    if state is not None:
        trainable.load_state_dict(state["trainable"])
        if session.ema is not None:
            session.ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        session.history = json.loads(state["history"])
        session.best = json.loads(state["best"])
        session.start = int(state["step"])
    return session


def _train(
    config: RunConfig,
    out: Path,
    student_spec: GeneratorSpec,
    teacher: LoadedCheckpoint | None,
    ds: Any,
    split: Any,
    state: dict[str, Any] | None,
    folder: "RunFolder | None",
    world: int,
    rank: int,
    dev: torch.device,
    save_every: int,
    checkpoint_name: str,
    progress: bool,
    metadata: dict[str, Any] | None,
    on_step: Callable[[int], None] | None,
    resume: bool,
) -> RunResult:
    is_main = rank == 0
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        if not is_main and resume:
            state = torch.load(out / STATE_FILE, map_location="cpu", weights_only=True)
    train_frames = np.asarray(split.train)
    eval_frames = evenly_spaced(split.eval, config.eval_frames)
    run = _session(
        config,
        out,
        student_spec,
        teacher,
        ds,
        eval_frames,
        train_frames,
        state,
        folder,
        world,
        is_main,
        dev,
        checkpoint_name,
        metadata,
    )
    if is_main:
        _write_json(
            out / RUN_FILE, {"config": config.to_dict(), "student": student_spec.to_dict(), "init": run.init_note}
        )

    bar = Progress(config.steps, run.start, config.kind, enabled=progress and is_main)
    stop = _StopFlag()
    t0 = time.perf_counter()
    try:
        stop.install()
        run.trainable.train()
        for step in range(run.start, config.steps):
            loss = run.step(step, train_frames, rank)
            done = step + 1
            if is_main and (done % config.eval_every == 0 or done == config.steps):
                bar.message(run.evaluate(done, loss))
            interrupted = stop.requested(world, dev)
            if done % save_every == 0 or done == config.steps or interrupted:
                run.save_state(done)
            bar.update(step, loss)
            if on_step:
                on_step(done)
            if interrupted:
                raise Interrupted(
                    f"interrupted: state saved after step {done} in {out / STATE_FILE} (continue with --resume)"
                )
    finally:
        stop.uninstall()
        if world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    return RunResult(
        out_dir=out,
        checkpoint=out / checkpoint_name,
        history=run.history,
        best=run.best,
        seconds=time.perf_counter() - t0,
        steps_done=config.steps - run.start,
        resumed_from=run.start,
        extra={
            "init": run.init_note,
            "train_frames": len(split.train),
            "eval_frames": eval_frames,
            "heldout_frames": len(split.heldout),
            "ceiling": run.heldout.ceiling(),
        },
    )


class _StopFlag:
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


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    """Channels-last images: oneDNN's convolutions run the demo's teacher 1.6x and its student 1.1x
    faster than in NCHW on this host's CPU; distillation went 1.02 -> 1.56 steps/s with the
    teacher's BatchNorm folded too (docs/measurements.md)."""
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t


def _predict(model: nn.Module, batch: dict[str, np.ndarray], dev: torch.device, chunk: int = 8) -> np.ndarray:
    was_training = model.training
    model.eval()
    outs = []
    with torch.inference_mode():
        for i in range(0, len(batch["face"]), chunk):
            f = _nhwc(torch.from_numpy(batch["face"][i : i + chunk]).to(dev))
            a = _nhwc(torch.from_numpy(batch["audio"][i : i + chunk]).to(dev))
            outs.append(model(f, a).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(outs)


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in state.items()}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
