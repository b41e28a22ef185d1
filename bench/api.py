"""`dhm bench`: one call, one versioned JSON record, a Markdown report and two plots.

result = run_bench(["student=out/export"], reference="teacher/model.pt", data="data",
                   settings=BenchSettings(threads=(1, 2)), json_path="bench.json",
                   report_path="bench.md")
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from dhm.bench.config import BenchSettings
from dhm.bench.candidates import BACKENDS, REFERENCE, Candidate, reference_spec, resolve, split_name
from dhm.bench.host import end_to_end_runner, latency, parity
from dhm.bench.report import SCHEMA_ID
from dhm.bench.stats import LatencyStats, speedup

from dhm.errors import DatasetError, SpecError
from dhm.runtime_py.engines.registry import get

PROTOCOL_NOTES = {
    "parity": "inference protocol: the reference frame is the target frame, as the apps run; "
    "a deployment-parity figure",
    "generation": "generation protocol: the reference is another held-out frame, so the mouth must come from the "
    "audio; lip_sync correlates the true mouth opening (built-in data) with the generated one",
}
MIN_FRAMES = 4  # fewer held-out frames than this make PSNR/SSIM a coin toss
TARGET_SPEEDUP = 10.0
TARGET_PSNR_DB = 30.0


def check_bench_outputs(json_path: Any, report_path: Any, force: bool, inputs: Sequence[Any]) -> None:
    """The record, the report and its plots: none over an input, none over a user's file
    (an earlier bench record or report is replaced; anything else needs --force)."""
    from dhm.bench.report import own_json, own_report, plot_paths
    from dhm.io import check_output

    if json_path is not None:
        check_output(json_path, kind="file", command="bench", force=force, inputs=inputs, own_file=own_json)
    if report_path is not None:
        if json_path is not None and Path(report_path).absolute() == Path(json_path).absolute():
            raise SpecError("--json and --report name the same file")
        check_output(report_path, kind="file", command="bench", force=force, inputs=inputs, own_file=own_report)
        mine = own_report(Path(report_path)) if Path(report_path).is_file() else True
        for png in plot_paths(Path(report_path)):
            check_output(png, kind="file", command="bench", force=force or mine, inputs=inputs)


def check_settings(s: BenchSettings) -> None:
    bad = [b for b in s.backends if b not in BACKENDS]
    if bad or not s.backends:
        raise SpecError(f"backend {bad[0] if bad else '(none)'!r}: expected some of {', '.join(BACKENDS)}")
    if not s.threads or min(s.threads) < 1:
        raise SpecError("--threads needs positive thread counts, e.g. 1,2,4")
    if s.runs < 5:
        raise SpecError(f"--runs {s.runs}: at least 5 timed runs are needed for percentiles")
    if s.warmup < 0 or s.frames < MIN_FRAMES or s.e2e_frames < 1:
        raise SpecError(f"--warmup must be >= 0, --frames >= {MIN_FRAMES} and the end-to-end frames >= 1")
    if not (s.device == "host" or s.device == "adb" or s.device.startswith("adb:")):
        raise SpecError(f"--device {s.device!r}: expected host, adb or adb:SERIAL")
    if s.device != "host" and s.mnn_bin is None:
        raise SpecError(
            "--device adb needs --mnn-bin DIR holding ModuleBasic.out and libMNN.so from MNN's Android build"
        )


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def _load_avg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _stats(d: dict[str, float]) -> LatencyStats:
    keys = ("runs", "p50", "p90", "p99", "mean", "std", "min", "max", "p25", "p75")
    return LatencyStats(**{k: d[k] for k in keys})


def ratios(entries: list[dict[str, Any]], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Speed-ups against the teacher measured in the same rounds: vs torch FP32, vs
    onnxruntime FP32 (Ultralight's deployment path) and vs the teacher on the same engine."""
    by = {(r["id"], r["threads"]): r for r in records}
    out = []
    for e in entries:
        if e["role"] == "reference":
            continue
        for r in records:
            if r["id"] != e["id"]:
                continue
            row: dict[str, Any] = {"id": e["id"], "threads": r["threads"]}
            for key, base in (
                ("vs_teacher_torch", "torch"),
                ("vs_teacher_onnxruntime", "onnxruntime"),
                ("vs_teacher_same_engine", e["backend"]),
            ):
                ref = by.get((f"{REFERENCE}/{base}/fp32", r["threads"]))
                if ref is not None:
                    row[key] = speedup(_stats(r["latency_ms"]), _stats(ref["latency_ms"])).to_dict()
            out.append(row)
    return out


def engine_ratios(entries: list[dict[str, Any]], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """MNN latency / onnxruntime latency for the same model and variant (>1: MNN slower)."""
    by = {(r["id"], r["threads"]): r for r in records}
    out = []
    for e in entries:
        if not get(e["backend"]).ships:
            continue
        ort_id = f"{e['model']}/onnxruntime/{e['variant']}"
        for r in records:
            if r["id"] == e["id"] and (ort_id, r["threads"]) in by:
                ort = by[(ort_id, r["threads"])]
                out.append(
                    {
                        "model": e["model"],
                        "variant": e["variant"],
                        "threads": r["threads"],
                        "mnn_p50_ms": r["latency_ms"]["p50"],
                        "onnxruntime_p50_ms": ort["latency_ms"]["p50"],
                        "mnn_over_onnxruntime": r["latency_ms"]["p50"] / ort["latency_ms"]["p50"],
                    }
                )
    return out


def _psnr(entry: dict[str, Any]) -> float:
    from dhm.manifest import from_json_number

    return from_json_number(entry["parity"]["psnr"])


def targets(
    entries: list[dict[str, Any]], records: list[dict[str, Any]], speedups: list[dict[str, Any]]
) -> dict[str, Any]:
    """The issue's targets, read from this run: the best student on MNN against the teacher
    in onnxruntime FP32, and which variant and engine win at each thread count."""
    by_id = {e["id"]: e for e in entries}
    rat = {(s["id"], s["threads"]): s for s in speedups}
    best_mnn, winners, by_engine = [], [], []
    for threads in sorted({r["threads"] for r in records}):
        rows = [r for r in records if r["threads"] == threads and by_id[r["id"]]["role"] == "model"]
        good = [r for r in rows if _psnr(by_id[r["id"]]) >= TARGET_PSNR_DB]
        mnn = [r for r in good if get(by_id[r["id"]]["backend"]).ships]
        if mnn:
            r = min(mnn, key=lambda r: r["latency_ms"]["p50"])
            s = rat.get((r["id"], threads), {})
            vs_ort = s.get("vs_teacher_onnxruntime", {}).get("value")
            best_mnn.append(
                {
                    "threads": threads,
                    "id": r["id"],
                    "p50_ms": r["latency_ms"]["p50"],
                    "psnr": by_id[r["id"]]["parity"]["psnr"],
                    "speedup_vs_teacher_onnxruntime": vs_ort,
                    "speedup_vs_teacher_torch": s.get("vs_teacher_torch", {}).get("value"),
                    "met": bool(vs_ort is not None and vs_ort >= TARGET_SPEEDUP),
                    "end_to_end_fps": r["end_to_end"]["fps"],
                }
            )
        for backend in sorted({by_id[r["id"]]["backend"] for r in good}):
            r = min((r for r in good if by_id[r["id"]]["backend"] == backend), key=lambda r: r["latency_ms"]["p50"])
            by_engine.append(
                {
                    "threads": threads,
                    "engine": backend,
                    "id": r["id"],
                    "variant": by_id[r["id"]]["variant"],
                    "p50_ms": r["latency_ms"]["p50"],
                    "psnr": by_id[r["id"]]["parity"]["psnr"],
                }
            )
        if good:
            r = min(good, key=lambda r: r["latency_ms"]["p50"])
            e2e = max(good, key=lambda r: r["end_to_end"]["fps"])
            winners.append(
                {
                    "threads": threads,
                    "fastest_model": r["id"],
                    "p50_ms": r["latency_ms"]["p50"],
                    "fastest_end_to_end": e2e["id"],
                    "end_to_end_fps": e2e["end_to_end"]["fps"],
                }
            )
    return {
        "speedup_target": TARGET_SPEEDUP,
        "psnr_target_db": TARGET_PSNR_DB,
        "best_mnn": best_mnn,
        "winners": winners,
        "fastest_by_engine": by_engine,
        "variant_ratios": variant_ratios(entries, records),
    }


def variant_ratios(entries: list[dict[str, Any]], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Latency of FP16 and INT8 over FP32 for the same model on the same engine (> 1: slower)."""
    by = {(r["id"], r["threads"]): r["latency_ms"]["p50"] for r in records}
    out = []
    for e in entries:
        if e["variant"] in ("fp16", "int8"):
            base_id = f"{e['model']}/{e['backend']}/fp32"
            for (rid, threads), p50 in by.items():
                if rid == e["id"] and (base_id, threads) in by:
                    out.append(
                        {
                            "model": e["model"],
                            "engine": e["backend"],
                            "variant": e["variant"],
                            "threads": threads,
                            "over_fp32": p50 / by[(base_id, threads)],
                        }
                    )
    return out


def run_bench(
    models: Sequence[str],
    reference: str | Path,
    data: str | Path,
    settings: BenchSettings | None = None,
    json_path: str | Path | None = None,
    report_path: str | Path | None = None,
    log: Callable[[str], None] = lambda _m: None,
    transport: Any = None,
) -> dict[str, Any]:
    """Bench `models` against the teacher `reference` on held-out frames of `data`: 1 check the
    request and the data, 2 resolve the candidates, 3 parity in both protocols, 4 latency on the
    host (or the phone), 5 the record, written as JSON and Markdown.

    `transport` replaces the adb connection (the tests pass a local one)."""
    from dhm.bench.profile import profiles
    from dhm.bench.report import write_outputs
    from dhm.data.inputs import PROTOCOLS, heldout_inputs

    settings = settings or BenchSettings()
    check_settings(settings)
    if settings.device == "host":  # engines that size a thread pool once per process: for the most timed
        for name in settings.backends:
            get(name).reserve_threads(max(settings.threads))
    check_bench_outputs(
        json_path, report_path, settings.force, inputs=[reference, data, *(split_name(m)[1] for m in models)]
    )
    reference, data = Path(reference), Path(data)
    ref_spec = reference_spec(reference, settings.crop_interpolation)
    ds, split = _bench_data(data, ref_spec.mode)
    load_before = _load_avg()
    transport_obj = transport
    if settings.device != "host" and transport_obj is None:
        from dhm.bench.device import AdbTransport

        serial = settings.device.partition(":")[2] or None
        transport_obj = AdbTransport.connect(serial)  # fail on adb/device problems before any work
    with tempfile.TemporaryDirectory(prefix="dhm-bench-") as work:
        cands = resolve(
            reference, ref_spec, models, settings.backends, Path(work), data, log, settings.crop_interpolation
        )
        ref_cand = next(c for c in cands if c.role == "reference" and not get(c.backend).exported)
        sets = {p: heldout_inputs(data, ref_cand.spec, "eval", settings.frames, protocol=p) for p in PROTOCOLS}
        inputs = sets["inference"]
        log(
            f"[bench] {len(cands)} candidates; parity on {len(inputs)} held-out frames against {REFERENCE} torch fp32, "
            f"in both protocols"
        )
        quality, outputs = parity(cands, ref_cand, sets, log, settings.arm_frames)
        entries = [
            c.to_dict()
            | {"parity": quality[c.id]["inference"], "generation": quality[c.id]["generation"]}
            | ({"parity_arm": quality[c.id]["arm"]} if "arm" in quality[c.id] else {})
            for c in cands
        ]
        records: list[dict[str, Any]] = []
        device: dict[str, Any] | None = None
        audio: list[dict[str, Any]] = []
        ops: list[dict[str, Any]] = []
        if settings.device == "host":
            from dhm.bench.audio import audio_records

            runner = end_to_end_runner(ds, ref_cand.spec.conventions, list(split.eval))
            records = latency(cands, inputs.inputs[0], settings.host(), runner, log)
            audio = audio_records(cands, ds, list(split.eval), settings.host().threads, settings.loop_frames, log)
            ops = profiles(cands, max(settings.host().threads), log)
        else:
            device = _device(cands, inputs, outputs, outputs[ref_cand.id], settings, transport_obj, log)
    result = _record(settings, reference, ref_cand, data, ds, sets, entries, records, audio, device, load_before)
    result["op_profile"] = ops
    write_outputs(result, json_path, report_path)
    return result


def _bench_data(data: Path, mode: str) -> tuple[Any, Any]:
    """The dataset and its split, refused when it holds too few held-out frames to judge on."""
    from dhm.data.dataset import open_dataset
    from dhm.data.split import split_frames

    ds = open_dataset(data, mode=mode)
    try:
        split = split_frames(ds.n_frames)
    except DatasetError:
        split = None
    n_eval = len(split.eval) if split else 0
    if n_eval < MIN_FRAMES:
        raise DatasetError(
            f"{data}: {ds.n_frames} frames leave {n_eval} held-out evaluation frames; the bench needs at least "
            f"{MIN_FRAMES} "
            f"(a clip of 75+ frames has one held-out block of 25)"
        )
    return ds, split


def _record(
    settings: BenchSettings, reference: Path, ref_cand: Candidate, data: Path, ds: Any, sets: dict[str, Any],
    entries: list[dict[str, Any]], records: list[dict[str, Any]], audio: list[dict[str, Any]],
    device: dict[str, Any] | None, load_before: Any,
) -> dict[str, Any]:  # fmt: skip
    """The bench's JSON record (schema `SCHEMA_ID`)."""
    from dhm.runtime_py.engines import versions as engine_versions

    speedups = ratios(entries, records)
    inputs = sets["inference"]
    return {
        "schema": SCHEMA_ID,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine() | {"load_average_start": load_before, "load_average_end": _load_avg()},
        "versions": engine_versions(),
        "settings": {
            k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
            for k, v in asdict(settings).items()
        },
        "reference": {
            "file": str(reference),
            "generator": ref_cand.spec.to_dict(),
            "macs": ref_cand.macs,
            "params": ref_cand.params,
        },
        "data": {
            "folder": str(data),
            "frames": ds.n_frames,
            "parity_frames": inputs.frames,
            "source": inputs.source,
            "generation_references": sets["generation"].references,
            "ground_truth_lip_sync": sets["generation"].lip_sync(sets["generation"].targets),
        },
        "protocols": PROTOCOL_NOTES,
        "entries": entries,
        "host": records,
        "ratios": speedups,
        "engine_ratios": engine_ratios(entries, records),
        "targets": targets(entries, records, speedups) if records else None,
        "audio": audio,
        "device": device,
    }


def _device(
    cands: list[Candidate],
    inputs: Any,
    host_outputs: dict[str, np.ndarray],
    ref_out: np.ndarray,
    settings: BenchSettings,
    transport: Any,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The MNN candidates on the phone. `host_outputs` (from the parity pass) are what
    ModuleBasic checks the phone's outputs against."""
    from dhm.bench.device import DeviceSettings, bench_on_device

    mnn = [c for c in cands if get(c.backend).ships]
    if not mnn:
        raise SpecError(
            "--device adb benches MNN models: include mnn in --backends and pass MNN models or export folders"
        )
    models = [(c.id, c.path, c.precision, dict(c.spec.output_shapes(1))) for c in mnn]
    ds = DeviceSettings(
        mnn_bin=Path(settings.mnn_bin),
        forward=settings.device_backend,
        threads=settings.threads,
        runs=settings.runs,
        timeout_s=settings.device_timeout_s,
    )
    out = bench_on_device(transport, models, inputs.inputs, host_outputs, ref_out, ds, log)
    # Ratios against the teacher on the phone, from the same session.
    teacher = next((m for m in out["models"] if m["id"] == f"{REFERENCE}/mnn/fp32"), None)
    if teacher:
        base = {t["threads"]: t["avg_ms"] for t in teacher["timing"]}
        for m in out["models"]:
            for t in m["timing"]:
                t["speedup_vs_teacher_mnn"] = base[t["threads"]] / t["avg_ms"] if t["avg_ms"] else None
    return out
