"""The audio front end that belongs to a generator engine: PCM -> feature rows.

An exported model's manifest lists its audio model (`audio_model`, written by `dhm export`
for models trained on dhm's own features); it runs on the generator's engine kind (MNN
beside an .mnn file, onnxruntime beside an .onnx). A torch checkpoint trained on dhm's
features uses the numpy front end the training features came from (the reference the
exported audio models are validated against).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dhm.audio.geometry import PCM_INPUT, ROWS_OUTPUT, AudioModelSpec, logmel_rows_numpy, logmel_spec
from dhm.spec import AUDIO_MODES
from dhm.errors import SpecError

NO_AUDIO_MODEL = (
    "pass --audio-features FILE.npy (features computed off the phone), or export a model trained on dhm's "
    "own features with `dhm export`, which writes its audio model"
)


@dataclass
class AudioFrontEnd:
    spec: AudioModelSpec
    rows: Callable[[np.ndarray], np.ndarray]  # [window_samples] -> [rows_per_call, row_size]
    description: str


def engine_rows(engine: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A PCM window -> the audio model's rows [rows_per_call, row_size], run by `engine`."""

    def rows(window: np.ndarray) -> np.ndarray:
        return engine.run({PCM_INPUT: window.reshape(1, 1, -1)})[ROWS_OUTPUT][0]

    return rows


def audio_front_end(engine: Any, threads: int = 1, variant: str = "fp32") -> AudioFrontEnd:
    """The audio model for `engine`'s generator, or one line saying why there is none.

    `variant`: which of the export's audio files (fp32, or a student's fp16/int8); the
    generator's own variant does not choose it, since the audio model's INT8 costs frames
    the generator's INT8 does not (see the export report)."""
    from dhm.audio.frontend import FRONTEND_ID
    from dhm.runtime_py.engines.registry import get
    from dhm.models.checkpoint import file_sha256

    mode = engine.conventions.mode.name if engine.conventions is not None else None
    if not get(engine.backend).exported:  # a checkpoint: the numpy front end it was trained on
        if engine.frontend != FRONTEND_ID:
            raise SpecError(
                f"{engine.path}: was trained on {engine.frontend or 'features from an unknown front end'} "
                f"({mode}); dhm computes only its own {FRONTEND_ID} features from a WAV: {NO_AUDIO_MODEL}"
            )
        spec = logmel_spec(mode)
        return AudioFrontEnd(spec, lambda w: logmel_rows_numpy(spec, w), f"numpy {FRONTEND_ID} (reference)")
    manifest = getattr(engine, "manifest", None)
    if manifest is None:
        raise SpecError(f"{engine.path}: no manifest.json beside it names an audio model; {NO_AUDIO_MODEL}")
    section = manifest.get("audio_model")
    if section is None:
        frontend = manifest["audio"].get("frontend", "features from outside dhm")
        raise SpecError(
            f"{engine.manifest_path}: lists no audio model (the generator listens to {frontend}); {NO_AUDIO_MODEL}"
        )
    backend = get(engine.backend)
    entries = [a for a in section["artifacts"] if a["format"] == backend.format]
    if not entries:
        raise SpecError(f"{engine.manifest_path}: its audio model has no {backend.format} file; re-run `dhm export`")
    chosen = [a for a in entries if a.get("variant", "fp32") == variant]
    if not chosen:
        listed = ", ".join(sorted({a.get("variant", "fp32") for a in entries}))
        left_out = [
            x["reason"] for x in section.get("left_out", []) if (x["variant"], x["engine"]) == (variant, backend.name)
        ]
        hint = (
            f"export left it out: {left_out[0]}"
            if left_out
            else "export with --variants including it and --audio-model"
        )
        raise SpecError(
            f"{engine.manifest_path}: its audio model has no {variant} {backend.format} file "
            f"(it lists {listed}); {hint}"
        )
    entries = chosen
    path = engine.path.parent / entries[0]["file"]
    if not path.is_file():
        raise SpecError(f"{path}: the audio model the manifest lists is missing")
    if file_sha256(path) != entries[0]["sha256"]:
        raise SpecError(f"{path}: sha256 differs from {engine.manifest_path}: the file was changed or replaced")
    spec = AudioModelSpec.from_dict(section)
    audio_engine = backend.load(path, threads=threads, precision=section["precision"])
    got = {t.name: tuple(t.shape) for t in audio_engine.inputs}
    if got != {PCM_INPUT: (1, 1, spec.window_samples)}:
        raise SpecError(f"{path}: inputs {got} disagree with {engine.manifest_path}")
    return AudioFrontEnd(spec, engine_rows(audio_engine), f"{path.name} ({backend.name})")


# ----------------------------------------------------------------- streaming


RowsFn = Callable[[np.ndarray], np.ndarray]  # [window_samples] float32 -> [rows_per_call, row_size]


class PcmFeatureStream:
    """PCM chunks in, the generator's per-frame features out, as soon as each frame's rows
    can be computed. Any chunking of the same PCM gives the same features, and after
    `finish()` they equal `features_for_mode` on the whole utterance (the front end's
    numerics aside)."""

    def __init__(self, spec: AudioModelSpec, rows_fn: RowsFn) -> None:
        self.spec = spec
        self.rows_fn = rows_fn
        # the PCM not yet consumed; pcm[0] is buffer position `base` (sample base - pad_left)
        self.pcm = np.zeros(spec.pad_left, dtype=np.float32)
        self.base = 0
        self.n_samples = 0
        self.rows: list[np.ndarray] = []  # computed rows, row r at index r
        self.frames_out = 0
        self.finished = False

    def _call(self, call: int) -> None:
        s = self.spec
        start = call * s.rows_per_call * s.row_hop - self.base  # buffer position (pad_left included)
        window = self.pcm[start : start + s.window_samples]
        if window.size < s.window_samples:
            window = np.concatenate([window, np.zeros(s.window_samples - window.size, np.float32)])
        rows = np.asarray(self.rows_fn(window), dtype=np.float32).reshape(s.rows_per_call, s.row_size)
        self.rows.extend(rows)

    def _frame(self, i: int, valid_rows: int | None) -> np.ndarray:
        s = self.spec
        first = s.frame_stride * i + s.frame_offset
        out = np.zeros((s.frame_count, s.row_size), dtype=np.float32)
        for k in range(s.frame_count):
            r = first + k
            if r >= 0 and (valid_rows is None or r < valid_rows):
                out[k] = self.rows[r]
        return out.reshape(AUDIO_MODES[s.mode].per_frame_shape)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Add 16 kHz mono samples; return the feature frames that became computable."""
        if self.finished:
            raise SpecError("audio stream: samples pushed after finish(); start a new stream")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.pcm = np.concatenate([self.pcm, samples])
        self.n_samples += samples.size
        s = self.spec
        while s.samples_for_call(len(self.rows) // s.rows_per_call) <= self.n_samples:
            self._call(len(self.rows) // s.rows_per_call)
        # drop what no later call reads (keeps the buffer a window long for any chunking)
        drop = (len(self.rows) // s.rows_per_call) * s.rows_per_call * s.row_hop - self.base
        if drop > 0:
            self.pcm = self.pcm[drop:]
            self.base += drop
        ready = []
        # frame i exists once its own samples have arrived and its last row is computed
        while (self.frames_out + 1) * s.samples_per_frame <= self.n_samples and s.last_row_of_frame(
            self.frames_out
        ) < len(self.rows):
            ready.append(self._frame(self.frames_out, None))
            self.frames_out += 1
        return self.stack_frames(ready)

    def finish(self) -> np.ndarray:
        """The utterance has ended: the remaining frames, padded as offline features are."""
        if self.finished:
            raise SpecError("audio stream: finish() called twice")
        self.finished = True
        s = self.spec
        n_frames = s.frames_for(self.n_samples)
        if n_frames:
            need = s.last_row_of_frame(n_frames - 1)
            while len(self.rows) <= need:
                self._call(len(self.rows) // s.rows_per_call)
        valid = s.valid_rows(self.n_samples)
        ready = [self._frame(i, valid) for i in range(self.frames_out, n_frames)]
        self.frames_out = n_frames
        return self.stack_frames(ready)

    def stack_frames(self, frames: list[np.ndarray]) -> np.ndarray:
        shape = AUDIO_MODES[self.spec.mode].per_frame_shape
        return np.stack(frames) if frames else np.zeros((0, *shape), dtype=np.float32)


def stream_features(spec: AudioModelSpec, rows_fn: RowsFn, pcm: np.ndarray, chunk: int | None = None) -> np.ndarray:
    """All features of `pcm` through a stream (in chunks of `chunk` samples, or at once)."""
    stream = PcmFeatureStream(spec, rows_fn)
    pcm = np.asarray(pcm, dtype=np.float32)
    step = chunk or max(1, pcm.size)
    parts = [stream.push(pcm[i : i + step]) for i in range(0, pcm.size, step)]
    parts.append(stream.finish())
    return np.concatenate(parts)
