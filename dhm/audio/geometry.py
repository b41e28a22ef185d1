"""The audio model: PCM in, the generator's per-frame audio features out, streamed.

An audio model turns a fixed-length window of 16 kHz PCM into `rows_per_call` feature
*rows*; a video frame's features are `frame_rows.count` consecutive rows starting at row
`frame_rows.stride * i + frame_rows.offset` (rows before 0 are zeros). For dhm's own
front end (`dhm-logmel-v1`, `dhm.audio.frontend`):

    hubert layout: a row is one 50 Hz step (mel hops 2r, 2r+1 -> 1024), 2 rows per frame
    wenet layout:  a row is one 10 ms mel hop (80 -> 512), frame i holds hops 5i-8 … 5i+7

The front end is exported as a small network (STFT as a fixed convolution, mel matrix,
log, normalisation, the layout projection), so one engine, one export path and one
parity check cover everything numeric on the phone. `AudioModelSpec` is the geometry the
manifest's `audio_model` section records; `PcmFeatureStream` is the buffering that
`runtime_py` and the native core (`avatar_core/src/audio_stream.cpp`) both implement:
PCM chunks of any size in, every feature frame whose rows are computable out, and at
`finish()` the tail exactly as `dhm.audio.frontend.features_for_mode` computes it offline
(samples past the end are zeros; rows past the audio's last mel hop are zeros).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dhm.audio.frontend import (
    FRONTEND_ID,
    HOP,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    _projection,
    fixed_conv,
    hops_log_mel,
    logmel_hops_module,
)
from dhm.errors import SpecError
from dhm.spec import AUDIO_MODES, window_bounds

PCM_INPUT = "pcm"
ROWS_OUTPUT = "rows"
AUDIO_MODEL_FILE = "audio_{variant}.{fmt}"


@dataclass(frozen=True)
class AudioModelSpec:
    """The streaming geometry of one audio model (the manifest's `audio_model` section,
    without its artefacts)."""

    frontend: str
    mode: str
    sample_rate: int
    window_samples: int  # PCM samples per call (the model's input length)
    row_hop: int  # samples between consecutive rows
    pad_left: int  # zeros before sample 0 (a centred first window)
    rows_per_call: int
    row_size: int  # values per row
    frame_count: int  # rows per video frame
    frame_stride: int  # rows between consecutive video frames
    frame_offset: int  # first row of frame 0 (negative: rows before the audio, zeros)
    tail_hop: int  # the audio has n // tail_hop + 1 hops ...
    hops_per_row: int  # ... and (that) // hops_per_row valid rows; later rows are zeros

    @property
    def fps(self) -> int:
        return AUDIO_MODES[self.mode].fps

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate // self.fps

    def frames_for(self, n_samples: int) -> int:
        """Video frames of an utterance of `n_samples` (as `features_for_mode` counts them)."""
        return n_samples * self.fps // self.sample_rate

    def valid_rows(self, n_samples: int) -> int:
        return (n_samples // self.tail_hop + 1) // self.hops_per_row

    def last_row_of_frame(self, i: int) -> int:
        return self.frame_stride * i + self.frame_offset + self.frame_count - 1

    def samples_for_call(self, call: int) -> int:
        """Samples (from sample 0) that call `call` reads: its window's end."""
        return call * self.rows_per_call * self.row_hop - self.pad_left + self.window_samples

    def lookahead_samples(self, window: int) -> int:
        """How far past the end of frame i the PCM must reach before generator frame i
        (with a `window`-frame feature window) can be rendered: the algorithmic latency."""
        _, after = window_bounds(window)
        j = after - 1  # the last feature frame generator frame 0 reads
        call = self.last_row_of_frame(j) // self.rows_per_call
        return self.samples_for_call(call) - self.samples_per_frame

    def lookahead_ms(self, window: int) -> float:
        return 1000.0 * self.lookahead_samples(window) / self.sample_rate

    def padded_pcm(self, pcm: np.ndarray) -> np.ndarray:
        """The utterance with pad_left zeros before and a window of zeros after."""
        z = np.zeros
        return np.concatenate(
            [z(self.pad_left, np.float32), np.asarray(pcm, np.float32), z(self.window_samples, np.float32)]
        )

    def frame_windows(self, pcm: np.ndarray, frames, padded: np.ndarray | None = None) -> np.ndarray:
        """[len(frames), 1, window_samples]: the call windows of `frames` for a model with one
        call per frame (rows_per_call == frame_stride), zeros outside the audio: exactly what
        `PcmFeatureStream` feeds the model, batched."""
        if self.rows_per_call != self.frame_stride or self.frame_offset != 0:
            raise SpecError("frame_windows: the model does not make one call per frame")
        L, spf = self.window_samples, self.samples_per_frame
        padded = self.padded_pcm(pcm) if padded is None else padded
        out = np.zeros((len(frames), 1, L), np.float32)
        for k, i in enumerate(frames):
            chunk = padded[i * spf : i * spf + L]  # pad_left already shifts the window
            out[k, 0, : chunk.size] = chunk
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {
            "frontend": d["frontend"],
            "mode": d["mode"],
            "sample_rate": d["sample_rate"],
            "input": {"name": PCM_INPUT, "shape": [1, 1, self.window_samples]},
            "output": {"name": ROWS_OUTPUT, "shape": [1, self.rows_per_call, self.row_size]},
            "row_hop": self.row_hop,
            "pad_left": self.pad_left,
            "frame_rows": {"count": self.frame_count, "stride": self.frame_stride, "offset": self.frame_offset},
            "tail": {"hop": self.tail_hop, "hops_per_row": self.hops_per_row},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AudioModelSpec":
        shape_in, shape_out = d["input"]["shape"], d["output"]["shape"]
        fr = d["frame_rows"]
        return cls(
            frontend=d["frontend"],
            mode=d["mode"],
            sample_rate=d["sample_rate"],
            window_samples=shape_in[-1],
            row_hop=d["row_hop"],
            pad_left=d["pad_left"],
            rows_per_call=shape_out[1],
            row_size=shape_out[2],
            frame_count=fr["count"],
            frame_stride=fr["stride"],
            frame_offset=fr["offset"],
            tail_hop=d["tail"]["hop"],
            hops_per_row=d["tail"]["hops_per_row"],
        )

    def consistency_errors(self, mode: str) -> list[str]:
        """What makes this audio model unusable with a `mode` generator."""
        errors = []
        m = AUDIO_MODES.get(self.mode)
        if self.mode != mode or m is None:
            return [f"audio_model.mode: {self.mode!r}, the generator listens to {mode!r}"]
        if [self.frame_count, self.row_size] != [int(np.prod(m.per_frame_shape[:-1])), m.per_frame_shape[-1]]:
            errors.append(
                f"audio_model: {self.frame_count} rows of {self.row_size} per frame, the generator's {mode} frames "
                f"are {list(m.per_frame_shape)}"
            )
        if self.sample_rate % m.fps or self.frame_stride * self.row_hop != self.sample_rate // m.fps:
            errors.append(
                f"audio_model: {self.frame_stride} rows x {self.row_hop} samples per frame is not one {m.fps} fps "
                f"frame at {self.sample_rate} Hz"
            )
        if not (0 <= self.pad_left < self.window_samples and self.rows_per_call >= 1 and self.row_hop >= 1):
            errors.append("audio_model: pad_left, row_hop and the output's rows are out of range")
        if self.tail_hop < 1 or self.hops_per_row < 1:
            errors.append("audio_model.tail: hop and hops_per_row must be >= 1")
        return errors


def logmel_spec(mode: str, rows_per_call: int = 1) -> AudioModelSpec:
    """The geometry of dhm's own front end (`dhm-logmel-v1`) in `mode`'s layout."""
    if mode == "hubert":  # a row is a 50 Hz step: mel hops 2r and 2r+1
        hops_per_row, row_size, count, stride, offset = 2, 1024, 2, 2, 0
    elif mode == "wenet":  # a row is one mel hop; frame i (5 hops at 20 fps) holds hops 5i-8 … 5i+7
        hops_per_row, row_size, count, stride, offset = 1, 512, 16, 5, -8
    else:
        raise SpecError(f"unknown audio mode {mode!r}")
    hops = hops_per_row * rows_per_call
    return AudioModelSpec(
        frontend=FRONTEND_ID,
        mode=mode,
        sample_rate=SAMPLE_RATE,
        window_samples=(hops - 1) * HOP + N_FFT,
        row_hop=hops_per_row * HOP,
        pad_left=N_FFT // 2,
        rows_per_call=rows_per_call,
        row_size=row_size,
        frame_count=count,
        frame_stride=stride,
        frame_offset=offset,
        tail_hop=HOP,
        hops_per_row=hops_per_row,
    )


def _layout_kernel(spec: AudioModelSpec) -> np.ndarray:
    """The layout projection as a Conv1d kernel [row_size, N_MELS, hops_per_row]: a row is
    its hops' normalised mel vectors, concatenated, times the front end's projection."""
    k = spec.hops_per_row
    proj = _projection(k * N_MELS, spec.row_size, 1 if spec.mode == "hubert" else 2)  # [k*80, C]
    return np.ascontiguousarray(proj.reshape(k, N_MELS, spec.row_size).transpose(2, 1, 0))


def logmel_rows_numpy(spec: AudioModelSpec, pcm: np.ndarray) -> np.ndarray:
    """The reference front end (float64 FFT, as training computed its features) on one
    window: [window_samples] -> [rows_per_call, row_size]."""
    pcm = np.asarray(pcm, dtype=np.float64).reshape(-1)
    if pcm.size != spec.window_samples:
        raise SpecError(f"audio window of {pcm.size} samples; the front end takes {spec.window_samples}")
    mel = hops_log_mel(pcm, spec.rows_per_call * spec.hops_per_row)  # [hops, 80]
    steps = mel.reshape(spec.rows_per_call, spec.hops_per_row * N_MELS)
    proj = _projection(spec.hops_per_row * N_MELS, spec.row_size, 1 if spec.mode == "hubert" else 2)
    return (steps.astype(np.float32) @ proj).astype(np.float32)


def logmel_module(spec: AudioModelSpec):
    """The front end as a torch network [1,1,window_samples] -> [1,rows_per_call,row_size]:
    the log-mel hops, then the layout projection as a Conv1d over each row's hops."""
    import torch
    from torch import nn

    class LogMelRows(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.frontend = logmel_hops_module()
            self.layout = fixed_conv(_layout_kernel(spec), stride=spec.hops_per_row)

        def forward(self, pcm: torch.Tensor) -> torch.Tensor:
            return self.layout(self.frontend(pcm)).transpose(1, 2)  # [1, rows, C]

    return LogMelRows().eval()


def windowed_features(model, spec: AudioModelSpec, pcm: np.ndarray, n_frames: int, batch: int = 64) -> np.ndarray:
    """Every frame's features from a torch model with one stateless call per frame: what
    the stream computes, batched ([n_frames, *per_frame_shape])."""
    import torch

    shape = AUDIO_MODES[spec.mode].per_frame_shape
    padded = spec.padded_pcm(pcm)
    out = [np.zeros((0, *shape), np.float32)]
    with torch.inference_mode():
        for s in range(0, n_frames, batch):
            frames = list(range(s, min(n_frames, s + batch)))
            out.append(model(torch.from_numpy(spec.frame_windows(pcm, frames, padded))).numpy().reshape(-1, *shape))
    return np.concatenate(out).astype(np.float32)
