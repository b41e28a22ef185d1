"""`dhm distill-audio`: a small streaming audio student trained on (audio, teacher features).

Every Ultralight dataset holds its pairs already: `aud.wav` beside `aud_hu.npy` or
`aud_wenet.npy`. More audio comes as `x.wav` + `x_hu.npy` pairs (`dhm features`). The
dataset's held-out blocks (`dhm.data.split`, the same frames the generator is judged on)
are never trained on; the report measures there:

- features: cosine and relative error against the teacher's, next to what the training
  set's mean feature (a student that ignores the audio) scores;
- the figure that matters, with `--generator`: the generator's output driven by student
  features against the same generator driven by teacher features (PSNR, SSIM, mouth and lip
  box), next to the mean-feature student's figure on the same frames;
- cost: MACs per second of audio, parameters, file size, lookahead with the generator's window.

Objective: MSE on per-channel normalised features + (1 - cosine) per row + MSE of the
frame-to-frame change (consecutive frames are trained in pairs), weights in `AudioWeights`.

Long runs are safe like `dhm distill`'s (`dhm.distill.loop`): OUT is claimed before
training; batches depend only on (seed, step, rank) and the learning rate on the step, so
Ctrl-C or SIGTERM saves OUT/resume.pt after the step in flight and `--resume` continues
bit-for-bit; under `torchrun` each rank draws its own batches and DistributedDataParallel
averages the gradients (rank 0 evaluates and writes).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dhm.audio.geometry import windowed_features as student_features
from dhm.data.dataset import COUNT_TOLERANCE
from dhm.distill.audio_config import AudioDistillSettings, AudioStudentChoice, AudioWeights  # noqa: F401
from dhm.errors import DatasetError, SpecError
from dhm.metrics import feature_agreement
from dhm.spec import AUDIO_MODES

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
STUDENT_FILE = "audio_student.pt"
MIN_HELDOUT = 8


@dataclass
class Utterance:
    """16 kHz PCM and its teacher features; `train` lists the frames trained on."""

    name: str
    pcm: np.ndarray
    features: np.ndarray  # [N, *per_frame_shape]
    train: list[int]
    heldout: list[int] = field(default_factory=list)  # the split's eval blocks: the report's frames
    calib: list[int] = field(default_factory=list)  # its other held-out blocks: choices are made here


def _check_lengths(name: str, pcm: np.ndarray, feats: np.ndarray, mode: str) -> None:
    fps = AUDIO_MODES[mode].fps
    frames = pcm.size * fps // 16000
    if abs(feats.shape[0] - frames) > COUNT_TOLERANCE:
        raise DatasetError(
            f"{name}: {feats.shape[0]} feature frames for {pcm.size / 16000:.2f} s of audio ({frames} frames at "
            f"{fps} fps); at most {COUNT_TOLERANCE} apart is accepted (are they the same clip?)"
        )


def dataset_utterance(data: Path, mode: str) -> Utterance:
    """The dataset's audio and features, split like the generator's frames."""
    from dhm.audio.frontend import read_pcm
    from dhm.data.dataset import WAV_FILE, open_dataset
    from dhm.data.split import split_frames

    ds = open_dataset(data, mode=mode)
    wav = Path(data) / WAV_FILE
    if not wav.is_file():
        raise DatasetError(f"{data}: missing {WAV_FILE} (the audio the features were computed from)")
    pcm = read_pcm(wav)[0]
    feats = ds.audio(mode)
    _check_lengths(str(wav), pcm, feats, mode)
    split = split_frames(ds.n_frames)
    if len(split.eval) < MIN_HELDOUT:
        raise DatasetError(
            f"{data}: {len(split.eval)} held-out evaluation frames; too little audio to hold out (needs {MIN_HELDOUT})"
        )
    return Utterance(str(wav), pcm, feats, list(split.train), list(split.eval), list(split.calib))


def extra_utterances(audio_dirs: list[Path], mode: str) -> list[Utterance]:
    """`x.wav` + `x_hu.npy` / `x_wenet.npy` pairs, all trained on."""
    from dhm.audio.frontend import read_pcm
    from dhm.data.dataset import read_features
    from dhm.audio.teacher import feature_file_for

    out = []
    for folder in audio_dirs:
        if not folder.is_dir():
            raise DatasetError(f"{folder}: no such audio folder")
        wavs = sorted(folder.glob("*.wav"))
        if not wavs:
            raise DatasetError(f"{folder}: no .wav files")
        for wav in wavs:
            npy = feature_file_for(wav, mode)
            if not npy.is_file():
                raise DatasetError(
                    f"{wav}: no {npy.name} beside it; compute the teacher's features with `dhm features`"
                )
            feats = read_features(npy, AUDIO_MODES[mode])
            pcm = read_pcm(wav)[0]
            _check_lengths(str(wav), pcm, feats, mode)
            frames = min(len(feats), pcm.size * AUDIO_MODES[mode].fps // 16000)
            out.append(Utterance(str(wav), pcm, feats, list(range(frames))))
    return out


# ------------------------------------------------------------------------------ windows


# ------------------------------------------------------------------------------ training


@dataclass
class _Run:
    """Where a run saves its state, and which process of a `torchrun` job this is."""

    out: Path
    config: Any  # dhm.distill.loop.RunConfig: what must match on --resume
    state: dict[str, Any] | None  # the saved state to continue from
    folder: Any  # dhm.distill.loop.RunFolder (rank 0) or None
    world: int = 1
    rank: int = 0
    save_every: int = 200
    on_step: Any = None  # called with each finished step (tests interrupt through it)


def _train(
    config,
    utterances: list[Utterance],
    settings: AudioDistillSettings,
    progress: bool,
    run: _Run,
) -> tuple[Any, list[dict[str, float]], int]:
    """The trained model, the loss history, and the step it started from."""
    import torch

    from dhm.audio.feather_hubert import build_feather
    from dhm.audio.student import StudentConfig, build_student

    from .run_loop import LoopPlace, run_loop

    spec = config.audio_spec()
    width = spec.row_size
    train_rows = np.concatenate([u.features[u.train].reshape(-1, width) for u in utterances])
    mean = train_rows.mean(0)
    std = np.maximum(train_rows.std(0), 1e-3 * max(float(train_rows.std()), 1e-6))
    torch.manual_seed(settings.seed)
    if isinstance(config, StudentConfig):
        model = build_student(config, mean, std).train()
    else:  # FeatherHuBERT: its own projection learns the scale
        model = build_feather(config)[1].train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.lr, weight_decay=1e-4)
    task = _AudioTask(spec, utterances, settings, run, model, opt, torch.from_numpy(mean), torch.from_numpy(std))
    task.prepare(offline=not isinstance(config, StudentConfig) and settings.feather_offline)
    place = LoopPlace(run.out, run.save_every, run.world, run.rank, torch.device("cpu"), progress, run.on_step)
    run_loop(task, place)
    if run.world > 1:
        _check_replicas(model)
    return model.eval(), task.history, task.start


class _AudioTask:
    """An audio student as the loop's task: a step on random windows (or, FeatherTalk-style,
    whole crops), its losses recorded every 50 steps, the state saved by rank 0."""

    label = "distill-audio"
    save_final = False  # a finished run writes the student and removes the state

    def __init__(self, spec, utterances, settings, run, model, opt, mean_t, std_t) -> None:
        self.spec, self.utterances, self.settings, self.run = spec, utterances, settings, run
        self.model, self.opt, self.mean_t, self.std_t = model, opt, mean_t, std_t
        self.steps, self.start, self.history = settings.steps, 0, []
        if run.state is not None:
            model.load_state_dict(run.state["model"])
            opt.load_state_dict(run.state["optimizer"])
            self.start, self.history = int(run.state["step"]), json.loads(run.state["history"])

    def prepare(self, offline: bool) -> None:
        import torch

        # (utterance, frame) pairs whose next frame is trained on too
        train_sets = [set(u.train) for u in self.utterances]
        self.pairs = [(k, i) for k, u in enumerate(self.utterances) for i in u.train if i + 1 in train_sets[k]]
        if not self.pairs:
            raise DatasetError("no two consecutive training frames: too little audio to train on")
        self.padded = [self.spec.padded_pcm(u.pcm) for u in self.utterances]
        self.offline = offline
        if offline:  # FeatherTalk-style: whole crops of the utterance, normalised as a whole
            self.crops = _crops(self.utterances, self.settings.crop_frames)
        self.net = self.model.net if offline else self.model
        if self.run.world > 1:  # gradients averaged over the ranks' batches
            self.net = torch.nn.parallel.DistributedDataParallel(self.net)

    def _batch(self, rng: np.random.Generator):
        """(inputs, targets [batch, consecutive frames, rows, width]) for one step."""
        import torch

        s = self.settings
        if self.offline:
            picks = rng.integers(0, len(self.crops), max(1, s.batch_size // 4))
            return _crop_batch(self.utterances, self.crops, picks, s.crop_frames)
        rows, width = self.spec.rows_per_call, self.spec.row_size
        windows, targets = [], []
        for j in rng.integers(0, len(self.pairs), s.batch_size):
            k, i = self.pairs[j]
            u = self.utterances[k]
            windows.append(self.spec.frame_windows(u.pcm, [i, i + 1], self.padded[k]))
            targets.append(u.features[[i, i + 1]].reshape(1, 2, rows, width))
        return torch.from_numpy(np.concatenate(windows)), torch.from_numpy(np.concatenate(targets).astype(np.float32))

    def step(self, step: int) -> float:
        import torch

        from .run_loop import TrainingError, cosine

        s, w = self.settings, self.settings.weights
        # the batch depends on (seed, step, rank) only: a resumed run draws what it would have
        x, t = self._batch(np.random.default_rng([s.seed, step, self.run.rank]))
        for g in self.opt.param_groups:
            g["lr"] = cosine(step, s.steps, s.lr)
        pred = self.net(x).reshape(t.shape)
        tn, pn = (t - self.mean_t) / self.std_t, (pred - self.mean_t) / self.std_t
        loss_mse = ((pn - tn) ** 2).mean()
        loss_cos = (1 - torch.nn.functional.cosine_similarity(pred, t, dim=-1, eps=1e-6)).mean()
        loss_delta = (((pn[:, 1:] - pn[:, :-1]) - (tn[:, 1:] - tn[:, :-1])) ** 2).mean()
        loss = w.mse * loss_mse + w.cosine * loss_cos + w.delta * loss_delta
        if not torch.isfinite(loss):
            raise TrainingError(f"distill-audio: the loss became {loss.item()} at step {step + 1}; lower --lr")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.parts = {"mse": loss_mse.item(), "cosine": loss_cos.item(), "delta": loss_delta.item()}
        return loss.item()

    def after_step(self, done: int, loss: float) -> str | None:
        if (done - 1) % 50 == 0 or done == self.steps:
            parts = {k: round(v, 5) for k, v in self.parts.items()}
            self.history.append({"step": done, "loss": round(loss, 5), **parts})
        return None

    def save_state(self, done: int) -> None:
        if self.run.rank != 0:
            return
        from dhm.io import atomic_path
        from dhm.models.checkpoint import write_torch

        from .run_loop import STATE_FILE

        payload = {
            "config": self.run.config.to_dict(),
            "step": done,
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.opt.state_dict(),
            "history": json.dumps(self.history),
        }
        with atomic_path(self.run.out / STATE_FILE) as tmp:
            write_torch(payload, tmp, self.run.out / STATE_FILE)
        if self.run.folder is not None:
            self.run.folder.commit()


def _check_replicas(model) -> None:
    """Every rank must end with the same weights (DDP averages the gradients); a rank that
    trained on its own would write a student no rank 0 ever saw."""
    import torch
    import torch.distributed as dist

    from .run_loop import TrainingError

    mine = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()
    checksum = torch.stack([mine.sum(), (mine * torch.arange(mine.numel(), dtype=torch.float64)).sum()])
    gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, checksum)
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        raise TrainingError("distill-audio under torchrun: the ranks' weights differ after training")


def _choose_feather_slot(config, model, main: Utterance):
    """FeatherHuBERT was trained on whole crops; on the phone it runs on windows. Measure
    each (context, normalisation) against the offline features of the same weights and
    against the teacher on the held-out calibration blocks (the report judges the eval
    blocks), within 200 ms of lookahead (8-frame window), and keep the closest to the teacher."""
    import dataclasses

    from dhm.audio.geometry import windowed_features
    from dhm.audio.feather_hubert import build_feather, stream_parity

    encoder = model.net.eval()
    choices = stream_parity(encoder, config, main.pcm, contexts=(0, 1, 3), norms=("window", "none"))
    best = None
    for c in choices:
        cfg = dataclasses.replace(config, context=c["context"], normalize=c["normalize"])
        _, windowed = build_feather(cfg)
        windowed.net = encoder
        feats = windowed_features(windowed, cfg.audio_spec(), main.pcm, main.features.shape[0])
        choose_on = main.calib or main.heldout  # not the frames the report is judged on, where there are others
        c["vs_teacher"] = feature_agreement(feats[choose_on], main.features[choose_on])
        if best is None or c["vs_teacher"]["cosine"] > best[0]["vs_teacher"]["cosine"]:
            best = (c, cfg, windowed)
    assert best is not None
    best[0]["chosen"] = True
    return best[1], best[2].eval(), choices


def _crops(utterances: list[Utterance], frames: int) -> list[tuple[int, int]]:
    """(utterance, first frame) of every run of `frames` consecutive training frames."""
    out = []
    for k, u in enumerate(utterances):
        train = set(u.train)
        out += [(k, f) for f in range(0, len(u.features) - frames + 1, 2) if all(f + j in train for j in range(frames))]
    if not out:
        raise DatasetError(f"no {frames} consecutive training frames for FeatherHuBERT's crops")
    return out


def _crop_batch(utterances: list[Utterance], crops, picks, frames: int):
    """Crops of `frames` frames (640 samples each, plus the 80 that make 2 tokens per frame),
    normalised with their utterance's mean and variance as upstream normalises a file."""
    import torch

    from dhm.audio.teacher import NORMALIZE_EPS

    xs, ts = [], []
    for j in picks:
        k, f = crops[j]
        u = utterances[k]
        seg = u.pcm[640 * f : 640 * (f + frames) + 80]
        seg = np.concatenate([seg, np.zeros(640 * frames + 80 - seg.size, np.float32)])
        xs.append((seg - u.pcm.mean()) / np.sqrt(u.pcm.var() + NORMALIZE_EPS))
        ts.append(u.features[f : f + frames])
    x = torch.from_numpy(np.stack(xs).astype(np.float32)[:, None])
    return x, torch.from_numpy(np.stack(ts).astype(np.float32))


# ------------------------------------------------------------------------------ evaluation


def generator_figures(
    generator_path: Path, data: Path, mode: str, student_feats: np.ndarray, mean_feat: np.ndarray, n_frames: int
) -> dict[str, Any]:
    """The generator driven by student features vs by teacher features, on the held-out
    eval frames, and the same for a student that outputs the training mean."""
    import torch

    from dhm.data.inputs import heldout_inputs
    from dhm.data.preprocess import audio_window
    from dhm.models.checkpoint import load_checkpoint
    from dhm.spec import AUDIO_INPUT, FACE_INPUT

    gen = load_checkpoint(generator_path)
    if gen.spec.mode != mode:
        raise SpecError(f"{generator_path}: a {gen.spec.mode} generator; these are {mode} features")
    inputs = heldout_inputs(data, gen.spec, "eval", max_frames=n_frames)
    model = gen.inference_model().eval()
    conv = gen.spec.conventions
    constant = np.broadcast_to(mean_feat, student_feats.shape).astype(np.float32)

    def render(feats: np.ndarray | None) -> np.ndarray:
        outs = []
        with torch.inference_mode():
            for i, x in zip(inputs.frames, inputs.inputs, strict=True):
                audio = x[AUDIO_INPUT] if feats is None else audio_window(feats, i, conv)[None]
                outs.append(model(torch.from_numpy(x[FACE_INPUT]), torch.from_numpy(audio)).numpy())
        return np.concatenate(outs)

    teacher_out = render(None)
    return {
        "generator": str(generator_path),
        "window": gen.spec.window,
        "frames": inputs.frames,
        "student": inputs.quality(render(student_feats), teacher_out),
        "mean_feature": inputs.quality(render(constant), teacher_out),
    }


def distill_audio(
    data: Path,
    out: Path,
    mode: str | None = None,
    audio_dirs: list[Path] | None = None,
    generator: Path | None = None,
    student: AudioStudentChoice | None = None,
    settings: AudioDistillSettings | None = None,
    force: bool = False,
    progress: bool = True,
    resume: bool = False,
    on_step: Any = None,
) -> dict[str, Any] | None:
    """Train an audio student on the dataset's (and any extra) pairs; write OUT/ (rank 0
    of a `torchrun` job returns the report, the other ranks None)."""
    import torch

    from dhm.audio.student import save_student
    from dhm.io import atomic_path, check_output

    from .run_loop import RUN_FILE, STATE_FILE, dist_env, prepare_output, write_json

    settings = settings or AudioDistillSettings()
    choice = student or AudioStudentChoice()
    inputs = [data, *(audio_dirs or []), generator]
    check_output(out, kind="dir", command="distill-audio", force=force or resume, inputs=inputs)
    mode, config = _student_config(data, mode, choice)
    main = dataset_utterance(data, mode)
    extra = extra_utterances(list(audio_dirs or []), mode)
    run_config = _run_config(data, [main, *extra], config, settings, choice.family)
    world, rank = run_config.world_size, dist_env()[1]
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="gloo")
    state, folder = prepare_output(out, run_config, resume, force, inputs=inputs) if rank == 0 else (None, None)
    if world > 1:
        dist.barrier()  # OUT (and a state to resume) exist before any rank reads them
        if rank != 0 and resume:
            state = torch.load(out / STATE_FILE, map_location="cpu", weights_only=True)
    run = _Run(out, run_config, state, folder, world, rank, on_step=on_step)
    try:
        if rank == 0:
            write_json(out / RUN_FILE, {"config": run_config.to_dict()})
        t0 = time.perf_counter()
        model, history, started = _train(config, [main, *extra], settings, progress, run)
        train_s = time.perf_counter() - t0
        if world > 1:
            dist.destroy_process_group()
        if rank != 0:
            return None
        report, config, model = _evaluate(
            data, mode, generator, choice.size, choice.family, config, settings, model, history, started, train_s,
            main, extra,
        )  # fmt: skip
        report["train"]["world_size"] = world
        with atomic_path(out / STUDENT_FILE) as tmp:
            save_student(tmp, model, config, {"report": _plain(report)})
        report["cost"]["size_bytes"] = (out / STUDENT_FILE).stat().st_size
        write_json(out / REPORT_JSON, _plain(report))
        with atomic_path(out / REPORT_MD) as tmp:
            tmp.write_text(markdown(report))
        (out / STATE_FILE).unlink(missing_ok=True)  # the run is complete: nothing to resume
        if folder is not None:
            folder.commit()
        return report
    except BaseException:
        if folder is not None:
            folder.rollback()  # only a run that saved no state yet: OUT is as it was
        raise


def _student_config(data: Path, mode: str | None, choice: AudioStudentChoice) -> tuple[str, Any]:
    """The dataset's feature mode (one, or the one asked for) and the student to train."""
    from dhm.audio.student import SIZES, StudentConfig
    from dhm.data.dataset import open_dataset

    if mode is None:
        modes = open_dataset(data).modes
        if len(modes) != 1:
            raise DatasetError(f"{data}: holds {' and '.join(modes)} features; pick one with --mode")
        mode = modes[0]
    if choice.size not in SIZES:
        raise SpecError(f"--size {choice.size}: expected one of {', '.join(SIZES)}")
    if choice.family == "featherhubert":
        from dhm.audio.feather_hubert import FEATHER_SIZES, FeatherConfig

        if mode != "hubert":
            raise SpecError("FeatherHuBERT gives hubert features; this dataset's are wenet (use --family dhm-tcn)")
        return mode, FeatherConfig(context=choice.context, **FEATHER_SIZES[choice.size])
    if choice.family == "dhm-tcn":
        return mode, StudentConfig(mode=mode, lookahead_hops=choice.lookahead_hops, **SIZES[choice.size])
    raise SpecError(f"--family {choice.family}: expected dhm-tcn or featherhubert")


def _run_config(data: Path, utterances: list[Utterance], config: Any, settings: AudioDistillSettings, family: str):
    """What must match for --resume: the audio and features trained on, the student, the settings."""
    import hashlib

    from .run_loop import RunConfig, dist_env

    h = hashlib.sha256()
    for u in utterances:
        h.update(u.name.encode())
        h.update(np.ascontiguousarray(u.pcm).tobytes())
        h.update(np.ascontiguousarray(u.features).tobytes())
    return RunConfig(
        kind="distill-audio",
        data=str(data),
        data_hash=h.hexdigest(),
        student={"family": family, **config.to_dict()},
        teacher_sha256=None,
        steps=settings.steps,
        batch_size=settings.batch_size,
        lr=settings.lr,
        seed=settings.seed,
        weights=asdict(settings.weights),
        eval_every=0,
        eval_frames=settings.eval_frames,
        init=f"feather_offline={settings.feather_offline}, crop_frames={settings.crop_frames}",
        world_size=dist_env()[0],
    )


def _evaluate(
    data, mode, generator, size, family, config, settings, model, history, started, train_s, main, extra
) -> tuple[dict[str, Any], Any, Any]:
    """The report, and the config and model the student ships as (FeatherHuBERT: the
    window slot chosen on held-out calibration blocks)."""
    import torch

    from dhm.metrics import count_macs, count_params

    spec = config.audio_spec()
    choices = None
    if family == "featherhubert" and settings.feather_offline:
        config, model, choices = _choose_feather_slot(config, model, main)
        spec = config.audio_spec()

    held = main.heldout
    feats = student_features(model, spec, main.pcm, main.features.shape[0])
    mean_feat = np.concatenate([u.features[u.train] for u in (main, *extra)]).mean(0)
    teacher_held = main.features[held]
    window = 8
    report: dict[str, Any] = {
        "kind": "distill-audio",
        "mode": mode,
        "data": str(data),
        "extra_audio": [u.name for u in extra],
        "student": {
            "family": family,
            "size": size,
            **config.to_dict(),
        },
        "audio_model": spec.to_dict(),
        "train": {
            "frames": sum(len(u.train) for u in (main, *extra)),
            "seconds_of_audio": round(sum(u.pcm.size for u in (main, *extra)) / 16000, 1),
            "steps": settings.steps,
            "batch_size": settings.batch_size,
            "lr": settings.lr,
            "weights": asdict(settings.weights),
            "wall_s": round(train_s, 1),
            "resumed_from_step": started,
            "history": history,
        },
        "heldout": {
            "frames": len(held),
            "student": feature_agreement(feats[held], teacher_held),
            "mean_feature": feature_agreement(np.broadcast_to(mean_feat, teacher_held.shape), teacher_held),
        },
    }
    macs = count_macs(model, torch.zeros(1, 1, spec.window_samples))
    calls = 16000 / (spec.rows_per_call * spec.row_hop)
    if choices is not None:
        report["streaming_choices"] = choices
    report["cost"] = {
        "params": count_params(model),
        "macs_per_call": macs,
        "calls_per_second": calls,
        "gmacs_per_second": round(macs * calls / 1e9, 4),
        "receptive_field_ms": (config.receptive_field * 10 if family == "dhm-tcn" else round(spec.window_samples / 16)),
    }
    if generator is not None:
        g = generator_figures(generator, data, mode, feats, mean_feat, settings.eval_frames)
        window = g.pop("window")
        report["generator"] = g
    report["cost"]["lookahead_ms"] = round(spec.lookahead_ms(window), 1)
    report["cost"]["lookahead_window"] = window
    return report, config, model


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def _fmt(q: dict[str, Any], key: str) -> str:
    v = q.get(key)
    return "–" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))


def markdown(r: dict[str, Any]) -> str:
    c, h = r["cost"], r["heldout"]
    lines = [
        f"# Audio student ({r['mode']}, {r['student']['family']} size {r['student']['size']})",
        "",
        f"Trained on {r['train']['frames']} frames ({r['train']['seconds_of_audio']} s of audio) for "
        f"{r['train']['steps']} steps in {r['train']['wall_s']} s; judged on {h['frames']} held-out frames "
        "(the split's evaluation blocks), never trained on.",
        "",
        "## Cost",
        "",
        "| params | MACs / s of audio | receptive field | lookahead | file |",
        "|---|---|---|---|---|",
        f"| {c['params'] / 1e6:.3f} M | {c['gmacs_per_second']:.3f} G | {c['receptive_field_ms']} ms | "
        f"{c['lookahead_ms']:.0f} ms (with the {c['lookahead_window']}-frame window) | "
        f"{c.get('size_bytes', 0) / 1e6:.2f} MB |",
        "",
        "## Features against the teacher's (held-out audio)",
        "",
        "| features | cosine | relative error |",
        "|---|---|---|",
        f"| student | {h['student']['cosine']:.4f} | {h['student']['rel_error']:.4f} |",
        f"| training mean (ignores the audio) | {h['mean_feature']['cosine']:.4f} | "
        f"{h['mean_feature']['rel_error']:.4f} |",
        "",
    ]
    if r.get("streaming_choices"):
        lines += [
            "## FeatherHuBERT on the phone: windows instead of the whole utterance",
            "",
            "Trained on whole crops (the utterance normalised as a whole, as upstream runs it); the phone calls it",
            "on one frame's window. Each choice against the same weights run offline, and against the teacher on",
            "the held-out calibration blocks (not the evaluation blocks the rest of this report uses); the",
            "closest to the teacher is kept.",
            "",
            "| context (tokens each side) | normalisation | cosine vs offline | rel. error vs offline | "
            "cosine vs teacher | GMACs / s | lookahead (w8) | kept |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in r["streaming_choices"]:
            lines.append(
                f"| {c['context']} | {c['normalize']} | {c['cosine']:.4f} | {c['rel_error']:.4f} | "
                f"{c['vs_teacher']['cosine']:.4f} | {c['gmacs_per_second']:.3f} | {c['lookahead_ms_w8']:.0f} ms | "
                f"{'yes' if c.get('chosen') else ''} |"
            )
        lines.append("")
    g = r.get("generator")
    if g:
        lines += [
            "## The generator driven by these features, against it driven by the teacher's",
            "",
            f"{g['generator']}, {len(g['frames'])} held-out eval frames.",
            "",
            "| features | PSNR | SSIM | mouth PSNR | lip-box PSNR |",
            "|---|---|---|---|---|",
        ]
        for name, label in (("student", "student"), ("mean_feature", "training mean (ignores the audio)")):
            q = g[name]
            lines.append(
                f"| {label} | {_fmt(q, 'psnr')} | {_fmt(q, 'ssim')} | {_fmt(q, 'mouth_psnr')} | {_fmt(q, 'lip_psnr')} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"
