"""Bench output: the JSON record, a Markdown report a person can read, two PNG plots, and
the comparison of two runs (`dhm bench --compare A.json B.json`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dhm.errors import SpecError
from dhm.runtime_py.engines.registry import get

SCHEMA_ID = "dhm.bench/2"  # 2: a generation-protocol block per entry, lip figures
SCHEMAS_READ = ("dhm.bench/1", SCHEMA_ID)  # --compare reads both: parity.psnr means the same in each

PLOT_PSNR_CAP_DB = 60.0  # identical outputs have infinite PSNR; plots cap it here


def _num(v: Any, fmt: str = ".2f", unit: str = "") -> str:
    from dhm.manifest import format_figure

    return format_figure(v, fmt, unit)


def _size(n: int) -> str:
    from dhm.io import human_size

    return human_size(n)


def _psnr_value(v: Any) -> float:
    from dhm.manifest import from_json_number

    return from_json_number(v)


def markdown(result: dict[str, Any], plots: dict[str, str] | None = None) -> str:
    m, s = result["machine"], result["settings"]
    ref = result["reference"]
    lines = [
        "# dhm bench",
        "",
        f"{result['created']} on {m['cpu']} ({m['cores']} cores), load average {m.get('load_average_start')} → "
        f"{m.get('load_average_end')}. Engines: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + ".",
        "",
        f"Reference: `{ref['file']}` ({ref['generator']['mode']}, widths {ref['generator']['widths']}, "
        f"{ref['macs'] / 1e6:.0f} M MACs) in torch FP32, on {len(result['data']['parity_frames'])} held-out frames of "
        f"`{result['data']['folder']}`. Device: {s['device']}; threads {s['threads']}; {s['warmup']} warm-up and "
        f"{s['runs']} timed runs in {s['rounds']} interleaved rounds.",
        "",
        "## Parity against the teacher (torch FP32), inference protocol",
        "",
        "The reference frame is the target frame, as the apps run: a deployment-parity figure (a model could score "
        "well "
        "here by copying its input's upper face, so the generation protocol below is the quality figure). Lip box: the "
        "outer-lip landmarks plus a margin; lip colour: the largest channel difference of the lips' mean BGR, in "
        "levels.",
        "",
        "PSNR (x86) is this host's kernels; PSNR (ARM) runs the same MNN file on MNN's aarch64 kernels, as phones "
        "do (numerics only: emulated, never timed).",
        "",
        "| model | engine | variant | MACs | params | size | PSNR (x86) | PSNR (ARM) | SSIM | mouth-PSNR "
        "| lip-box PSNR | lip-box (ARM) | lip colour Δ | max abs |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in result["entries"]:
        p = e["parity"]
        arm = e.get("parity_arm") or {}
        lines.append(
            f"| {e['model']} | {e['backend']} | {e['variant']} | {e['macs'] / 1e6:.1f} M | {e['params'] / 1e6:.3f} M | "
            f"{_size(e['size_bytes'])} | {_num(p['psnr'], '.2f', ' dB')} | {_num(arm.get('psnr'), '.2f', ' dB')} | "
            f"{_num(p['ssim'], '.4f')} | "
            f"{_num(p['mouth_psnr'], '.2f', ' dB')} | {_num(p.get('lip_psnr'), '.2f', ' dB')} | "
            f"{_num(arm.get('lip_psnr'), '.2f', ' dB')} | "
            f"{_num(p.get('lip_color_diff'), '.1f')} | {_num(p['max_abs'], '.2e')} |"
        )
    lines += _arm_line(result) + _generation_section(result)
    if result["host"]:
        lines += _host_sections(result)
    if result.get("device"):
        lines += _device_section(result["device"])
    if plots:
        lines += ["", "## Plots", ""] + [f"![{k}]({v})" for k, v in plots.items()]
    return "\n".join(lines) + "\n"


def _arm_line(result: dict[str, Any]) -> list[str]:
    """Which kernels the ARM column comes from, on how many frames, or why it is empty."""
    measured = [e for e in result["entries"] if e.get("parity_arm", {}).get("measured")]
    kernels = measured[0]["parity_arm"]["kernels"] if measured else None
    why = next((e["parity_arm"]["why"] for e in result["entries"] if "why" in e.get("parity_arm", {})), None)
    arm_n = measured[0]["parity_arm"].get("frames", 0) if measured else 0
    if arm_n and arm_n < len(result["data"]["parity_frames"]):
        same = "; ".join(
            f"{e['model']}/{e['backend']}/{e['variant']} {e['parity_arm']['psnr']:.2f} against x86 "
            f"{e['parity_arm']['x86_psnr']:.2f} dB"
            for e in measured
        )
        kernels = f"{kernels}, on the first {arm_n} parity frames (x86 on the same frames: {same})"
    if kernels or why:
        return ["", f"ARM: {kernels}." if kernels else f"ARM numerics not measured: {why}."]
    return []


def _generation_section(result: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if any("generation" in e for e in result["entries"]):
        gt = result["data"].get("ground_truth_lip_sync")
        lines += [
            "",
            "## Generation protocol (reference = another held-out frame)",
            "",
            "The mouth must come from the audio, as in training. Figures against the teacher on the same inputs; lip "
            "sync "
            "is the correlation between the true mouth opening of each frame (known on the built-in data) and the "
            f"opening measured in the generated mouth window (ground truth scores {_num(gt, '.3f')}; nothing can "
            "copy it).",
            "",
            "| model | engine | variant | PSNR | SSIM | mouth-PSNR | lip-box PSNR | lip colour Δ | lip sync |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for e in result["entries"]:
            g = e.get("generation", {})
            lines.append(
                f"| {e['model']} | {e['backend']} | {e['variant']} | {_num(g.get('psnr'), '.2f', ' dB')} | "
                f"{_num(g.get('ssim'), '.4f')} | {_num(g.get('mouth_psnr'), '.2f', ' dB')} | "
                f"{_num(g.get('lip_psnr'), '.2f', ' dB')} | {_num(g.get('lip_color_diff'), '.1f')} | "
                f"{_num(g.get('lip_sync'), '.3f')} |"
            )
    return lines


def _host_sections(result: dict[str, Any]) -> list[str]:
    rat = {(r["id"], r["threads"]): r for r in result["ratios"]}
    lines = [
        "",
        "## Latency on this host",
        "",
        "Model alone (one frame, batch 1). Speed-ups are ratios of medians from the same interleaved rounds, "
        "with the range from the quartiles; the IQR column is this run's noise.",
        "",
        "| model / engine / variant | threads | p50 | p90 | p99 | mean | GFLOPS | fps | IQR | load | +RSS | "
        "× teacher torch | × teacher ORT |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    macs = {e["id"]: e["macs"] for e in result["entries"]}
    for r in result["host"]:
        lat, mem = r["latency_ms"], r["memory_mb"]
        ra = rat.get((r["id"], r["threads"]), {})
        lines.append(
            f"| {r['id']} | {r['threads']} | {lat['p50']:.2f} ms | {lat['p90']:.2f} | {lat['p99']:.2f} | "
            f"{lat['mean']:.2f} | {2 * macs[r['id']] / (lat['p50'] * 1e6):.1f} | "
            f"{lat['fps']:.0f} | {lat['iqr_pct']:.0f}% | {r['load_ms']:.0f} ms | {_mb(mem.get('added_mb'))} | "
            f"{_ratio(ra.get('vs_teacher_torch'))} | {_ratio(ra.get('vs_teacher_onnxruntime'))} |"
        )
    lines += [
        "",
        "## End-to-end pipeline per frame",
        "",
        "The reference runtime's loop (`dhm.runtime_py.AvatarPipeline`) on held-out frames: read the frame, crop + "
        "mask + "
        "pack, infer, paste back.",
        "",
        "| model / engine / variant | threads | read + crop + pack | infer | paste | total | fps |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["host"]:
        e = r["end_to_end"]
        lines.append(
            f"| {r['id']} | {r['threads']} | {e['crop_ms']:.2f} ms | {e['infer_ms']:.2f} ms | {e['paste_ms']:.2f} ms | "
            f"{e['total_ms']:.2f} ms | {e['fps']:.1f} |"
        )
    if result["engine_ratios"]:
        lines += [
            "",
            "## MNN / onnxruntime latency (same model, same variant; > 1: MNN slower)",
            "",
            "| model | variant | threads | MNN p50 | ORT p50 | MNN / ORT |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for r in result["engine_ratios"]:
            lines.append(
                f"| {r['model']} | {r['variant']} | {r['threads']} | {r['mnn_p50_ms']:.2f} ms | "
                f"{r['onnxruntime_p50_ms']:.2f} ms | {r['mnn_over_onnxruntime']:.2f} |"
            )
    from dhm.bench.audio import markdown as audio_markdown
    from dhm.bench.profile import markdown as profile_markdown
    from dhm.bench.silence import markdown as silence_markdown

    lines += audio_markdown(result.get("audio") or [])
    lines += silence_markdown(result.get("audio") or [])
    lines += profile_markdown(result.get("op_profile") or [])
    return lines + _targets_section(result)


def _targets_section(result: dict[str, Any]) -> list[str]:
    """The issue's targets as read from this run, and what quantization bought in speed."""
    lines: list[str] = []
    t = result.get("targets")
    if t:
        lines += ["", "## Targets", ""]
        for b in t["best_mnn"]:
            verdict = "met" if b["met"] else "not met"
            lines.append(
                f"- {b['threads']} thread(s): best MNN model with PSNR ≥ {t['psnr_target_db']:.0f} dB is `{b['id']}` "
                f"({b['p50_ms']:.2f} ms, {_num(b['psnr'], '.2f', ' dB')}): "
                f"{_num(b['speedup_vs_teacher_onnxruntime'], '.1f', '×')} "
                f"faster than the teacher in onnxruntime FP32, {_num(b['speedup_vs_teacher_torch'], '.1f', '×')} "
                "than in torch FP32 "
                f"(target ≥ {t['speedup_target']:.0f}×: {verdict})."
            )
        if not t["best_mnn"]:
            lines.append(f"- No MNN model reached {t['psnr_target_db']:.0f} dB against the teacher in this run.")
        for b in t["best_mnn"]:
            lines.append(
                f"- End to end with `{b['id']}` at {b['threads']} thread(s): {b['end_to_end_fps']:.0f} fps "
                f"(real time is 25 fps)."
            )
        for b in t.get("fastest_by_engine", []):
            lines.append(
                f"- Fastest on {b['engine']} at {b['threads']} thread(s) with PSNR ≥ {t['psnr_target_db']:.0f} dB: "
                f"`{b['id']}` ({b['variant']}, {b['p50_ms']:.2f} ms, {_num(b['psnr'], '.2f', ' dB')})."
            )
        for w in t["winners"]:
            lines.append(
                f"- Winner at {w['threads']} thread(s): `{w['fastest_model']}` ({w['p50_ms']:.2f} ms model alone); "
                f"end to end `{w['fastest_end_to_end']}` at {w['end_to_end_fps']:.0f} fps."
            )
        if t.get("variant_ratios"):
            lines += [
                "",
                "What quantization bought in speed on this host (latency over the same model's FP32 on the same "
                "engine; "
                "> 1: slower):",
                "",
            ]
            lines += [
                f"- {v['model']} {v['engine']} {v['variant']} at {v['threads']} thread(s): {v['over_fp32']:.2f}× "
                "FP32's latency"
                for v in t["variant_ratios"]
            ]
        lines += ["", *_why(result)]
    return lines


def _why(result: dict[str, Any]) -> list[str]:
    """The reasons behind the host's figures that do not change from run to run."""
    lines = ["### Why these engines win here", ""]
    cpu = result["machine"]["cpu"].lower()
    x86 = any(k in cpu for k in ("intel", "amd", "x86")) or "x86" in result["machine"]["platform"]
    if x86:
        lines += [
            "- This is an x86 host: onnxruntime's MLAS kernels are tuned for AVX2/AVX-512 and usually lead MNN here; "
            "MNN's kernels are tuned for ARM NEON (and fp16/int8 dot-product instructions), so its lead shows on the "
            "phone "
            "(`--device adb`).",
            "- FP16 files do not run faster on x86: the CPU has no fp16 arithmetic, so both engines compute in fp32 "
            "(MNN converts the weights at load; onnxruntime's FP16 graph adds casts). FP16 halves the file and the "
            "download.",
            *_int8_why(result.get("op_profile") or []),
        ]
    else:
        lines += [
            "- An ARM host: MNN's NEON kernels, with fp16 and int8 dot-product instructions where the CPU has them, "
            "are the ones to use; compare the MNN / onnxruntime ratios above."
        ]
    return lines


def _int8_why(rows: list[dict[str, Any]]) -> list[str]:
    """Why INT8 loses on x86, from this run's op profile where it has one."""
    from dhm.bench.profile import int8_losses

    losses = int8_losses(rows)
    if not losses:
        return [
            "- INT8 pays a conversion between float and int8 around every int8 run of layers, and x86 has no int8 "
            "dot-product instructions MNN uses on phones, so INT8 is mostly a size win on this host."
        ]
    out = []
    for loss in losses:
        top = [f"{k} {v:+.2f} ms" for k, v in loss["by_op"] if v > 0][:4]
        out.append(
            f"- INT8 on x86 (`{loss['id']}`, {loss['extra_ms']:+.2f} ms per frame against FP32), by op type: "
            + ", ".join(top)
            + ". MNN's x86 int8 kernels (depthwise above all, and the residual adds) are slower than its float ones, "
            "and every run of int8 layers is entered and left through FloatToInt8/Int8ToFloat; phones with int8 "
            "dot-product instructions (ARMv8.2 sdot) are where INT8 can win: time it there with `--device adb`."
        )
    return out


def _mb(v: float | None) -> str:
    # memory released while loading shows as a small negative number: report it as 0
    return "–" if v is None else f"{max(0.0, v):.0f} MB"


def _ratio(r: dict[str, float] | None) -> str:
    if not r:
        return "–"
    return f"{r['value']:.1f}× ({r['low']:.1f}–{r['high']:.1f})"


def _device_section(d: dict[str, Any]) -> list[str]:
    dev = d["device"]
    lines = [
        "",
        f"## On the device: {dev.get('manufacturer', '')} {dev.get('model', '')} ({d['abi']}, MNN {d['forward']}, "
        f"{d['tool']})",
        "",
        "Timing is ModuleBasic's own (`Avg/min/max` over the runs); parity is computed on the host from the pulled "
        "outputs. ModuleBasic's check compares the phone with dhm's host MNN run (within 1% of range); with fp16 it "
        "checks nothing (`skipped`).",
        "",
        "| model | precision | threads | avg | min | max | × teacher (MNN, phone) | PSNR vs teacher | vs host MNN | "
        "ModuleBasic check |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for m in d["models"]:
        for t in m["timing"]:
            lines.append(
                f"| {m['id']} | {m['precision']} | {t['threads']} | {t['avg_ms']:.2f} ms | {t['min_ms']:.2f} | "
                f"{t['max_ms']:.2f} | "
                f"{_num(t.get('speedup_vs_teacher_mnn'), '.1f', '×')} | {_num(m['parity']['psnr'], '.2f', ' dB')} | "
                f"{_num(m['parity']['psnr_vs_host_mnn'], '.1f', ' dB')} | {m['modulebasic_check']} |"
            )
    return lines


# ------------------------------------------------------------------------ plots


def _short(entry_id: str) -> str:
    model, backend, variant = entry_id.split("/")
    return f"{model[:8]} {({'onnxruntime': 'ort'}).get(backend, backend)} {variant}"


def plots(result: dict[str, Any], stem: Path) -> dict[str, str]:
    from dhm.plots import bar_chart, scatter_chart

    made: dict[str, str] = {}
    if result["host"]:
        rows = result["host"]
        path = stem.with_name(stem.name + "_latency.png")
        bar_chart(
            path,
            "Model latency p50 (ms), bars show p25-p75",
            "ms",
            [f"{_short(r['id'])} t{r['threads']}" for r in rows],
            [r["latency_ms"]["p50"] for r in rows],
            errors=[(r["latency_ms"]["p75"] - r["latency_ms"]["p25"]) / 2 for r in rows],
        )
        made["latency by variant and engine"] = path.name
    # One point per model and variant (every engine gives the same MACs): MNN's if benched.
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    for e in result["entries"]:
        key = (e["model"], e["variant"])
        if key not in chosen or get(e["backend"]).ships:
            chosen[key] = e
    points = {
        f"{m} {v} ({({'onnxruntime': 'ort'}).get(e['backend'], e['backend'])})": (
            float(e["macs"]),
            min(_psnr_value(e["parity"]["psnr"]), PLOT_PSNR_CAP_DB),
        )
        for (m, v), e in chosen.items()
    }
    path = stem.with_name(stem.name + "_pareto.png")
    scatter_chart(
        path,
        f"PSNR vs teacher (dB, capped at {PLOT_PSNR_CAP_DB:.0f}) against MACs per frame",
        "MACs (log)",
        "PSNR dB",
        points,
    )
    made["PSNR against MACs"] = path.name
    return made


def own_json(path: Path) -> bool:
    """An earlier `dhm bench --json` record (replaced without --force)."""

    try:
        with open(path, "rb") as f:
            head = f.read(200).decode("utf-8", "replace")
    except OSError:
        return False
    return '"schema": "dhm.bench/' in head  # this version's or an earlier one


def own_report(path: Path) -> bool:
    """An earlier bench report (its first line)."""
    try:
        with open(path, "rb") as f:
            return f.read(64).startswith(b"# dhm bench")
    except OSError:
        return False


def plot_paths(report_path: Path) -> list[Path]:
    stem = report_path.with_suffix("")
    return [stem.with_name(stem.name + suffix) for suffix in ("_latency.png", "_pareto.png")]


def write_outputs(result: dict[str, Any], json_path: str | Path | None, report_path: str | Path | None) -> None:
    from dhm.io import atomic_path

    if json_path is not None:
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    if report_path is not None:
        report_path = Path(report_path)
        made = plots(result, report_path.with_suffix(""))  # the names plot_paths() gives
        with atomic_path(report_path) as tmp:
            tmp.write_text(markdown(result, made))


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    return str(v)


# ------------------------------------------------------------------------ compare


def read_result(path: str | Path) -> dict[str, Any]:
    from dhm.io import read_json

    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such bench result")
    data = read_json(path, "bench JSON")
    if not isinstance(data, dict) or data.get("schema") not in SCHEMAS_READ:
        got = data.get("schema") if isinstance(data, dict) else None
        raise SpecError(f"{path}: schema {got!r}, expected {SCHEMA_ID!r} (a `dhm bench --json` file)")
    return data


def compare(a: dict[str, Any], b: dict[str, Any], name_a: str = "A", name_b: str = "B") -> str:
    """Markdown comparing two records (one clear line if either is incomplete)."""
    try:
        return _compare(a, b, name_a, name_b)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise SpecError(
            f"{name_a} or {name_b}: not a complete `dhm bench` record ({type(exc).__name__}: {exc})"
        ) from None


def _compare(a: dict[str, Any], b: dict[str, Any], name_a: str, name_b: str) -> str:
    lines = [f"# dhm bench: {name_a} → {name_b}", ""]
    ma, mb = a["machine"], b["machine"]
    if (ma["cpu"], ma["cores"]) != (mb["cpu"], mb["cores"]):
        lines += [
            f"Different machines: {ma['cpu']} ({ma['cores']} cores) vs {mb['cpu']} ({mb['cores']} cores); "
            "compare the ratios, not the milliseconds.",
            "",
        ]
    changed = {k for k in set(a["versions"]) | set(b["versions"]) if a["versions"].get(k) != b["versions"].get(k)}
    if changed:
        lines += [
            "Engine versions changed: "
            + ", ".join(f"{k} {a['versions'].get(k)} → {b['versions'].get(k)}" for k in sorted(changed)),
            "",
        ]
    pa = {e["id"]: e for e in a["entries"]}
    pb = {e["id"]: e for e in b["entries"]}
    lines += [
        "## Parity (PSNR against the teacher)",
        "",
        f"| entry | {name_a} | {name_b} | change |",
        "|---|---:|---:|---:|",
    ]
    for key in sorted(set(pa) | set(pb)):
        va = _psnr_value(pa[key]["parity"]["psnr"]) if key in pa else None
        vb = _psnr_value(pb[key]["parity"]["psnr"]) if key in pb else None
        delta = (
            f"{vb - va:+.2f} dB"
            if va is not None and vb is not None and math.isfinite(va) and math.isfinite(vb)
            else "–"
        )
        lines.append(f"| {key} | {_num(va, '.2f', ' dB')} | {_num(vb, '.2f', ' dB')} | {delta} |")
    ha = {(r["id"], r["threads"]): r for r in a.get("host") or []}
    hb = {(r["id"], r["threads"]): r for r in b.get("host") or []}
    ra = {(r["id"], r["threads"]): r for r in a.get("ratios") or []}
    rb = {(r["id"], r["threads"]): r for r in b.get("ratios") or []}
    if ha or hb:
        lines += [
            "",
            "## Latency p50 and speed-up against the teacher (same run)",
            "",
            f"| entry | threads | {name_a} p50 | {name_b} p50 | change | {name_a} × teacher torch | {name_b} × "
            "teacher torch |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for key in sorted(set(ha) | set(hb)):
            xa = ha[key]["latency_ms"]["p50"] if key in ha else None
            xb = hb[key]["latency_ms"]["p50"] if key in hb else None
            change = f"{100.0 * (xb - xa) / xa:+.1f}%" if xa and xb else "–"
            sa = ra.get(key, {}).get("vs_teacher_torch")
            sb = rb.get(key, {}).get("vs_teacher_torch")
            lines.append(
                f"| {key[0]} | {key[1]} | {_num(xa, '.2f', ' ms')} | {_num(xb, '.2f', ' ms')} | {change} | "
                f"{_ratio(sa)} | {_ratio(sb)} |"
            )
    only = sorted(set(pa) ^ set(pb))
    if only:
        lines += ["", "Only in one run: " + ", ".join(f"`{k}` ({name_a if k in pa else name_b})" for k in only)]
    return "\n".join(lines) + "\n"
