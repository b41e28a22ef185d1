"""`dhm bench --soak SECONDS`: a long stream through `PcmSession`, watched for drift.

The stream is the dataset's own speech in pieces of 2-6 s with 0.5-4 s of quiet between them
(seeded), pushed in 20 ms chunks as fast as the host goes, with idle frames on (the runtime's
defaults). Every 10 s of audio the process's resident memory is sampled (after malloc_trim:
memory in use, not what glibc keeps freed for reuse, which plateaus on its own). Reported: memory
after warm-up (the first tenth, at least 10 s) and its largest rise above that, frames out
against frames expected, each frame's audio-to-frame latency (lookahead plus the compute that
released it) p50/p99 over the first and the last window (5 minutes, or a quarter of a
shorter soak), and the same for 100 create/destroy cycles of a session in this process.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dhm.audio.frontend import SAMPLE_RATE

CHUNK = 320  # 20 ms
SAMPLE_EVERY_S = 10.0
WINDOW_S = 300.0  # the first and last five minutes
CYCLES = 100
SCHEMA_ID = "dhm.bench.soak/1"


def resident_mb(trim: bool = False) -> float:
    """This process's resident memory now (Linux /proc; elsewhere its peak, which only rises).
    `trim`: first hand glibc's freed heap back to the system (malloc_trim), so that what is
    measured is memory in use, not memory the allocator keeps for reuse."""
    if trim:
        _malloc_trim()
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (2**20 if sys.platform == "darwin" else 2**10)


def _malloc_trim() -> None:
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def speech_and_silence(speech: np.ndarray, seconds: float, seed: int = 0) -> Iterator[np.ndarray]:
    """`seconds` of PCM in 20 ms chunks: pieces of `speech` and quiet between them."""
    rng = np.random.default_rng(seed)
    total, made = int(seconds * SAMPLE_RATE), 0
    noise_level = 10 ** (-50 / 20) * float(np.sqrt(np.mean(speech**2)))
    while made < total:
        n = int(rng.uniform(2.0, 6.0) * SAMPLE_RATE)
        start = int(rng.integers(0, max(1, speech.size - n)))
        piece = speech[start : start + n]
        quiet = (noise_level * rng.standard_normal(int(rng.uniform(0.5, 4.0) * SAMPLE_RATE))).astype(np.float32)
        for part in (piece, quiet):
            for a in range(0, part.size, CHUNK):
                chunk = part[a : a + CHUNK][: total - made]
                if chunk.size == 0:
                    return
                made += chunk.size
                yield chunk


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "frames": 0}
    a = np.asarray(values)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "frames": int(a.size)}


class _Avatar:
    """Opens a model's sessions: engine, audio model and idle footage, each cycle anew."""

    def __init__(self, model: Path, data: Path, threads: int) -> None:
        from dhm.data.dataset import open_dataset
        from dhm.runtime_py.engines import conventions_of, load
        from dhm.runtime_py.idle import IdleSettings, idle_footage

        self.model, self.threads = model, threads
        engine = load(model, threads=threads)
        self.conv = conventions_of(engine)
        self.ds = open_dataset(data, need_features=False)
        self.settings = IdleSettings()
        self.footage = idle_footage(self.ds, self.conv.mode.fps, self.settings)

    def session(self) -> Any:
        from dhm.runtime_py.engines import load
        from dhm.runtime_py.pipeline import AvatarPipeline
        from dhm.runtime_py.session import IdleRun, PcmSession
        from dhm.runtime_py.streaming import audio_front_end

        from dhm.runtime_py.idle import shipped_detector

        engine = load(self.model, threads=self.threads)
        front = audio_front_end(engine, threads=1)
        idle = IdleRun(self.settings, self.footage, shipped_detector(engine))
        return PcmSession(AvatarPipeline(engine, self.ds, self.conv), front, idle)


def _stream(avatar: _Avatar, speech: np.ndarray, seconds: float, log: Callable[[str], None]) -> dict[str, Any]:
    """The long stream: latencies by audio time, memory every 10 s of audio."""
    session = avatar.session()
    fps, window = avatar.conv.mode.fps, min(WINDOW_S, seconds / 4)
    lookahead = session.lookahead_ms
    first: list[float] = []
    last: list[float] = []
    memory: list[tuple[float, float]] = []
    pushed, frames, next_sample, next_log = 0, 0, 0.0, 60.0
    start = time.perf_counter()
    for chunk in [*speech_and_silence(speech, seconds), None]:
        t_in = time.perf_counter()
        out = session.push_pcm(chunk) if chunk is not None else session.finish()
        ms = lookahead + 1000.0 * (time.perf_counter() - t_in)
        for k in range(len(out)):
            t = (frames + k) / fps
            (first if t < window else last if t >= seconds - window else []).append(ms)
        frames += len(out)
        pushed += 0 if chunk is None else chunk.size
        if pushed / SAMPLE_RATE >= next_sample or chunk is None:
            memory.append((pushed / SAMPLE_RATE, resident_mb(trim=True)))
            next_sample += SAMPLE_EVERY_S
        if pushed / SAMPLE_RATE >= next_log:
            log(f"[soak] {pushed / SAMPLE_RATE:.0f}/{seconds:.0f} s of audio, {frames} frames, {memory[-1][1]:.1f} MB")
            next_log += 60.0
    summary = session.summary()
    return {
        "frames": frames,
        "frames_expected": pushed * fps // SAMPLE_RATE,
        "inferred": summary["inferred"],
        "wall_s": time.perf_counter() - start,
        "window_s": window,
        "latency_first_ms": _percentiles(first),
        "latency_last_ms": _percentiles(last),
        "memory_mb": memory,
    }


def _cycles(avatar: _Avatar, speech: np.ndarray, cycles: int) -> dict[str, Any]:
    """Sessions opened, fed a second of speech and dropped, one after another."""
    rss = []
    for _ in range(cycles):
        session = avatar.session()
        for a in range(0, SAMPLE_RATE, CHUNK):
            session.push_pcm(speech[a : a + CHUNK])
        session.finish()
        del session
        gc.collect()
        rss.append(resident_mb(trim=True))
    settled = rss[min(9, len(rss) - 1)]
    return {
        "cycles": cycles,
        "memory_after_10_mb": settled,
        "memory_after_all_mb": rss[-1],
        "rise_mb": rss[-1] - settled,
        "measured": "resident memory after gc and malloc_trim (glibc's freed heap handed back)",
    }


def run_soak(
    model: str | Path, data: str | Path, seconds: float, threads: int = 2, cycles: int = CYCLES,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:  # fmt: skip
    """1 open the model, 2 the long stream, 3 the create/destroy cycles, 4 the verdicts."""
    from dhm.audio.frontend import read_pcm
    from dhm.errors import DatasetError

    avatar = _Avatar(Path(model), Path(data), threads)
    if avatar.ds.wav_path is None:
        raise DatasetError(f"{data}: no aud.wav; the soak streams the dataset's own speech")
    speech = read_pcm(avatar.ds.wav_path)[0]
    log(f"[soak] {Path(model).name}: {seconds:.0f} s of speech and silence in 20 ms chunks; {avatar.footage.note}")
    stream = _stream(avatar, speech, seconds, log)
    log(f"[soak] {cycles} create/destroy cycles")
    cyc = _cycles(avatar, speech, cycles)
    warm_s = max(10.0, seconds / 10)
    mem = stream["memory_mb"]
    warm = next((m for t, m in mem if t >= warm_s), mem[-1][1])
    after = [m for t, m in mem if t >= warm_s] or [warm]
    first, last = stream["latency_first_ms"]["p99"], stream["latency_last_ms"]["p99"]
    return {
        "schema": SCHEMA_ID,
        "model": str(model),
        "seconds": seconds,
        "threads": threads,
        "stream": stream,
        "memory_after_warmup_mb": warm,
        "memory_rise_mb": max(after) - warm,
        "p99_last_over_first": (last / first) if first and last else None,
        "cycles": cyc,
    }


def markdown(r: dict[str, Any]) -> str:
    """The soak's report: what a person checks after an hour."""
    s, c = r["stream"], r["cycles"]
    lf, ll = s["latency_first_ms"], s["latency_last_ms"]
    ratio = r["p99_last_over_first"]

    def ms(v: float | None) -> str:
        return "–" if v is None else f"{v:.0f} ms"

    verdicts = [
        f"resident memory flat within 5 MB after warm-up: rise {r['memory_rise_mb']:.1f} MB "
        f"({'met' if r['memory_rise_mb'] <= 5 else 'not met'})",
        f"every expected frame delivered: {s['frames']} of {s['frames_expected']} "
        f"({'met' if s['frames'] == s['frames_expected'] else 'not met'})",
        "latency p99 of the last window within 10 % of the first: "
        + ("–" if ratio is None else f"{ratio:.2f}× ({'met' if ratio <= 1.10 else 'not met'})"),
        f"{c['cycles']} create/destroy cycles: memory {c['memory_after_10_mb']:.1f} MB after 10, "
        f"{c['memory_after_all_mb']:.1f} MB after all ({c['rise_mb']:+.1f} MB; "
        f"{'met' if c['rise_mb'] <= 5 else 'not met'})",
    ]
    lines = [
        f"# Soak: {Path(r['model']).name}, {r['seconds']:.0f} s of audio",
        "",
        f"`PcmSession` with idle frames, {r['threads']} thread(s), 20 ms chunks as fast as the host goes "
        f"({s['wall_s']:.0f} s wall). The generator ran for {s['inferred']} of {s['frames']} frames.",
        "",
        "| window | frames | latency p50 | p99 |",
        "|---|---:|---:|---:|",
        f"| first {s['window_s']:.0f} s | {lf['frames']} | {ms(lf['p50'])} | {ms(lf['p99'])} |",
        f"| last {s['window_s']:.0f} s | {ll['frames']} | {ms(ll['p50'])} | {ms(ll['p99'])} |",
        "",
        f"Resident memory after warm-up: {r['memory_after_warmup_mb']:.1f} MB.",
        "",
        *[f"- {v}" for v in verdicts],
        "",
    ]
    return "\n".join(lines)
