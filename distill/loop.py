"""The generator task of the training loop (`dhm.distill.run_loop`): `dhm train` and `dhm distill`.

`train` fits a generator to ground truth; `distill` fits a student to a frozen teacher
(outputs, structure and intermediate features), optionally with a ground-truth term. The
loop makes it safe to run for hours (folder checks, resume, Ctrl-C, progress); this task adds:

* batches depend only on (seed, step[, rank]) and the learning rate is a function of the
  step, so `--resume` from the saved state continues bit-for-bit;
* a NaN loss stops the run naming the step and keeps the last good checkpoint;
* held-out evaluation at regular steps keeps the best checkpoint;
* under `torchrun` it trains with DistributedDataParallel (rank 0 evaluates and writes).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dhm.data import SampleBuilder, open_dataset, split_frames
from dhm.data.inputs import evenly_spaced, lip_sync_score
from dhm.errors import SpecError
from dhm.io import atomic_path
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
from dhm.distill.run_loop import (  # noqa: F401 (RunConfig, Interrupted, TrainingError: imported from here too)
    RUN_FILE,
    STATE_FILE,
    Interrupted,
    LoopPlace,
    RunConfig,
    RunFolder,
    RunResult,
    TrainingError,
    dist_env,
    lr_at,
    prepare_output,
    run_loop,
    write_json,
)
from dhm.distill.weights import LossWeights


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


class HeldOut:
    """The held-out frames a run is judged on, in both protocols (dhm.data.inputs):
    "inference" (reference = target, as deployed: a parity figure) and "generation"
    (reference = another held-out frame, as in training: the mouth must come from the
    audio). The best step is chosen by the generation protocol. Lips (`dhm.data.lips`) and,
    on the built-in data, lip sync (true mouth opening against the opening measured in the
    generated mouth window) are measured too."""

    def __init__(self, builder: SampleBuilder, frames: list[int], teacher: nn.Module | None, dev: torch.device) -> None:
        from dhm.data.inputs import generation_references, true_openness
        from dhm.data.lips import lip_region

        ds = builder.dataset
        self.dev, self.frames = dev, frames
        self.batches = {
            "inference": builder.batch(frames),
            "generation": builder.batch(frames, generation_references(frames)),
        }
        pre = builder.conventions.preprocess
        lips = [lip_region(ds.landmarks[i], ds.boxes[i], ds.frame_hw, pre) for i in frames]
        self.lips = lips if any(r is not None for r in lips) else None
        opening = true_openness(ds.root)
        self.openness = [opening[i] for i in frames] if opening and len(opening) >= ds.n_frames else None
        self.teacher = {p: _predict(teacher, b, dev) for p, b in self.batches.items()} if teacher is not None else None
        self.key = ("generation", "vs_teacher" if teacher is not None else "vs_gt")

    def lip_sync(self, images: np.ndarray) -> float | None:
        return lip_sync_score(images, self.openness, self.lips)

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
    world, rank = dist_env()
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


@dataclass
class _GeneratorTask:
    """A generator run as the loop's task: a step on a random batch, the held-out evaluation
    every `eval_every` steps and at the end (rank 0), the state saved after the last step too."""

    run: _Session
    train_frames: np.ndarray
    rank: int
    is_main: bool
    save_final = True

    @property
    def label(self) -> str:
        return self.run.config.kind

    @property
    def steps(self) -> int:
        return self.run.config.steps

    @property
    def start(self) -> int:
        return self.run.start

    def step(self, step: int) -> float:
        return self.run.step(step, self.train_frames, self.rank)

    def after_step(self, done: int, loss: float) -> str | None:
        if self.is_main and (done % self.run.config.eval_every == 0 or done == self.steps):
            return self.run.evaluate(done, loss)
        return None

    def save_state(self, done: int) -> None:
        self.run.save_state(done)


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
        write_json(
            out / RUN_FILE, {"config": config.to_dict(), "student": student_spec.to_dict(), "init": run.init_note}
        )
    task = _GeneratorTask(run, train_frames, rank, is_main)
    place = LoopPlace(out, save_every, world, rank, dev, progress, on_step)
    try:
        run.trainable.train()
        seconds = run_loop(task, place)
    finally:
        if world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    return RunResult(
        out_dir=out,
        checkpoint=out / checkpoint_name,
        history=run.history,
        best=run.best,
        seconds=seconds,
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
