"""The mouth in silence: a candidate's PCM session with and without idle frames, same run.

The test stream is the held-out blocks' speech with silent stretches between them (a quiet
room: white noise 50 dB below the speech), so every frame's true mouth opening is known: the
synth's for the speech frames, closed for the silence. Figures, in the fixed mouth window of
the frames shown (the union of their lip boxes, in frame pixels):

* in silence (frames at least ramp + 2 from speech): the measured opening (dark share of the
  window; the footage's own closed mouth is the yardstick) and the jitter (mean absolute
  change between consecutive frames, 8-bit levels), with and without idle frames, and the
  footage's own jitter;
* the share of frames the generator painted, and of windows the audio model ran for;
* the largest per-pixel step between consecutive frames at a speech onset or offset, against
  the largest step between consecutive frames of the footage;
* lip sync (true against measured opening) over the speech frames, with and without.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from dhm.audio.frontend import SAMPLE_RATE

GAP_S = (0.8, 1.2)  # silence before the first block, and between blocks
QUIET_DB = 50.0  # the silence's noise below the speech's level
MAX_BLOCKS = 4


def silence_stream(pcm: np.ndarray, eval_frames: Sequence[int], fps: int, openness: Sequence[float] | None):
    """(PCM, per-frame speech truth, per-frame true opening or None): the held-out blocks' audio
    with silent gaps between them, cut on frame boundaries."""
    spf = SAMPLE_RATE // fps
    blocks: list[list[int]] = []
    for f in eval_frames:
        if blocks and f == blocks[-1][-1] + 1:
            blocks[-1].append(f)
        else:
            blocks.append([f])
    blocks = [b for b in blocks if (b[-1] + 1) * spf <= pcm.size][:MAX_BLOCKS]
    lead, gap = (int(round(s * fps)) for s in GAP_S)
    parts, speech, opening = [], [], []
    for k, b in enumerate(blocks):
        n_sil = lead if k == 0 else gap
        parts += [np.zeros(n_sil * spf, np.float32), pcm[b[0] * spf : (b[-1] + 1) * spf]]
        speech += [False] * n_sil + [True] * len(b)
        opening += [0.0] * n_sil + ([float(openness[f]) for f in b] if openness is not None else [0.0] * len(b))
    parts.append(np.zeros(lead * spf, np.float32))
    speech += [False] * lead
    opening += [0.0] * lead
    out = np.concatenate(parts)
    level = float(np.sqrt(np.mean(out[np.repeat(speech, spf)] ** 2))) if any(speech) else 0.1
    noise = np.random.default_rng(0).standard_normal(out.size) * level * 10 ** (-QUIET_DB / 20)
    return (out + noise).astype(np.float32), np.array(speech), (np.array(opening) if openness is not None else None)


def _mouth_window(ds: Any, refs: Sequence[int]) -> tuple[int, int, int, int]:
    """The union of the references' lip boxes (outer contour, 3 px margin) in frame pixels."""
    from dhm.data.lips import LIP_MARGIN, LIP_OUTER

    pts = np.concatenate([ds.landmarks[r][list(LIP_OUTER)] for r in set(refs)])
    h, w = ds.frame_hw
    (x0, y0), (x1, y1) = pts.min(axis=0) - LIP_MARGIN, pts.max(axis=0) + LIP_MARGIN + 1
    return int(max(0, y0)), int(min(h, y1)), int(max(0, x0)), int(min(w, x1))


def _run(c: Any, ds: Any, conv: Any, pcm: np.ndarray, idle: Any, threads: int) -> tuple[list[np.ndarray], Any]:
    from dhm.runtime_py.engines import load
    from dhm.runtime_py.pipeline import AvatarPipeline
    from dhm.runtime_py.session import PcmSession
    from dhm.runtime_py.streaming import audio_front_end

    from dhm.runtime_py.idle import shipped_detector
    from dhm.runtime_py.session import IdleRun

    engine = load(c.path, threads=threads, precision=c.precision)
    if idle is not None:  # the export's own voice model, as the phone runs it
        idle = IdleRun(idle.settings, idle.footage, shipped_detector(engine))
    session = PcmSession(AvatarPipeline(engine, ds, conv), audio_front_end(engine, threads=1), idle)
    frames = []
    for s in range(0, pcm.size, 320):
        frames += session.push_pcm(pcm[s : s + 320])
    return frames + session.finish(), session


def _steps(frames: list[np.ndarray], window: tuple[int, int, int, int]) -> np.ndarray:
    """Per consecutive pair: the largest per-pixel change in the window (8-bit levels)."""
    y0, y1, x0, x1 = window
    w = np.stack([f[y0:y1, x0:x1].astype(np.int16) for f in frames])
    return np.abs(np.diff(w, axis=0)).reshape(len(frames) - 1, -1).max(axis=1)


def _fade_steps(shares: Sequence[int], ramp: int) -> list[int]:
    """The frame pairs of every fade: from the last footage frame to the first fully generated
    one at an onset, and back at an offset (pair j is frames j, j+1)."""
    from dhm.runtime_py.idle import BLEND_ONE

    partial = [0 < v < BLEND_ONE for v in shares]
    pairs = {j for j in range(len(shares) - 1) if partial[j] or partial[j + 1]}
    pairs |= {j for j in range(len(shares) - 1) if (shares[j] == 0) != (shares[j + 1] == 0)}
    return sorted(pairs)


def _jitter(frames: list[np.ndarray], window: tuple[int, int, int, int], idx: Sequence[int]) -> float:
    y0, y1, x0, x1 = window
    pairs = [(i, i + 1) for i in idx if i + 1 in set(idx)]
    diffs = [np.abs(frames[b][y0:y1, x0:x1].astype(np.int16) - frames[a][y0:y1, x0:x1]).mean() for a, b in pairs]
    return float(np.mean(diffs)) if diffs else 0.0


def _opening(frames: list[np.ndarray], window: tuple[int, int, int, int]) -> np.ndarray:
    from dhm.metrics import mouth_opening

    return mouth_opening(np.stack(frames).astype(np.float32) / 255.0, window)


def _lip_sync(measured: np.ndarray, truth: np.ndarray | None) -> float | None:
    if truth is None or measured.std() < 1e-9 or truth.std() < 1e-9:
        return None
    return round(float(np.corrcoef(truth, measured)[0, 1]), 4)


def silence_record(
    c: Any, ds: Any, conv: Any, eval_frames: Sequence[int], threads: int, log: Callable[[str], None]
) -> dict[str, Any] | None:
    """The candidate's mouth in silence, with idle frames (the runtime's defaults) and without."""
    from dhm.audio.frontend import read_pcm
    from dhm.data.inputs import true_openness
    from dhm.runtime_py.idle import IdleSettings, idle_footage
    from dhm.runtime_py.session import IdleRun

    settings = IdleSettings()
    fps = conv.mode.fps
    pcm, speech, truth = silence_stream(read_pcm(ds.wav_path)[0], eval_frames, fps, true_openness(ds.root))
    if not speech.any():
        return None
    footage = idle_footage(ds, fps, settings)
    rested, idle_session = _run(c, ds, conv, pcm, IdleRun(settings, footage), threads)
    plain, plain_session = _run(c, ds, conv, pcm, None, threads)
    n = min(len(rested), len(speech))
    shown = [footage.reference(i) for i in range(n)]
    window = _mouth_window(ds, shown + [plain_session.reference(i) for i in range(n)])
    source = [ds.frame(r) for r in shown]  # the footage as the idle schedule walks it
    far = settings.ramp + 2
    silent = [i for i in range(n) if not speech[max(0, i - far) : i + far + 1].any()]
    spoken = [i for i in range(n) if speech[i]]
    opening = {k: _opening(f[:n], window) for k, f in (("idle", rested), ("plain", plain), ("footage", source))}
    fades = _fade_steps(idle_session.shares[:n], settings.ramp)
    steps = {k: _steps(f[:n], window) for k, f in (("idle", rested), ("plain", plain))}
    clip = [ds.frame(i) for i in range(min(ds.n_frames, n))]  # the source video as recorded
    summary = idle_session.summary()
    return {
        "detector": summary["detector"],
        "ramp_frames": settings.ramp,
        "footage": footage.note,
        "footage_silent": footage.silent,
        "frames": n,
        "speech_frames_true": len(spoken),
        "silent_frames_judged": len(silent),
        "inferred_share": summary["inferred"] / max(1, n),
        "audio_calls_share": summary["audio_calls"] / max(1, summary["audio_calls_available"]),
        "silence": {
            k: {
                "opening": float(opening[k][silent].mean()) if silent else None,
                "jitter": _jitter(f, window, silent),
            }
            for k, f in (("idle", rested), ("plain", plain), ("footage", source))
        },
        "max_step": {
            "idle_at_edges": int(steps["idle"][fades].max()) if fades else 0,
            "plain_at_edges": int(steps["plain"][fades].max()) if fades else 0,
            "plain_in_speech": int(steps["plain"][[i for i in spoken if i + 1 in set(spoken)]].max()),
            "footage": int(_steps(source, window).max()),
            "clip": int(_steps(clip, window).max()),
        },
        "lip_sync_speech": {
            "idle": _lip_sync(opening["idle"][spoken], truth[spoken] if truth is not None else None),
            "plain": _lip_sync(opening["plain"][spoken], truth[spoken] if truth is not None else None),
        },
        "window": list(window),
    }


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "–" if v is None else format(v, spec)


def markdown(records: Sequence[dict[str, Any]]) -> list[str]:
    rows = [(r["id"], r["silence"]) for r in records if r.get("silence")]
    if not rows:
        return []
    first = rows[0][1]
    lines = [
        "",
        "## The mouth in silence (host)",
        "",
        f"Held-out speech with silent gaps ({first['frames']} frames, {first['speech_frames_true']} of them speech, "
        f"a quiet room's noise {QUIET_DB:.0f} dB below the speech), through `PcmSession` with idle frames "
        f"({first['detector']}, fades of {first['ramp_frames']} frames) and without, same run. {first['footage']}. "
        "Opening: dark share of the mouth window (the footage's closed mouth is the yardstick); jitter: mean "
        "absolute change between consecutive silent frames (8-bit levels); steps: the largest per-pixel change "
        "between consecutive frames, in the fades around speech onsets and offsets, against the source clip's "
        "consecutive frames (speech included), the idle footage's, and the generated speech's.",
        "",
        "| model / engine / variant | generator runs | audio model runs | opening in silence: idle / without / "
        "footage | jitter: idle / without / footage | largest step in fades: idle / without | largest step: "
        "clip / footage / speech without idle | lip sync in speech: idle / without |",
        "|---|---:|---:|---|---|---|---|---|",
    ]
    for rid, q in rows:
        s, st, ls = q["silence"], q["max_step"], q["lip_sync_speech"]
        lines.append(
            f"| {rid} | {100 * q['inferred_share']:.0f} % | {100 * q['audio_calls_share']:.0f} % | "
            f"{_fmt(s['idle']['opening'])} / {_fmt(s['plain']['opening'])} / {_fmt(s['footage']['opening'])} | "
            f"{s['idle']['jitter']:.2f} / {s['plain']['jitter']:.2f} / {s['footage']['jitter']:.2f} | "
            f"{st['idle_at_edges']} / {st['plain_at_edges']} | "
            f"{st['clip']} / {st['footage']} / {st['plain_in_speech']} | "
            f"{_fmt(ls['idle'])} / {_fmt(ls['plain'])} |"
        )
    return lines
