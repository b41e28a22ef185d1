"""Idle frames: in silence the runtime shows the speaker's own footage and runs no model.

The voice detector (`dhm.runtime_py.vad`) decides per 32 ms hop; a video frame speaks when
any hop overlapping its samples does. The idle footage is the longest silent stretch of the
dataset's own clip (found by the same detector on `aud.wav`), walked in ping-pong order; it
is also the reference schedule while the avatar speaks, so the head moves on without a jump
at speech onset and offset and only the mouth changes. Around each speech run the generated
frame is blended with the footage over `ramp` frames on either side (the generated share
falls linearly to 0), so nothing pops; the blend is integer arithmetic on 8-bit pixels, the
same on every runtime. The paste box is the only region where the two differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dhm.runtime_py.vad import HOP, EnergyGate, SileroVad
from dhm.settings import setting

DETECTORS = {"silero": SileroVad, "energy": EnergyGate}
BLEND_ONE = 256  # blend weights in 1/256ths
SETTLE_FRAMES = 1  # frames of a silent stretch left out next to speech (the mouth is still closing)


def make_detector(name: str) -> Any:
    """A fresh detector (each stream keeps its own state)."""
    return DETECTORS[name]()


@dataclass(frozen=True)
class IdleSettings:
    """How a PCM session rests the mouth (each field's help, default and range, once)."""

    detector: str = setting(
        "silero",
        "Voice detector: silero (silero-vad's model; holds at 0 dB SNR) or energy (a level gate; loses speech "
        "in loud noise).",
        option="--vad",
        choices=tuple(DETECTORS),
    )
    ramp: int = setting(
        2, "Frames over which the generated mouth fades in before speech and out after it.", lo=0, hi=12
    )
    min_stretch_s: float = setting(
        0.3, "Shortest silent stretch of the clip that can be the idle footage (seconds).", option="--idle-min-s",
        lo=0.1, hi=60.0,
    )  # fmt: skip


class FrameVoice:
    """A detector's hop decisions -> one decision per video frame, streamed: frame i speaks
    when any hop overlapping its samples does."""

    def __init__(self, detector: Any, samples_per_frame: int) -> None:
        self.detector = detector
        self.spf = samples_per_frame
        self.hops: list[bool] = []  # decided hops from hop `hop_base` on
        self.hop_base = 0
        self.frames: list[bool] = []  # decided frames from frame `frame_base` on
        self.frame_base = 0

    @property
    def decided(self) -> int:
        """Frames decided so far."""
        return self.frame_base + len(self.frames)

    def _frames_from_hops(self, limit: int | None) -> None:
        while limit is None or self.decided < limit:
            i = self.decided
            first, last = i * self.spf // HOP, ((i + 1) * self.spf - 1) // HOP
            if last >= self.hop_base + len(self.hops):
                break
            self.frames.append(any(self.hops[h - self.hop_base] for h in range(first, last + 1)))
        # hops before the next frame's first hop are read by no later frame
        keep_from = self.decided * self.spf // HOP
        del self.hops[: max(0, keep_from - self.hop_base)]
        self.hop_base = max(self.hop_base, keep_from)

    def push(self, pcm: np.ndarray) -> None:
        self.hops.extend(bool(d) for d in self.detector.push(pcm))
        self._frames_from_hops(None)

    def flush(self, n_frames: int) -> None:
        """The stream has ended with `n_frames` video frames: decide them all."""
        self.hops.extend(bool(d) for d in self.detector.flush())
        self._frames_from_hops(n_frames)
        while self.decided < n_frames:  # frames past the last hop: silent
            self.frames.append(False)

    def speaks(self, i: int) -> bool:
        return 0 <= i - self.frame_base < len(self.frames) and self.frames[i - self.frame_base]

    def forget_before(self, i: int) -> None:
        n = max(0, min(i - self.frame_base, len(self.frames)))
        del self.frames[:n]
        self.frame_base += n

    def lookahead_samples(self, ahead_frames: int) -> int:
        """How far past the end of frame i the PCM must reach before frame i + `ahead_frames`
        is decided (the worst frame phase): the detector's hop, its lookahead and the ramp."""
        worst = 0
        for i in range(64):
            last_hop = ((i + ahead_frames + 1) * self.spf - 1) // HOP + self.detector.lookahead
            worst = max(worst, (last_hop + 1) * HOP - (i + 1) * self.spf)
        return worst


def frame_speech(pcm: np.ndarray, samples_per_frame: int, n_frames: int, detector: Any) -> np.ndarray:
    """Per-frame speech decisions of a whole recording."""
    voice = FrameVoice(detector, samples_per_frame)
    voice.push(pcm)
    voice.flush(n_frames)
    return np.array([voice.speaks(i) for i in range(n_frames)], dtype=bool)


def generated_share(i: int, speaks: Callable[[int], bool], ramp: int) -> int:
    """Frame i's generated share in 1/256ths: all of it in speech, falling linearly over
    `ramp` frames on either side of a speech run, none further away."""
    for d in range(ramp + 1):
        if speaks(i - d) or speaks(i + d):
            return (BLEND_ONE * (ramp + 1 - d)) // (ramp + 1)
    return 0


def blend(generated: np.ndarray, footage: np.ndarray, share: int) -> np.ndarray:
    """(g * share + f * (256 - share) + 128) >> 8 per 8-bit channel."""
    if share >= BLEND_ONE:
        return generated
    mixed = generated.astype(np.uint32) * share + footage.astype(np.uint32) * (BLEND_ONE - share) + BLEND_ONE // 2
    return (mixed >> 8).astype(np.uint8)


MOUTH_SHARE = 0.25  # the clip's most open-mouthed quarter (by its lip landmarks) feeds the reference


@dataclass
class IdleFootage:
    """The dataset frames shown in silence, in clip order (one silent stretch), and why; and
    the frames whose mouths the generator sees as its reference while speech is painted on
    the footage (`mouth`, clip order; empty: the painted frame itself, as without idle frames).

    The generator learned the inside of the mouth from its reference input (a random training
    frame): fed the silent footage, whose mouth is closed, it opens the mouth less in time with
    the speech (lip sync 0.869 against 0.923 on the demo's teacher); fed open-mouthed clip frames
    as the reference, it paints the footage as well as the whole clip (0.926)."""

    frames: list[int]
    note: str
    silent: bool  # False: no silent stretch was found; the whole clip stands in
    mouth: list[int] = field(default_factory=list)

    def reference(self, i: int) -> int:
        from dhm.runtime_py.pipeline import pingpong_reference

        return self.frames[pingpong_reference(len(self.frames), i)]

    def mouth_reference(self, i: int) -> int:
        """Frame i's reference input while speaking (ping-pong over `mouth`)."""
        from dhm.runtime_py.pipeline import pingpong_reference

        if not self.mouth:
            return self.reference(i)
        return self.mouth[pingpong_reference(len(self.mouth), i)]


def open_mouth_frames(ds: Any, n_frames: int, share: float = MOUTH_SHARE) -> list[int]:
    """The clip frames whose inner lips stand furthest apart for the mouth's width (the lip
    landmarks), the top `share` of them in clip order; [] when the landmarks have no lips."""
    from dhm.data.lips import LIP_INNER, LIP_OUTER

    gaps = []
    for i in range(n_frames):
        p = ds.landmarks[i]
        if p.shape[0] <= max(LIP_INNER):
            return []
        inner, outer = p[list(LIP_INNER)], p[list(LIP_OUTER)]
        gaps.append(float(np.ptp(inner[:, 1])) / max(1e-6, float(np.ptp(outer[:, 0]))))
    keep = max(2, int(round(share * n_frames)))
    return sorted(np.argsort(-np.asarray(gaps), kind="stable")[:keep].tolist())


def longest_silence(speech: np.ndarray, margin: int) -> tuple[int, int]:
    """[start, stop) of the longest run of silent frames, `margin` frames in from speech on
    either side (the mouth has settled), or (0, 0)."""
    best, start = (0, 0), None
    for i, s in enumerate([*speech.tolist(), True]):
        if not s and start is None:
            start = i
        elif s and start is not None:
            a = start + (margin if start > 0 else 0)
            b = i - (margin if i < len(speech) else 0)
            if b - a > best[1] - best[0]:
                best = (a, b)
            start = None
    return best


def idle_footage(ds: Any, fps: int, settings: IdleSettings, frames: int | None = None) -> IdleFootage:
    """The longest silent stretch of the dataset's clip (its aud.wav through the detector; its
    first `frames` frames), or the whole clip when it has none long enough (said in `note`)."""
    from dhm.audio.frontend import SAMPLE_RATE, read_pcm

    n_frames = min(ds.n_frames, frames) if frames is not None else ds.n_frames
    everything = list(range(n_frames))
    if ds.wav_path is None:
        return IdleFootage(everything, f"{ds.root}: no aud.wav to find silent footage in; the whole clip stands in "
                           "for it (its mouth moves in silence)", False)  # fmt: skip
    pcm = read_pcm(ds.wav_path)[0]
    spf = SAMPLE_RATE // fps
    n = min(n_frames, pcm.size // spf)
    speech = frame_speech(pcm, spf, n, make_detector(settings.detector))
    a, b = longest_silence(speech, SETTLE_FRAMES)
    need = max(2, int(round(settings.min_stretch_s * fps)))
    if b - a < need:
        return IdleFootage(everything, f"{ds.root}: no silent stretch of {settings.min_stretch_s:g} s in its clip "
                           f"(longest {(b - a) / fps:.2f} s); the reference schedule stands in for idle footage "
                           "(its mouth moves in silence)", False)  # fmt: skip
    note = f"idle footage: frames {a}…{b - 1} ({(b - a) / fps:.1f} s of silence in {ds.wav_path.name})"
    return IdleFootage(list(range(a, b)), note, True, open_mouth_frames(ds, n_frames))


def shipped_detector(engine: Any) -> Callable[[], Any] | None:
    """New detectors running the voice model an export ships beside `engine`'s file (its
    manifest's `vad` section, in the engine's format, checked against its sha256 and shapes),
    with the manifest's decision settings; None where the export ships none."""
    from dhm.errors import SpecError
    from dhm.manifest import listed_file
    from dhm.runtime_py.engines.registry import get
    from dhm.runtime_py.vad import SileroVad, engine_runner

    section = (getattr(engine, "manifest", None) or {}).get("vad")
    if section is None:
        return None
    backend = get(engine.backend)
    entries = [a for a in section["artifacts"] if a["format"] == backend.format]
    if not entries:
        return None
    path = listed_file(engine.path.parent, entries[0], engine.manifest_path)
    vad_engine = backend.load(path, threads=1)
    got = {t.name: list(t.shape) for t in vad_engine.inputs}
    if got != section["inputs"]:
        raise SpecError(f"{path}: inputs {got} disagree with {engine.manifest_path}'s vad section {section['inputs']}")
    runner, d, source = engine_runner(vad_engine), section["decision"], f"{path.name}, {backend.name}"
    return lambda: SileroVad(d["on"], d["off"], d["hangover"], d["lookahead"], runner=runner, source=source)
