"""Audio in, frames out: `PcmSession`, the loop the native core's `PcmSession` mirrors.

16 kHz mono PCM chunks of any size go through the audio model
(`dhm.runtime_py.streaming.PcmFeatureStream`) and the generator; every frame that can be
rendered comes back. With `idle` (`dhm.runtime_py.idle`) a voice detector listens too: in
silence the frame is the speaker's footage and neither model runs; around speech the
generated mouth is blended in and out.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dhm.errors import SpecError
from dhm.runtime_py.idle import FrameVoice, IdleFootage, IdleSettings, blend, generated_share, make_detector
from dhm.runtime_py.pipeline import AvatarPipeline, pingpong_reference
from dhm.runtime_py.streaming import PcmFeatureStream


@dataclass
class IdleRun:
    """What a session needs to rest the mouth: the detector's settings, the footage, and where
    the export ships its own voice model, a maker of detectors that run it."""

    settings: IdleSettings
    footage: IdleFootage
    detector: Callable[[], Any] | None = None

    def new_detector(self) -> Any:
        return self.detector() if self.detector is not None else make_detector(self.settings.detector)


class PcmSession:
    """Frame i comes out once the PCM reaches `lookahead_ms` past its end (the audio model's
    window plus the generator's W/2-1 feature frames of lookahead, or the voice detector's
    decision on frame i + ramp when that comes later); `finish()` renders the rest. Any
    chunking gives the same frames; without `idle` they equal offline rendering of the same
    utterance's features.
    """

    def __init__(self, pipeline: AvatarPipeline, front_end: Any, idle: IdleRun | None = None) -> None:
        if front_end.spec.mode != pipeline.mode.name:
            raise SpecError(f"audio model is {front_end.spec.mode}, the generator listens to {pipeline.mode.name}")
        self.pipeline = pipeline
        self.front_end = front_end
        self.audio = PcmFeatureStream(front_end.spec, self._timed_rows)
        self.audio.eager = idle is None  # without idle frames every window is read: run each as it completes
        self.idle = idle
        spf = front_end.spec.samples_per_frame
        self.voice = FrameVoice(idle.new_detector(), spf) if idle else None
        self.ramp = idle.settings.ramp if idle else 0
        self.audio_seconds = 0.0  # time spent in the audio model
        self.voice_seconds = 0.0  # time spent in the voice detector
        self.samples_in = 0
        self.next_frame = 0
        self.n_frames: int | None = None  # known at finish()
        self.inferred = 0  # frames the generator ran for
        self.speech_frames = 0
        self.shares = array("H")  # each frame's generated share in 1/256ths (2 bytes a frame: 180 KB an hour)

    def _timed_rows(self, window: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        rows = self.front_end.rows(window)
        self.audio_seconds += time.perf_counter() - t0
        return rows

    @property
    def lookahead_ms(self) -> float:
        spec = self.front_end.spec
        samples = spec.lookahead_samples(self.pipeline.conventions.window)
        if self.voice is not None:
            samples = max(samples, self.voice.lookahead_samples(self.ramp))
        return 1000.0 * samples / spec.sample_rate

    def reference(self, i: int) -> int:
        """Frame i's dataset frame: the idle footage's schedule, or the whole clip's."""
        if self.idle is not None:
            return self.idle.footage.reference(i)
        return pingpong_reference(self.pipeline.dataset.n_frames, i)

    def _ready(self, i: int) -> bool:
        if self.n_frames is not None:
            return i < self.n_frames
        if i + self.pipeline.conventions.lookahead >= self.audio.frames_ready:
            return False
        return self.voice is None or i + self.ramp < self.voice.decided

    def _window(self, i: int) -> np.ndarray:
        """Feature frames i-W/2 … i+W/2-1, zeros outside the utterance (as offline rendering pads)."""
        conv = self.pipeline.conventions
        end = self.n_frames if self.n_frames is not None else self.audio.frames_ready
        window = np.zeros((conv.window, *conv.mode.per_frame_shape), np.float32)
        for k, j in enumerate(range(i - conv.window_before, i + conv.window_after)):
            if 0 <= j < end:
                window[k] = self.audio.features(j)
        return window.reshape(conv.audio_shape)

    def _frame(self, i: int) -> np.ndarray:
        ref = self.reference(i)
        share = 256 if self.voice is None else generated_share(i, self.voice.speaks, self.ramp)
        self.shares.append(share)
        self.speech_frames += self.voice is None or self.voice.speaks(i)
        if share == 0:  # silence: the footage, no model runs
            return self.pipeline.dataset.frame(ref)
        self.inferred += 1
        mouth = self.idle.footage.mouth_reference(i) if self.idle is not None else None
        generated = self.pipeline.render(ref, self._window(i), mouth)
        return generated if share == 256 else blend(generated, self.pipeline.dataset.frame(ref), share)

    def _emit(self) -> list[np.ndarray]:
        out = []
        while self._ready(self.next_frame):
            out.append(self._frame(self.next_frame))
            self.next_frame += 1
        # later windows start at next_frame - W/2; the ramp looks `ramp` frames back
        self.audio.forget_before(max(0, self.next_frame - self.pipeline.conventions.window_before))
        if self.voice is not None:
            self.voice.forget_before(self.next_frame - self.ramp)
        return out

    def push_pcm(self, samples: np.ndarray) -> list[np.ndarray]:
        self.samples_in += int(np.asarray(samples).size)
        if self.voice is not None:
            t0 = time.perf_counter()
            self.voice.push(samples)
            self.voice_seconds += time.perf_counter() - t0
        self.audio.push_count(samples)
        return self._emit()

    def finish(self) -> list[np.ndarray]:
        n = self.audio.finish_count()
        if self.voice is not None:
            self.voice.flush(n)
        self.n_frames = n
        return self._emit()

    def summary(self) -> dict[str, Any]:
        """What the session did: frames, how many the generator painted, the audio model's runs."""
        frames = self.next_frame
        return {
            "frames": frames,
            "inferred": self.inferred,
            "speech_frames": int(self.speech_frames),
            "audio_calls": self.audio.calls_run,
            "audio_calls_available": self.audio.calls,
            "detector": self.voice.detector.describe() if self.voice is not None else None,
            "ramp_frames": self.ramp,
        }
