"""`dhm distill-audio`'s settings (light to import: `dhm --help` builds its options from them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dhm.settings import setting


@dataclass(frozen=True)
class AudioStudentChoice:
    """Which audio student to train."""

    size: str = setting("m", "Preset (featherhubert m: FeatherTalk's 3.36 M).", choices=("s", "m", "l"))
    family: str = setting(
        "dhm-tcn",
        "dhm-tcn (band filterbank + dilated TCN, sizes s/m/l) or featherhubert (FeatherTalk 3.36 M encoder, hubert).",
        choices=("dhm-tcn", "featherhubert"),
    )
    context: int = setting(
        0,
        "featherhubert: 20 ms tokens read on each side of a frame's two per call (0: FeatherTalk's [1,720] calls).",
        lo=0,
        hi=200,
    )
    lookahead_hops: int = setting(
        4, "10 ms hops of audio the student may read past a frame's own (latency vs quality).", lo=0, hi=200
    )


@dataclass(frozen=True)
class AudioWeights:
    mse: float = setting(1.0, "MSE on normalised features.", option="--w-mse", lo=0.0, hi=1000.0)
    cosine: float = setting(0.5, "1 - cosine per feature row.", option="--w-cos", lo=0.0, hi=1000.0)
    delta: float = setting(0.5, "MSE of the frame-to-frame change.", option="--w-delta", lo=0.0, hi=1000.0)


@dataclass(frozen=True)
class AudioDistillSettings:
    steps: int = setting(2000, "Optimizer steps.", lo=1, hi=10_000_000)
    batch_size: int = setting(32, "Pairs of consecutive frames.", lo=1, hi=4096)
    lr: float = setting(3e-3, "Peak learning rate.", lo=0.0, hi=1.0, lo_open=True)
    seed: int = setting(0, "", lo=0, hi=2**32 - 1)
    eval_frames: int = 16  # generator frames rendered for the report
    feather_offline: bool = True  # featherhubert: train on whole crops (upstream's use), then choose the slot
    crop_frames: int = 25
    weights: AudioWeights = field(default_factory=AudioWeights)
