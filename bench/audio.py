"""Audio in, frames out on this host: the audio model's cost and the PCM -> frame loop.

For every candidate whose export carries an audio model (`audio_model` in its manifest):

* the audio model alone, 1 thread: ms per call, and ms per second of audio (calls per
  second × ms per call), timed over many calls on held-out audio;
* the full loop (`dhm.runtime_py.session.PcmSession`): held-out PCM pushed in 20 ms chunks as fast as
  the machine goes, at each thread count: frames per second with the audio model
  included, and each frame's audio-to-frame latency as a phone would see it if the audio
  arrived in real time: the algorithmic lookahead (the audio model's window plus the
  generator's W/2-1 feature frames) plus the compute from the arrival of the chunk that
  completed it to the frame's return. Percentiles over the frames. The loop is timed warm, as
  an app runs it for minutes: one untimed pass over the held-out PCM, then passes until
  `--loop-frames` frames are timed; the first pass's fps and first-frame latency are reported beside it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from dhm.audio.geometry import PCM_INPUT
from dhm.audio.frontend import SAMPLE_RATE, read_pcm
from dhm.bench.silence import silence_record
from dhm.runtime_py.engines.registry import get

CHUNK = 320  # 20 ms
AUDIO_CALLS = 200


def heldout_pcm(samples: np.ndarray, frames: Sequence[int], fps: int) -> np.ndarray:
    """The PCM of the first contiguous run of held-out frames."""
    run = [frames[0]]
    for f in frames[1:]:
        if f != run[-1] + 1:
            break
        run.append(f)
    spf = SAMPLE_RATE // fps
    return samples[run[0] * spf : (run[-1] + 1) * spf]


def audio_records(
    cands: Sequence[Any],
    ds: Any,
    eval_frames: Sequence[int],
    thread_counts: Sequence[int],
    loop_frames: int,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    from dhm.errors import SpecError
    from dhm.runtime_py.engines import conventions_of, load
    from dhm.runtime_py.streaming import audio_front_end

    if ds.wav_path is None:
        return []
    samples = read_pcm(ds.wav_path)[0]
    records = []
    for c in cands:
        if not get(c.backend).exported:  # the checkpoint: its numpy front end is the reference
            continue
        probe = load(c.path, threads=1, precision=c.precision)
        try:
            front = audio_front_end(probe, threads=1)
        except SpecError:
            continue  # fed features computed off the phone
        conv = conventions_of(probe)
        pcm = heldout_pcm(samples, eval_frames, conv.mode.fps)
        spec = front.spec
        # a few held-out frames can hold less audio than one call reads: pad (the cost is the same)
        timed = np.pad(pcm, (0, max(0, spec.window_samples - pcm.size)))
        windows = [
            timed[s : s + spec.window_samples]
            for s in np.linspace(0, timed.size - spec.window_samples, AUDIO_CALLS).astype(int)
        ]
        call_ms = _call_ms(front, windows)
        calls_per_second = SAMPLE_RATE / (spec.rows_per_call * spec.row_hop)
        # an audio student's smaller files (export --variants with --audio-model), timed alike
        variants = []
        for v in _audio_variants(probe):
            f = front if v == "fp32" else audio_front_end(probe, threads=1, variant=v)
            ms = call_ms if v == "fp32" else _call_ms(f, windows)
            variants.append(
                {
                    "variant": v,
                    "audio_model": f.description,
                    "call_ms_1_thread": ms,
                    "ms_per_second_of_audio_1_thread": ms * calls_per_second,
                }
            )
        record: dict[str, Any] = {
            "id": c.id,
            "audio_model": front.description,
            "input": {PCM_INPUT: [1, 1, spec.window_samples]},
            "call_ms_1_thread": call_ms,
            "calls_per_second": calls_per_second,
            "ms_per_second_of_audio_1_thread": call_ms * calls_per_second,
            "lookahead_ms": spec.lookahead_ms(conv.window),
            "heldout_seconds": pcm.size / SAMPLE_RATE,
            "variants": variants,
            "loop": [],
        }
        for threads in thread_counts:
            record["loop"].append(_pcm_loop(c, ds, conv, pcm, threads, record["lookahead_ms"], loop_frames))
            r = record["loop"][-1]
            log(
                f"[bench]   {c.id:<34} PCM -> frames at {threads} thread(s): {r['fps']:.1f} fps, audio-to-frame "
                f"p50 {r['latency_ms']['p50']:.0f} ms p99 {r['latency_ms']['p99']:.0f} ms"
            )
        # the phone's engine only: what ships is what rests its mouth
        shipped = get(c.backend).ships
        record["silence"] = silence_record(c, ds, conv, eval_frames, max(thread_counts), log) if shipped else None
        if record["silence"] is not None:
            q, j = record["silence"], record["silence"]["silence"]
            log(
                f"[bench]   {c.id:<34} in silence: generator ran for {100 * q['inferred_share']:.0f} % of frames, "
                f"jitter {j['idle']['jitter']:.2f} (without idle frames {j['plain']['jitter']:.2f})"
            )
        records.append(record)
    return records


def _call_ms(front: Any, windows: list[np.ndarray]) -> float:
    for w in windows[:5]:
        front.rows(w)
    t0 = time.perf_counter()
    for w in windows:
        front.rows(w)
    return 1000.0 * (time.perf_counter() - t0) / len(windows)


def _pcm_loop(
    c: Any, ds: Any, conv: Any, pcm: np.ndarray, threads: int, lookahead_ms: float, min_frames: int
) -> dict[str, Any]:
    """PCM in 20 ms chunks through the candidate's audio model (one thread) and generator
    (`threads`): frames per second and each frame's audio-to-frame latency (the model's
    lookahead plus the compute that released it). One untimed pass first (the engines'
    first-run costs, reported as `cold`), then passes over the held-out PCM, each a new
    utterance, until `min_frames` frames are timed."""
    from dhm.runtime_py.engines import load
    from dhm.runtime_py.pipeline import AvatarPipeline
    from dhm.runtime_py.streaming import audio_front_end

    engine = load(c.path, threads=threads, precision=c.precision)
    front = audio_front_end(engine, threads=1)  # the audio model runs on one thread
    pipeline = AvatarPipeline(engine, ds, conv)
    cold = _pcm_pass(pipeline, front, pcm, lookahead_ms)
    passes = max(1, -(-min_frames // cold["frames"]))  # a held-out run holds at least one frame
    warm = [_pcm_pass(pipeline, front, pcm, lookahead_ms) for _ in range(passes)]
    lat = np.concatenate([p["latencies"] for p in warm])
    frames, wall = sum(p["frames"] for p in warm), sum(p["wall"] for p in warm)
    return {
        "threads": threads,
        "frames": cold["frames"],
        "passes": passes,
        "fps": frames / wall if wall > 0 else float("inf"),
        "audio_ms_per_frame": 1000.0 * sum(p["audio_seconds"] for p in warm) / max(1, frames),
        "latency_ms": {
            "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)),
            "max": float(lat.max()),
        },
        "cold": {"fps": cold["frames"] / cold["wall"], "first_frame_ms": float(cold["latencies"][0])},
    }


def _pcm_pass(pipeline: Any, front: Any, pcm: np.ndarray, lookahead_ms: float) -> dict[str, Any]:
    """One utterance through a new `PcmSession`: its frame count, wall time and latencies."""
    from dhm.runtime_py.session import PcmSession

    session = PcmSession(pipeline, front)
    latencies: list[float] = []
    start = time.perf_counter()
    for s in range(0, pcm.size + CHUNK, CHUNK):
        t_in = time.perf_counter()
        out = session.push_pcm(pcm[s : s + CHUNK]) if s < pcm.size else session.finish()
        latencies += [lookahead_ms + 1000.0 * (time.perf_counter() - t_in)] * len(out)
    wall = time.perf_counter() - start
    return {
        "frames": len(latencies),
        "wall": wall,
        "latencies": np.asarray(latencies),
        "audio_seconds": session.audio_seconds,
    }


def _audio_variants(engine: Any) -> list[str]:
    """The variants of the audio model's files in `engine`'s format, fp32 first."""
    section = (getattr(engine, "manifest", None) or {}).get("audio_model") or {}
    fmt = get(engine.backend).format
    listed = {a.get("variant", "fp32") for a in section.get("artifacts", []) if a["format"] == fmt}
    return [v for v in ("fp32", "fp16", "int8") if v in listed]


def markdown(records: list[dict[str, Any]]) -> list[str]:
    if not records:
        return []
    lines = [
        "",
        "## Audio in, frames out (host)",
        "",
        "The audio model alone on 1 thread (cost per second of audio), then the full loop "
        "(`PcmSession`: 20 ms PCM chunks -> audio model -> generator -> pasted frames) as fast as this host goes. "
        "Latency is what a real-time stream would see: the algorithmic lookahead plus the compute from the chunk "
        "that completed a frame to the frame's return. Timed warm: after one untimed pass over the held-out "
        "speech (the first pass columns), over new utterances until `--loop-frames` frames are timed.",
        "",
        "| model / engine / variant | audio model | ms per s of audio (1 thread) | threads | loop fps | "
        "audio ms / frame | latency p50 | p99 | lookahead | first pass fps | first frame |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        for loop in r["loop"]:
            lat = loop["latency_ms"]
            lines.append(
                f"| {r['id']} | {r['audio_model']} | {r['ms_per_second_of_audio_1_thread']:.1f} ms | "
                f"{loop['threads']} | {loop['fps']:.1f} | {loop['audio_ms_per_frame']:.2f} ms | {lat['p50']:.0f} ms | "
                f"{lat['p99']:.0f} ms | {r['lookahead_ms']:.0f} ms | {loop['cold']['fps']:.1f} | "
                f"{loop['cold']['first_frame_ms']:.0f} ms |"
            )
    smaller = [(r, v) for r in records for v in r.get("variants", []) if v["variant"] != "fp32"]
    if smaller:
        lines += [
            "",
            "The audio model's files alone (1 thread); the loop above runs FP32 (`dhm run --audio-variant` picks "
            "another; the export report gives what each costs in frame PSNR):",
            "",
            "| model / engine / variant | audio file | ms per call | ms per s of audio |",
            "|---|---|---:|---:|",
        ]
        for r in records:
            for v in r.get("variants", []):
                lines.append(
                    f"| {r['id']} | {v['audio_model']} | {v['call_ms_1_thread']:.3f} ms | "
                    f"{v['ms_per_second_of_audio_1_thread']:.1f} ms |"
                )
    at_two = [(loop["fps"], r["id"], loop) for r in records for loop in r["loop"] if loop["threads"] == 2]
    if at_two:
        fps, rid, loop = max(at_two, key=lambda t: t[0])
        p99 = loop["latency_ms"]["p99"]
        lines += [
            "",
            f"- Moonshot: full audio -> frame loop ≥ 100 fps at 2 threads: `{rid}` {fps:.0f} fps "
            f"({'met' if fps >= 100 else 'not met'}); latency ≤ 200 ms at 25 fps: p99 {p99:.0f} ms "
            f"({'met' if p99 <= 200 else 'not met'}).",
        ]
    return lines
