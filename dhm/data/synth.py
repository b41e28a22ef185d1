"""The built-in talking-head set: a procedurally rendered speaker, in Ultralight's layout.

A synthetic voice (harmonic source shaped by vowel formants, syllable envelopes and
pauses) drives a drawn face: the mouth opens with the syllable envelope and widens or
rounds with the vowel, so the mouth is predictable from the audio features. The head
drifts, scales and tilts slightly and the eyes blink, so the generator must really use
its reference frame. Everything is seeded: the same seed gives the same bytes.

Output (exactly the Ultralight dataset layout, plus `synth.json` describing the clip):
    OUT/full_body_img/<i>.jpg, OUT/landmarks/<i>.lms, OUT/aud.wav,
    OUT/aud_hu.npy (hubert, 25 fps) or OUT/aud_wenet.npy (wenet, 20 fps)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dhm.audio.frontend import FRONTEND_ID, SAMPLE_RATE, features_for_mode, write_wav
from dhm.data.dataset import IMAGE_DIR, LANDMARK_DIR, WAV_FILE
from dhm.io import atomic_dir
from dhm.spec import AUDIO_MODES

FRAME_W, FRAME_H = 256, 320
N_LANDMARKS = 110
JPEG_QUALITY = 95
_SUB = 4  # cv2 drawing sub-pixel bits
_MIN_FRAMES = 8

# Vowels: formants F1, F2 (Hz), mouth openness and width (0..1).
_VOWELS = {
    "a": (780.0, 1250.0, 1.00, 0.60),
    "e": (500.0, 1900.0, 0.55, 0.85),
    "i": (300.0, 2300.0, 0.25, 1.00),
    "o": (520.0, 900.0, 0.70, 0.30),
    "u": (320.0, 780.0, 0.35, 0.10),
}


@dataclass
class Speech:
    samples: np.ndarray  # float32 mono at SAMPLE_RATE
    openness: np.ndarray  # per sample, 0..1
    width: np.ndarray  # per sample, 0..1


def _smooth(x: np.ndarray, n: int) -> np.ndarray:
    kernel = np.ones(n) / n
    return np.convolve(np.pad(x, (n // 2, n - 1 - n // 2), mode="edge"), kernel, mode="valid")


def synth_speech(duration_s: float, rng: np.random.Generator) -> Speech:
    n = int(round(duration_s * SAMPLE_RATE))
    env = np.zeros(n)
    f1 = np.full(n, 500.0)
    f2 = np.full(n, 1500.0)
    f0 = np.full(n, 120.0)
    openness = np.zeros(n)
    width = np.full(n, 0.5)
    noise_env = np.zeros(n)
    vowels = list(_VOWELS)
    t = float(rng.uniform(0.15, 0.4))
    while t < duration_s:
        if rng.random() < 0.15:
            t += float(rng.uniform(0.25, 0.6))  # pause
            continue
        dur = float(rng.uniform(0.14, 0.32))
        a, b = int(t * SAMPLE_RATE), min(n, int((t + dur) * SAMPLE_RATE))
        if b <= a:
            break
        v = _VOWELS[vowels[int(rng.integers(len(vowels)))]]
        m = b - a
        ramp = max(1, int(0.3 * m))
        shape = np.ones(m)
        shape[:ramp] = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, ramp))
        shape[-ramp:] = 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, ramp))
        level = float(rng.uniform(0.6, 1.0))
        env[a:b] = np.maximum(env[a:b], level * shape)
        f1[a:b], f2[a:b] = v[0], v[1]
        openness[a:b] = np.maximum(openness[a:b], level * shape * v[2])
        width[a:b] = v[3]
        f0[a:b] = float(rng.uniform(105.0, 150.0)) * (1.0 + 0.08 * np.linspace(1, -1, m))
        onset = min(m, int(0.04 * SAMPLE_RATE))
        if rng.random() < 0.5:  # a fricative-like onset
            noise_env[a : a + onset] = 0.25 * level
        t += dur + float(rng.uniform(0.0, 0.08))
    smooth_n = int(0.02 * SAMPLE_RATE)
    f1, f2, f0, width = (_smooth(x, smooth_n) for x in (f1, f2, f0, width))
    phase = 2.0 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voiced = np.zeros(n)
    for k in range(1, 32):
        fk = k * f0
        gain = 1.0 / (1.0 + ((fk - f1) / 90.0) ** 2) + 0.7 / (1.0 + ((fk - f2) / 120.0) ** 2)
        gain += 0.2 / (1.0 + ((fk - 2700.0) / 200.0) ** 2)
        gain *= (fk < SAMPLE_RATE / 2 - 200) / np.sqrt(k)
        voiced += gain * np.sin(k * phase)
    hiss = rng.standard_normal(n)
    hiss = hiss - _smooth(hiss, 8)  # crude high-pass
    signal = env * voiced / 3.0 + noise_env * hiss + 0.003 * rng.standard_normal(n)
    signal = 0.8 * signal / max(1e-6, float(np.max(np.abs(signal))))
    return Speech(samples=signal.astype(np.float32), openness=openness, width=width)


# --------------------------------------------------------------------------- the face


@dataclass(frozen=True)
class Look:
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    shirt: tuple[float, float, float]
    lips: tuple[float, float, float]
    iris: tuple[float, float, float]
    background: np.ndarray  # uint8 HxWx3


def _look(rng: np.random.Generator, size: tuple[int, int] = (FRAME_W, FRAME_H)) -> Look:
    def jitter(base: tuple[float, float, float], amount: float) -> tuple[float, float, float]:
        return tuple(float(np.clip(c + rng.uniform(-amount, amount), 0, 255)) for c in base)  # type: ignore[return-value]

    low = rng.uniform(0, 1, (10, 8, 3))
    tex = cv2.resize(low, size, interpolation=cv2.INTER_CUBIC)
    base = np.array(jitter((150.0, 135.0, 120.0), 40.0))
    ramp = np.linspace(-25, 25, size[1])[:, None, None]
    background = np.clip(base + 40.0 * (tex - 0.5) + ramp, 0, 255).astype(np.uint8)
    return Look(
        skin=jitter((135.0, 165.0, 205.0), 20.0),
        hair=jitter((35.0, 45.0, 60.0), 15.0),
        shirt=jitter((120.0, 80.0, 60.0), 50.0),
        lips=jitter((95.0, 95.0, 175.0), 15.0),
        iris=jitter((70.0, 60.0, 40.0), 30.0),
        background=background,
    )


def _ellipse(center: tuple[float, float], axes: tuple[float, float], n: int = 48) -> np.ndarray:
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([center[0] + axes[0] * np.cos(ang), center[1] + axes[1] * np.sin(ang)], axis=1)


def _arc(center: tuple[float, float], axes: tuple[float, float], deg0: float, deg1: float, n: int) -> np.ndarray:
    ang = np.deg2rad(np.linspace(deg0, deg1, n))
    return np.stack([center[0] + axes[0] * np.cos(ang), center[1] + axes[1] * np.sin(ang)], axis=1)


def _landmarks(open_: float, width: float, blink: float) -> np.ndarray:
    """110 points in the layout of Ultralight's PFLD landmarks (face centre at 0,0; y down):
    0-32 jaw (left cheek, round the chin, right cheek), 33-42 brows, 43-51 nose,
    52 nose bridge (the crop's top), 53-64 eyes, 65-89 hairline and forehead,
    90-101 outer lips, 102-109 inner lips (dhm.data.lips reads the lips from these).
    """
    theta = np.deg2rad(np.linspace(5.0, 175.0, 33))  # y points down: this runs under the chin
    jaw = np.stack([-70.0 * np.cos(theta), 5.0 + 90.0 * np.sin(theta)], axis=1)
    brows = np.concatenate(
        [_arc((-28.0, -30.0), (14.0, 4.0), 200, 340, 5), _arc((28.0, -30.0), (14.0, 4.0), 200, 340, 5)]
    )
    nose = np.array([[0, -8], [0, 2], [0, 12], [0, 20], [-9, 24], [-5, 26], [0, 27], [5, 26], [9, 24]], dtype=float)
    bridge = np.array([[0.0, -2.0]])
    eye_h = 7.0 * max(blink, 0.08)
    eyes = np.concatenate([_ellipse((-28.0, -15.0), (13.0, eye_h), 6), _ellipse((28.0, -15.0), (13.0, eye_h), 6)])
    mw = 17.0 + 11.0 * width
    mh = 3.0 + 15.0 * open_
    outer = _ellipse((0.0, 52.0), (mw, mh), 12)
    inner_ = _ellipse((0.0, 52.0), (0.8 * mw, max(0.5, 12.0 * open_)), 8)
    forehead = _arc((0.0, -20.0), (72.0, 75.0), 190, 350, 25)
    pts = np.concatenate([jaw, brows, nose, bridge, eyes, forehead, outer, inner_])
    assert pts.shape == (N_LANDMARKS, 2)
    return pts


def _to_frame(pts: np.ndarray, cx: float, cy: float, scale: float, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return pts @ rot.T * scale + np.array([cx, cy])


def _poly(img: np.ndarray, pts: np.ndarray, color: tuple[float, float, float]) -> None:
    cv2.fillPoly(img, [np.round(pts * (1 << _SUB)).astype(np.int32)], color, cv2.LINE_AA, _SUB)


def _render(
    look: Look, pose: tuple[float, float, float, float], open_: float, width: float, blink: float
) -> tuple[np.ndarray, np.ndarray]:
    cx, cy, scale, angle = pose
    img = look.background.copy()

    def place(p: np.ndarray) -> np.ndarray:
        return _to_frame(p, cx, cy, scale, angle)

    body = np.concatenate([_arc((0.0, 210.0), (120.0, 90.0), 180, 360, 40), [[120.0, 400.0], [-120.0, 400.0]]])
    _poly(img, place(body), look.shirt)
    neck = np.array([[-32.0, 60.0], [32.0, 60.0], [36.0, 150.0], [-36.0, 150.0]])
    _poly(img, place(neck), tuple(0.85 * c for c in look.skin))
    _poly(img, place(_ellipse((0.0, -35.0), (80.0, 78.0))), look.hair)
    _poly(img, place(_ellipse((-70.0, 5.0), (9.0, 16.0), 20)), look.skin)  # ears
    _poly(img, place(_ellipse((70.0, 5.0), (9.0, 16.0), 20)), look.skin)
    _poly(img, place(_ellipse((0.0, 5.0), (70.0, 90.0), 64)), look.skin)
    shade = tuple(0.8 * c for c in look.skin)
    _poly(img, place(np.array([[-3.0, -6.0], [3.0, -6.0], [9.0, 24.0], [0.0, 28.0], [-9.0, 24.0]])), shade)
    eye_h = 7.0 * max(blink, 0.08)
    for ex in (-28.0, 28.0):
        _poly(img, place(_ellipse((ex, -15.0), (13.0, eye_h), 24)), (235.0, 235.0, 235.0))
        if blink > 0.3:
            _poly(img, place(_ellipse((ex, -15.0), (5.0, min(5.0, eye_h)), 16)), look.iris)
        brow = _arc((ex, -30.0), (15.0, 5.0), 190, 350, 12)
        _poly(img, place(np.concatenate([brow, brow[::-1] + [0.0, 3.0]])), look.hair)
    mw = 17.0 + 11.0 * width
    mh = 3.0 + 15.0 * open_
    _poly(img, place(_ellipse((0.0, 52.0), (mw, mh), 40)), look.lips)
    inner_h = 12.0 * open_
    if inner_h > 0.6:
        _poly(img, place(_ellipse((0.0, 52.0), (0.8 * mw, inner_h), 40)), (30.0, 25.0, 60.0))
        if open_ > 0.3:
            teeth = _arc((0.0, 52.0), (0.7 * mw, inner_h), 200, 340, 16)
            _poly(
                img,
                place(
                    np.concatenate(
                        [teeth, [[0.7 * mw * 0.94, 52.0 - inner_h * 0.35], [-0.7 * mw * 0.94, 52.0 - inner_h * 0.35]]]
                    )
                ),
                (225.0, 230.0, 235.0),
            )
    else:
        _poly(img, place(np.array([[-mw, 51.4], [mw, 51.4], [mw, 52.6], [-mw, 52.6]])), (50.0, 45.0, 90.0))
    return img, place(_landmarks(open_, width, blink))


def _frame_means(x: np.ndarray, n_frames: int, fps: int) -> np.ndarray:
    per = SAMPLE_RATE / fps
    out = np.empty(n_frames)
    for i in range(n_frames):
        a, b = int(i * per), int((i + 1) * per)
        out[i] = x[a:b].mean() if b > a else 0.0
    return out


def _blinks(n_frames: int, fps: int, rng: np.random.Generator) -> np.ndarray:
    openness = np.ones(n_frames)
    t = float(rng.uniform(0.5, 2.0))
    while t * fps < n_frames:
        start = int(t * fps)
        for k, v in enumerate((0.5, 0.0, 0.0, 0.5)):
            if start + k < n_frames:
                openness[start + k] = v
        t += float(rng.uniform(2.0, 5.0))
    return openness


def write_synth_dataset(
    out: str | Path,
    frames: int = 500,
    seed: int = 0,
    mode: str = "hubert",
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    scale: float = 1.0,
) -> Path:
    """Render the built-in set into `out` (atomically) and return its path.

    `scale` multiplies the frame and the face: at 1 the face box is about 138 px (the crop
    is an upscale to 168), at 1.6 about 220 px (a non-integer downscale, where INTER_AREA
    averages and differs most from bilinear), at 2.44 about 336 px (OpenCV's exact 2x path)."""
    from dhm import __version__

    from dhm.errors import SpecError
    from dhm.io import check_output

    if not _MIN_FRAMES <= frames <= 100_000:
        raise SpecError(f"--frames {frames}: expected {_MIN_FRAMES} … 100,000")
    if not 0.5 <= scale <= 8.0:
        raise SpecError(f"--scale {scale}: expected 0.5 … 8")
    if not 0 <= seed < 2**32:
        raise SpecError(f"--seed {seed}: expected 0 … 2^32-1")
    check_output(out, kind="dir", command="data synth", force=force)
    size = (int(round(FRAME_W * scale)), int(round(FRAME_H * scale)))
    audio_mode = AUDIO_MODES[mode]
    fps = audio_mode.fps
    rng = np.random.default_rng(seed)
    look = _look(rng, size)
    speech = synth_speech(frames / fps, rng)
    openness = np.clip(_frame_means(speech.openness, frames, fps), 0.0, 1.0)
    width = np.clip(_frame_means(speech.width, frames, fps), 0.0, 1.0)
    blink = _blinks(frames, fps, rng)
    phases = rng.uniform(0, 2 * np.pi, 5)
    t = np.arange(frames) / fps
    cx = scale * (
        FRAME_W / 2 + 6.0 * np.sin(2 * np.pi * t / 3.1 + phases[0]) + 2.5 * np.sin(2 * np.pi * t / 1.3 + phases[1])
    )
    cy = scale * (150.0 + 5.0 * np.sin(2 * np.pi * t / 2.7 + phases[2]))
    face_scale = scale * (1.0 + 0.03 * np.sin(2 * np.pi * t / 4.3 + phases[3]))
    angle = np.deg2rad(2.0) * np.sin(2 * np.pi * t / 3.7 + phases[4])
    features = features_for_mode(speech.samples, mode, frames)

    with atomic_dir(out, replace=True, command="data synth") as tmp:
        (tmp / IMAGE_DIR).mkdir()
        (tmp / LANDMARK_DIR).mkdir()
        for i in range(frames):
            img, lms = _render(look, (cx[i], cy[i], face_scale[i], angle[i]), openness[i], width[i], blink[i])
            cv2.imwrite(str(tmp / IMAGE_DIR / f"{i}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            (tmp / LANDMARK_DIR / f"{i}.lms").write_text("".join(f"{x:.2f} {y:.2f}\n" for x, y in lms))
            if progress:
                progress(i + 1, frames)
        np.save(tmp / audio_mode.feature_file, features)
        write_wav(tmp / WAV_FILE, speech.samples)
        meta = {
            "generator": "dhm data synth",
            "dhm_version": __version__,
            "seed": seed,
            "frames": frames,
            "fps": fps,
            "mode": mode,
            "audio_frontend": FRONTEND_ID,
            "frame_size": list(size),
            "scale": scale,
            "landmarks": "pfld-110",
            "mouth_openness": [round(float(v), 4) for v in openness],
            "mouth_width": [round(float(v), 4) for v in width],
        }
        (tmp / "synth.json").write_text(json.dumps(meta, indent=1) + "\n")
    return Path(out)
