"""The avatar pipeline: the per-frame loop the Android and iOS demos mirror step by step.

    reference frame (ping-pong schedule) -> crop box from its landmarks -> crop/resize
    (the model's filter) -> inner 160 -> mask -> pack face tensor; audio window
    (i-4 … i+3 or i-8 … i+7) -> infer -> paste back

Every step is `dhm.data.preprocess`, the same code training used, with the model's own
conventions (`dhm.spec.Conventions`), so what the model sees at run time is what it saw
in training.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from dhm.data.dataset import Dataset
from dhm.data.preprocess import audio_window, crop_face, face_input, inner, paste_back
from dhm.errors import SpecError
from dhm.runtime_py.engines import Engine
from dhm.spec import AUDIO_INPUT, FACE_INPUT, OUTPUT, Conventions

STAGES = ("load", "crop", "pack", "infer", "paste")


def pingpong_reference(n_images: int, index: int) -> int:
    """The reference frame of output frame `index`, in Ultralight's inference order.

    Ultralight starts at frame 0, steps first and then uses the frame, and turns round at
    the ends: 1, 2, …, n-1, n-2, …, 0, 1, … (its `len_img` is the folder size minus 1): a
    period of 2(n-1). The native core's `dhm::pingpong_reference` is the same formula.
    """
    if index < 0:
        raise ValueError(f"frame index {index}: must be >= 0")
    if n_images < 2:
        return 0
    last = n_images - 1
    p = (index + 1) % (2 * last)
    return p if p <= last else 2 * last - p


def pingpong(n_images: int, count: int) -> list[int]:
    """The first `count` references."""
    return [pingpong_reference(n_images, i) for i in range(count)]


@dataclass
class StageTimes:
    """Seconds spent per stage, summed over frames."""

    totals: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    frames: int = 0

    def add(self, stage: str, seconds: float) -> None:
        self.totals[stage] += seconds

    def per_frame_ms(self) -> dict[str, float]:
        n = max(1, self.frames)
        return {k: 1000.0 * v / n for k, v in self.totals.items()}

    def fps(self) -> float:
        total = sum(self.totals.values())
        return self.frames / total if total > 0 else float("inf")


class AvatarPipeline:
    """Renders frames of a dataset's speaker from audio features with one engine, fed by
    the model's conventions (crop filter, audio window)."""

    def __init__(self, engine: Engine, dataset: Dataset, conventions: Conventions) -> None:
        self.engine = engine
        self.dataset = dataset
        self.conventions = conventions
        self.mode = conventions.mode
        names = {t.name: tuple(t.shape) for t in engine.inputs}
        if names.get(AUDIO_INPUT, (None,))[1:] != conventions.audio_shape:
            raise SpecError(
                f"{engine.path.name} takes audio {list(names.get(AUDIO_INPUT, ()))}; "
                f"{conventions.mode.name} {conventions.window}-frame windows are {[1, *conventions.audio_shape]}"
            )
        self.times = StageTimes()

    def check_features(self, features: np.ndarray) -> None:
        if not self.mode.fits(features.shape):
            raise SpecError(
                f"audio features {list(features.shape)} do not fit the model's {self.mode.name} mode: expected "
                f"{self.mode.layout}"
            )

    def render(self, reference: int, window: np.ndarray, mouth: int | None = None) -> np.ndarray:
        """One output frame: the reference frame with its lower face painted for `window`; the
        network's reference input is frame `mouth`'s face where given (idle footage), else its own."""
        t = time.perf_counter
        t0 = t()
        frame = self.dataset.frame(reference)
        box = self.dataset.boxes[reference]
        t1 = t()
        pre = self.conventions.preprocess
        crop = crop_face(frame, box, pre)
        face = inner(crop, pre)
        if mouth is not None and mouth != reference:
            face_ref = inner(crop_face(self.dataset.frame(mouth), self.dataset.boxes[mouth], pre), pre)
        else:
            face_ref = face
        t2 = t()
        inputs = {FACE_INPUT: face_input(face_ref, face, pre)[None], AUDIO_INPUT: window[None]}
        t3 = t()
        pred = self.engine.run(inputs)[OUTPUT][0]
        t4 = t()
        out = paste_back(frame, crop, pred, box, pre)
        t5 = t()
        for stage, dt in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            self.times.add(stage, dt)
        self.times.frames += 1
        return out

    def frames(self, features: np.ndarray) -> Iterator[np.ndarray]:
        """Offline rendering: one frame per feature frame, references in ping-pong order."""
        self.check_features(features)
        refs = pingpong(self.dataset.n_frames, len(features))
        for i, ref in enumerate(refs):
            yield self.render(ref, audio_window(features, i, self.conventions))


class StreamSession:
    """Streaming: feed audio-feature chunks as they arrive, get frames at the video's fps.

    Frame i needs feature frames i-W/2 … i+W/2-1, so it can be rendered once frame
    i+W/2-1 has arrived: the lookahead is W/2-1 feature frames (3 for an 8-frame window:
    120 ms at 25 fps, 150 ms at 20 fps; 7 for a 16-frame window) plus the time to render.
    `finish()` renders the last frames with the window zero-padded past the end, exactly
    as offline rendering pads it, so a stream's frames equal the offline frames bit for bit.
    """

    def __init__(self, pipeline: AvatarPipeline, expected_frames: int | None = None) -> None:
        self.pipeline = pipeline
        self.lookahead = pipeline.conventions.lookahead
        self.features: list[np.ndarray] = []  # feature frames from `first` on
        self.first = 0
        self.next_frame = 0
        self._expected = expected_frames

    @property
    def fps(self) -> int:
        return self.pipeline.mode.fps

    def _reference(self, i: int) -> int:
        return pingpong_reference(self.pipeline.dataset.n_frames, i)

    def push(self, chunk: np.ndarray) -> list[np.ndarray]:
        """Add feature frames; return every frame that can now be rendered."""
        chunk = np.asarray(chunk, dtype=np.float32)
        self.pipeline.check_features(chunk)
        self.features.extend(chunk)
        ready = self.first + len(self.features) - self.lookahead
        return self._render_until(ready)

    def finish(self) -> list[np.ndarray]:
        """The stream has ended: render the remaining frames."""
        return self._render_until(self.first + len(self.features))

    def _render_until(self, stop: int) -> list[np.ndarray]:
        out = []
        if not self.features or self.next_frame >= stop:
            return out
        conv = self.pipeline.conventions
        # Only the feature frames these windows read (not the whole stream on every push).
        # A slice that ends before the stream's end is never read past its end; one that
        # reaches it zero-pads exactly as offline rendering does (finish() only).
        lo = max(0, self.next_frame - conv.window_before)
        hi = min(self.first + len(self.features), stop - 1 + conv.window_after)
        feats = np.stack(self.features[lo - self.first : hi - self.first])
        while self.next_frame < stop:
            i = self.next_frame
            out.append(self.pipeline.render(self._reference(i), audio_window(feats, i - lo, conv)))
            self.next_frame += 1
        # later windows start at next_frame - W/2: what lies before is never read again
        keep = max(0, self.next_frame - conv.window_before)
        del self.features[: keep - self.first]
        self.first = keep
        return out
