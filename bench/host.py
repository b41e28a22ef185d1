"""Parity and latency on this host.

Parity: every candidate's outputs on the held-out evaluation frames against the reference
teacher in torch FP32 (PSNR, SSIM, mouth-PSNR, max abs).

Latency, per thread count: every candidate is loaded (load time and the memory it added
measured one at a time), warmed up, then timed in interleaved rounds so that a burst of
load on this shared machine hits all candidates alike; ratios against the teacher come
from those same rounds. Then the end-to-end avatar pipeline (read, crop, pack, infer,
paste back) runs per candidate on held-out frames of the dataset.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from dhm.bench.candidates import Candidate
from dhm.bench.stats import MemoryProbe, interleaved_timings, summarize

from dhm.data.dataset import Dataset
from dhm.data.inputs import InputSet
from dhm.spec import Conventions


@dataclass(frozen=True)
class HostSettings:
    threads: tuple[int, ...] = (1, 2)
    warmup: int = 5
    runs: int = 50
    rounds: int = 5
    e2e_frames: int = 24


def _outputs(engine: Any, inputs: InputSet) -> np.ndarray:
    from dhm.spec import OUTPUT

    return np.concatenate([engine.run(x)[OUTPUT] for x in inputs.inputs])


def parity(
    cands: Sequence[Candidate],
    reference: Candidate,
    sets: dict[str, InputSet],
    log: Callable[[str], None],
    arm_frames: int | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Every candidate on each protocol's inputs (`sets`: "inference", where the reference
    frame is the target, as deployed; "generation", where it is another frame, so the mouth
    must come from the audio) against the reference candidate's outputs on the same
    inputs, with lip figures and, on the built-in data, lip sync. Returns the figures per
    candidate and protocol, and the inference outputs for the device comparison."""
    from dhm.runtime_py.engines import load

    quality: dict[str, dict[str, Any]] = {c.id: {} for c in cands}
    kept: dict[str, np.ndarray] = {}
    for protocol, inputs in sets.items():
        outputs = {c.id: _outputs(load(c.path, threads=1, precision=c.precision), inputs) for c in cands}
        for c in cands:
            q = inputs.quality(outputs[c.id], outputs[reference.id])
            if protocol == "generation":
                q["lip_sync"] = inputs.lip_sync(outputs[c.id])
            quality[c.id][protocol] = q
            log(
                f"[bench] {protocol:<10} {c.id}: PSNR {_db(q['psnr'])}, lip-box PSNR {_db(q.get('lip_psnr'))}, "
                f"lip colour off by {q.get('lip_color_diff', '–')} levels"
                + (f", lip sync {q['lip_sync']}" if q.get("lip_sync") is not None else "")
            )
        if protocol == "inference":
            kept = outputs
            _arm_parity(cands, _first(inputs, arm_frames), outputs, reference.id, quality, log)
    return quality, kept


def _first(inputs: InputSet, n: int | None) -> InputSet:
    """The first `n` samples of an input set (all of them for None)."""
    if n is None or n >= len(inputs.inputs):
        return inputs
    cut = {k: getattr(inputs, k)[:n] for k in ("inputs", "frames", "references", "lips", "openness", "targets")}
    return replace(inputs, **{k: v for k, v in cut.items() if v is not None})


def _arm_parity(
    cands: Sequence[Candidate],
    inputs: InputSet,
    outputs: dict[str, np.ndarray],
    reference_id: str,
    quality: dict[str, dict[str, Any]],
    log: Callable[[str], None],
) -> None:
    """Candidates again where phones compute them (their backend's registered mirror: MNN's
    aarch64 kernels under qemu-user; numerics only, never timed), on `inputs` (qemu runs ~1 s a
    frame), beside the x86 figure on the same frames; not the reference's own export."""
    from dhm.runtime_py.engines import mirror_of
    from dhm.spec import OUTPUT

    n = len(inputs.inputs)
    reference = outputs[reference_id][:n]
    for c in cands:
        mirror = mirror_of(c.backend)
        if mirror is None:
            continue
        if c.role == "reference":
            # the teacher never ships to a phone, and under qemu a full-size one takes ~40 s a frame
            quality[c.id]["arm"] = {"measured": False, "why": "the reference does not ship to a phone"}
            continue
        why_not = mirror.unavailable()
        if why_not is not None:
            quality[c.id]["arm"] = {"measured": False, "why": why_not}
            continue
        out = np.concatenate([o[OUTPUT] for o in mirror.run(c.path, inputs.inputs, [OUTPUT], c.precision)])
        q = inputs.quality(out, reference)
        x86 = inputs.quality(outputs[c.id][:n], reference)
        quality[c.id]["arm"] = {"measured": True, "kernels": mirror.kernels, "frames": n, "x86_psnr": x86["psnr"], **q}
        log(
            f"[bench] ARM        {c.id}: PSNR {_db(q['psnr'])} (x86 {_db(x86['psnr'])} on the same {n} frames), "
            f"lip-box PSNR {_db(q.get('lip_psnr'))}"
        )


def _db(v: Any) -> str:
    from dhm.manifest import format_figure

    return format_figure(v, ".2f", " dB")


def latency(
    cands: Sequence[Candidate],
    sample: dict[str, np.ndarray],
    settings: HostSettings,
    pipeline_frames: Callable[[Any, int], dict[str, Any]],
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """One record per candidate × thread count."""
    from dhm.runtime_py.engines import load

    records = []
    for threads in settings.threads:
        engines, loads = {}, {}
        for c in cands:
            gc.collect()
            probe = MemoryProbe()
            t0 = time.perf_counter()
            engine = load(c.path, threads=threads, precision=c.precision)
            load_ms = 1000.0 * (time.perf_counter() - t0)
            for _ in range(max(1, settings.warmup)):
                engine.run(sample)
            loads[c.id] = {"load_ms": load_ms, **probe.stop()}
            engines[c.id] = engine
        log(
            f"[bench] timing {len(cands)} candidates at {threads} thread(s): {settings.runs} runs in "
            f"{settings.rounds} interleaved rounds"
        )
        calls = {cid: (lambda e=e: e.run(sample)) for cid, e in engines.items()}
        times = interleaved_timings(calls, settings.runs, settings.rounds)
        for c in cands:
            stats = summarize(times[c.id])
            e2e = pipeline_frames(engines[c.id], settings.e2e_frames)
            records.append(
                {
                    "id": c.id,
                    "threads": threads,
                    "warmup": settings.warmup,
                    "rounds": settings.rounds,
                    "latency_ms": stats.to_dict(),
                    "memory_mb": {k: v for k, v in loads[c.id].items() if k != "load_ms"},
                    "load_ms": loads[c.id]["load_ms"],
                    "end_to_end": e2e,
                }
            )
            log(
                f"[bench]   {c.id:<34} p50 {stats.p50:8.2f} ms  p90 {stats.p90:8.2f}  spread (IQR) "
                f"{stats.iqr_pct:4.1f}%  "
                f"end-to-end {e2e['fps']:.1f} fps"
            )
        engines.clear()
        gc.collect()
    return records


def end_to_end_runner(
    ds: Dataset, conventions: Conventions, frames: Sequence[int]
) -> Callable[[Any, int], dict[str, Any]]:
    """The reference pipeline per frame on held-out frames: reference frame i, audio window
    of frame i, stage times split as the phone apps report them."""
    from dhm.data.preprocess import audio_window
    from dhm.runtime_py.pipeline import AvatarPipeline, StageTimes

    feats = ds.audio(conventions.mode)

    def run(engine: Any, n: int) -> dict[str, Any]:
        pipe = AvatarPipeline(engine, ds, conventions)
        order = [frames[i % len(frames)] for i in range(n + 2)]
        for i in order[:2]:  # warm the file cache and the engine
            pipe.render(i, audio_window(feats, i, conventions))
        pipe.times = StageTimes()
        for i in order[2:]:
            pipe.render(i, audio_window(feats, i, conventions))
        ms = pipe.times.per_frame_ms()
        return {
            "frames": n,
            "stage_ms": ms,
            "crop_ms": ms["load"] + ms["crop"] + ms["pack"],
            "infer_ms": ms["infer"],
            "paste_ms": ms["paste"],
            "total_ms": sum(ms.values()),
            "fps": pipe.times.fps(),
        }

    return run
