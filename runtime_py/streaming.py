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
    numerics aside).

    Two ways to read it: `push`/`finish` return every frame's features (the audio model runs
    on every call); `push_count`/`finish_count` only say how many frames' features are
    available, and `features(i)` runs the audio model on the calls frame i needs when it is
    asked for (a session that shows footage in silence never asks for most of them).
    Either way only the PCM, calls and rows later frames can still read are kept, so an
    hour's stream holds what a second's does."""

    def __init__(self, spec: AudioModelSpec, rows_fn: RowsFn) -> None:
        self.spec = spec
        self.rows_fn = rows_fn
        # the PCM not yet consumed; pcm[0] is buffer position `base` (sample base - pad_left)
        self.pcm = np.zeros(spec.pad_left, dtype=np.float32)
        self.base = 0
        self.n_samples = 0
        self.calls = 0  # calls whose PCM window is complete
        self.windows: dict[int, np.ndarray] = {}  # call -> its PCM window, not yet run
        self.call_rows: dict[int, np.ndarray] = {}  # call -> its rows [rows_per_call, row_size]
        self.calls_run = 0  # audio model runs so far
        self.frames_ready = 0  # frames whose features are available
        self.frames_out = 0  # frames returned by push/finish
        self.ready_before_finish: int | None = None
        self.finished = False
        self.frame_cache: dict[int, np.ndarray] = {}  # frame -> its features, until forgotten
        self.log: list[np.ndarray] | None = None  # set to a list to keep every frame's features (golden files)
        self.eager = False  # run the audio model on every window as it completes (the C++ core's order)

    def _prepare(self, call: int) -> None:
        s = self.spec
        start = call * s.rows_per_call * s.row_hop - self.base  # buffer position (pad_left included)
        window = self.pcm[start : start + s.window_samples]
        if window.size < s.window_samples:
            window = np.concatenate([window, np.zeros(s.window_samples - window.size, np.float32)])
        self.windows[call] = np.array(window, dtype=np.float32)
        self.calls = call + 1
        if self.eager:
            self._row(call * s.rows_per_call)

    def _row(self, r: int) -> np.ndarray:
        s = self.spec
        call = r // s.rows_per_call
        if call not in self.call_rows:
            rows = self.rows_fn(self.windows.pop(call))
            self.call_rows[call] = np.asarray(rows, dtype=np.float32).reshape(s.rows_per_call, s.row_size)
            self.calls_run += 1
        return self.call_rows[call][r % s.rows_per_call]

    def features(self, i: int) -> np.ndarray:
        """Frame i's features (0 <= i < frames_ready), running the audio model where needed."""
        s = self.spec
        if i in self.frame_cache:
            return self.frame_cache[i]
        if not 0 <= i < self.frames_ready:
            raise IndexError(f"frame {i}: features of frames 0 … {self.frames_ready - 1} are available")
        # frames ready before finish() read rows the audio covered; the tail's are zeroed past its end
        before = self.ready_before_finish
        valid = s.valid_rows(self.n_samples) if before is not None and i >= before else None
        first = s.frame_stride * i + s.frame_offset
        out = np.zeros((s.frame_count, s.row_size), dtype=np.float32)
        for k in range(s.frame_count):
            r = first + k
            if r >= 0 and (valid is None or r < valid):
                out[k] = self._row(r)
        out = out.reshape(AUDIO_MODES[s.mode].per_frame_shape)
        self.frame_cache[i] = out
        if self.log is not None:
            self.log.append(out)
        return out

    def forget_before(self, frame: int) -> None:
        """Frames before `frame` will not be asked for again: drop their calls and rows."""
        s = self.spec
        first_row = s.frame_stride * frame + s.frame_offset
        last_call = first_row // s.rows_per_call - 1  # calls wholly before that row
        for store in (self.windows, self.call_rows):
            for c in [c for c in store if c <= last_call]:
                del store[c]
        for i in [i for i in self.frame_cache if i < frame]:
            del self.frame_cache[i]

    def push_count(self, samples: np.ndarray) -> int:
        """Add 16 kHz mono samples; return how many frames' features are now available."""
        if self.finished:
            raise SpecError("audio stream: samples pushed after finish(); start a new stream")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.pcm = np.concatenate([self.pcm, samples])
        self.n_samples += samples.size
        s = self.spec
        while s.samples_for_call(self.calls) <= self.n_samples:
            self._prepare(self.calls)
        # drop what no later call reads (keeps the buffer a window long for any chunking)
        drop = self.calls * s.rows_per_call * s.row_hop - self.base
        if drop > 0:
            self.pcm = self.pcm[drop:]
            self.base += drop
        # frame i exists once its own samples have arrived and its last row's call is prepared
        rows = self.calls * s.rows_per_call
        while (self.frames_ready + 1) * s.samples_per_frame <= self.n_samples and s.last_row_of_frame(
            self.frames_ready
        ) < rows:
            self.frames_ready += 1
        return self.frames_ready

    def finish_count(self) -> int:
        """The utterance has ended: prepare the calls its last frames read; return the frame count."""
        if self.finished:
            raise SpecError("audio stream: finish() called twice")
        self.finished = True
        self.ready_before_finish = self.frames_ready
        s = self.spec
        n_frames = s.frames_for(self.n_samples)
        if n_frames:
            while self.calls * s.rows_per_call <= s.last_row_of_frame(n_frames - 1):
                self._prepare(self.calls)
        self.frames_ready = max(self.frames_ready, n_frames)
        return n_frames

    def _take(self, stop: int) -> np.ndarray:
        ready = [self.features(i) for i in range(self.frames_out, stop)]
        self.frames_out = max(self.frames_out, stop)
        self.forget_before(self.frames_out)
        return self.stack_frames(ready)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Add 16 kHz mono samples; return the feature frames that became computable."""
        return self._take(self.push_count(samples))

    def finish(self) -> np.ndarray:
        """The utterance has ended: the remaining frames, padded as offline features are."""
        return self._take(self.finish_count())

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
