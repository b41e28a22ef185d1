"""Audio students: small streaming encoders that turn PCM into a generator's features.

A student runs once per video frame on a fixed PCM window (the manifest's `audio_model`
slot: `dhm.audio.geometry.AudioModelSpec`) and returns that frame's feature rows: hubert
[2, 1024] at 25 fps, wenet [16, 512] at 20 fps. Family `dhm-tcn`:

    PCM window -> a learned band filterbank (Conv1d of 2 x bands kernels of 25 ms, stride
      10 ms, initialised as Hann-windowed cos/sin pairs at mel-spaced centre frequencies)
      -> log power -> Conv1d in (k 3)
      -> blocks of [depthwise Conv1d (k, dilation d) -> 1x1 -> GELU] with cropped residuals
      -> head -> rows, de-normalised by the teacher features' per-channel mean and std

The filterbank, not an STFT, because a stateless window recomputes its whole receptive
field on every call: an STFT as a convolution (514 kernels of 512 taps) costs 263 k MACs
per hop, 40 bands 32 k. Every convolution is unpadded ("valid"), so a window gives exactly the frame's rows and
streaming needs no state: the call's window holds the receptive field. The output hops are
frame i's own (hubert: hops 4i … 4i+3, two per 50 Hz row; wenet: hops 5i-8 … 5i+7, one
per row as dhm's front end lays wenet out); `lookahead_hops` of the receptive field lie
after them and the rest before, which sets the audio-to-frame latency.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dhm.audio.geometry import AudioModelSpec
from dhm.audio.frontend import HOP, SAMPLE_RATE, WIN
from dhm.errors import CheckpointError, SpecError
from dhm.spec import AUDIO_MODES

STUDENT_FORMAT = "dhm-audio-student-v1"
FAMILIES = ("dhm-tcn", "featherhubert")

# (output hops per frame, hops between frames, first output hop of frame 0, head kernel)
_LAYOUT = {"hubert": (4, 4, 0, 2), "wenet": (16, 5, -8, 1)}

SIZES: dict[str, dict[str, Any]] = {
    "s": {"channels": 64, "bands": 40, "dilations": (1, 2, 4, 1, 2, 4)},
    "m": {"channels": 96, "bands": 40, "dilations": (1, 2, 4, 8, 1, 2, 4, 8)},
    "l": {"channels": 160, "bands": 64, "dilations": (1, 2, 4, 8, 16, 1, 2, 4, 8, 16)},
}
LOG_EPS = 1e-6


@dataclass(frozen=True)
class StudentConfig:
    mode: str
    family: str = "dhm-tcn"
    channels: int = 96
    bands: int = 40
    kernel: int = 3
    dilations: tuple[int, ...] = field(default=(1, 2, 4, 8, 1, 2, 4, 8))
    lookahead_hops: int = 4  # receptive-field hops after the frame's last output hop

    def __post_init__(self) -> None:
        if self.mode not in _LAYOUT:
            raise SpecError(f"audio student: unknown mode {self.mode!r}")
        if self.family != "dhm-tcn":
            raise SpecError(f"audio student: unknown family {self.family!r}; expected one of {', '.join(FAMILIES)}")
        if not (8 <= self.channels <= 1024 and 8 <= self.bands <= 128 and self.kernel in (3, 5) and self.dilations):
            raise SpecError("audio student: channels 8..1024, bands 8..128, kernel 3 or 5, at least one block")
        if not 0 <= self.lookahead_hops <= self.receptive_field - 1:
            raise SpecError(
                f"audio student: lookahead of {self.lookahead_hops} hops outside its receptive field of "
                f"{self.receptive_field} hops"
            )

    @property
    def receptive_field(self) -> int:
        """In 10 ms hops: conv in (3) and each block's dilated kernel."""
        return 3 + sum((self.kernel - 1) * d for d in self.dilations)

    @property
    def out_hops(self) -> int:
        return _LAYOUT[self.mode][0]

    @property
    def input_hops(self) -> int:
        return self.out_hops + self.receptive_field - 1

    def audio_spec(self) -> AudioModelSpec:
        """The streaming geometry: one call per video frame."""
        out_hops, step, first, _ = _LAYOUT[self.mode]
        m = AUDIO_MODES[self.mode]
        rows, row_size = int(np.prod(m.per_frame_shape[:-1])), m.per_frame_shape[-1]
        before = self.receptive_field - 1 - self.lookahead_hops
        # hop h of a window is samples [160 h - 200, 160 h + 200) of the utterance; call c's
        # first input hop is step * c + first - before
        pad_left = (before - first) * HOP + WIN // 2
        samples_per_frame = SAMPLE_RATE // m.fps
        assert step * HOP == samples_per_frame
        return AudioModelSpec(
            frontend=f"{STUDENT_FORMAT}:{self.family}",
            mode=self.mode,
            sample_rate=SAMPLE_RATE,
            window_samples=(self.input_hops - 1) * HOP + WIN,
            row_hop=samples_per_frame // rows,
            pad_left=pad_left,
            rows_per_call=rows,
            row_size=row_size,
            frame_count=rows,
            frame_stride=rows,
            frame_offset=0,
            # every frame's rows are computed; none is zeroed at the end of the utterance
            tail_hop=1,
            hops_per_row=1,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dilations"] = list(self.dilations)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StudentConfig":
        d = dict(d)
        d["dilations"] = tuple(d["dilations"])
        return cls(**d)


def build_student(config: StudentConfig, mean: np.ndarray | None = None, std: np.ndarray | None = None):
    """The student as a torch module [B,1,window_samples] -> [B,rows,row_size]."""
    import torch
    from torch import nn

    m = AUDIO_MODES[config.mode]
    row_size = m.per_frame_shape[-1]
    head_kernel = _LAYOUT[config.mode][3]
    C = config.channels

    class Block(nn.Module):
        def __init__(self, dilation: int) -> None:
            super().__init__()
            self.dw = nn.Conv1d(C, C, config.kernel, dilation=dilation, groups=C)
            self.pw = nn.Conv1d(C, C, 1)
            self.crop = (config.kernel - 1) * dilation
            self.before = self.crop - (self.crop // 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = nn.functional.gelu(self.pw(self.dw(x)))
            return x[:, :, self.before : x.shape[2] - (self.crop - self.before)] + y

    B = config.bands

    class AudioStudent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bands = nn.Conv1d(1, 2 * B, WIN, stride=HOP, bias=False)
            with torch.no_grad():
                self.bands.weight.copy_(torch.from_numpy(band_kernels(B)))
            self.conv_in = nn.Conv1d(B, C, 3)
            self.blocks = nn.Sequential(*(Block(d) for d in config.dilations))
            self.head = nn.Conv1d(C, row_size, head_kernel, stride=head_kernel)
            self.register_buffer("mean", torch.zeros(row_size) if mean is None else torch.as_tensor(mean).float())
            self.register_buffer("std", torch.ones(row_size) if std is None else torch.as_tensor(std).float())

        def body(self, mel: torch.Tensor) -> torch.Tensor:
            """[B,80,input_hops] log-mel -> [B,rows,row_size] normalised features."""
            x = self.blocks(nn.functional.gelu(self.conv_in(mel)))
            return self.head(x).transpose(1, 2)

        def frontend(self, pcm: torch.Tensor) -> torch.Tensor:
            """[B,1,L] PCM -> [B,bands,hops] log band power."""
            z = self.bands(pcm)
            re, im = z[:, :B], z[:, B:]
            return torch.log(re * re + im * im + LOG_EPS) * 0.25 + 1.5

        def forward(self, pcm: torch.Tensor) -> torch.Tensor:
            return self.body(self.frontend(pcm)) * self.std + self.mean

    return AudioStudent()


def band_kernels(bands: int) -> np.ndarray:
    """[2*bands, 1, WIN]: Hann-windowed cos and sin at mel-spaced centres (100 Hz-7.6 kHz)."""
    mel = np.linspace(2595 * np.log10(1 + 100 / 700), 2595 * np.log10(1 + 7600 / 700), bands)
    hz = 700 * (10 ** (mel / 2595) - 1)
    t = (np.arange(WIN) - WIN / 2) / SAMPLE_RATE
    win = np.hanning(WIN) / np.sqrt(WIN)
    ang = 2 * np.pi * hz[:, None] * t[None, :]
    return np.concatenate([np.cos(ang) * win, np.sin(ang) * win])[:, None, :].astype(np.float32)


# ------------------------------------------------------------------------- checkpoints


def save_student(path, model, config, extra: dict[str, Any]) -> None:
    """Plain tensors and JSON-able values only: loads with torch.load(weights_only=True).
    `config`: a StudentConfig (dhm-tcn) or a FeatherConfig (featherhubert)."""
    import torch

    from dhm.audio.feather_hubert import FeatherConfig

    cfg = config.to_dict() | ({"family": "featherhubert"} if isinstance(config, FeatherConfig) else {})
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"format": STUDENT_FORMAT, "config": cfg, "state_dict": state, **extra}, path)


@dataclass
class LoadedStudent:
    config: Any  # StudentConfig or FeatherConfig
    model: Any
    audio_spec: AudioModelSpec
    record: dict[str, Any]


def _looks_feather(blob: dict[str, Any]) -> bool:
    state = blob.get("model", blob)
    return (
        isinstance(state, dict) and "proj.weight" in state and any(str(k).startswith("frontend.layers.") for k in state)
    )


def load_student(path, feather: dict[str, Any] | None = None) -> LoadedStudent:
    """A `dhm distill-audio` student, or a FeatherTalk FeatherHuBERT checkpoint (`feather`:
    its slot settings, context and normalize)."""
    import torch

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such audio student") from None
    except Exception as exc:  # noqa: BLE001 - corrupt or not a torch file: one line
        raise CheckpointError(f"{path}: not a readable audio student ({type(exc).__name__})") from None
    if isinstance(blob, dict) and blob.get("format") != STUDENT_FORMAT and _looks_feather(blob):
        from dhm.audio.feather_hubert import load_feather_checkpoint

        config, _encoder, windowed = load_feather_checkpoint(path, **(feather or {}))
        return LoadedStudent(config, windowed, config.audio_spec(), {"source": "FeatherTalk checkpoint"})
    if not isinstance(blob, dict) or blob.get("format") != STUDENT_FORMAT:
        raise CheckpointError(
            f"{path}: not a dhm audio student (written by `dhm distill-audio`) nor a FeatherHuBERT checkpoint"
        )
    try:
        raw = dict(blob["config"])
        if raw.get("family") == "featherhubert":
            from dhm.audio.feather_hubert import FeatherConfig, build_feather

            raw.pop("family")
            config = FeatherConfig(**raw)
            model = build_feather(config)[1]
        else:
            config = StudentConfig.from_dict(raw)
            model = build_student(config)
    except (KeyError, TypeError, SpecError) as exc:
        raise CheckpointError(f"{path}: audio student with a bad config ({exc})") from None
    state = blob["state_dict"]
    for name, tensor in state.items():
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: non-finite values in {name}")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a shape mismatch
        raise CheckpointError(f"{path}: weights do not fit its config ({str(exc).splitlines()[-1].strip()})") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit its config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    record = {k: v for k, v in blob.items() if k not in ("state_dict",)}
    return LoadedStudent(config, model.eval(), config.audio_spec(), record)
