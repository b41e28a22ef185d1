"""`dhm quantize`: FP16 and INT8 variants, calibrated on held-out frames, with an
accuracy-aware fallback that keeps the most sensitive layers in float.

OUT/ holds every variant, the calibration set (`calib.npz`), the source checkpoint
(`model.pt`) and `recipe.json` (methods, kept-float layers, calibration frame ids), so
`dhm export OUT` can rebuild the INT8 files; `report.json`/`report.md` say what each
variant kept and lost against FP32 on evaluation frames it was not calibrated on.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dhm.data.inputs import InputSet, load_inputs, save_inputs
from dhm.runtime_py.engines import Artifact, Fp16, Fp32, MnnInt8, OnnxInt8, build_and_validate, get, validate, versions
from dhm.errors import ConversionError, SpecError
from dhm.io import atomic_dir, check_output, human_size
from dhm.manifest import format_figure, from_json_number, json_number
from dhm.quantize.recipe import CALIB_FILE, EVAL_FILE, RECIPE_FILE, RECIPE_SCHEMA, SOURCE_FILE
from dhm.quantize.config import QuantizeConfig

# Fallback rounds keep these fractions of the ranked layers in float. Quantization error
# is usually spread over many layers, so single layers rarely help on their own; past
# 60% in float the file is no longer an INT8 model worth the name.
FALLBACK_FRACTIONS = (0.05, 0.1, 0.2, 0.4, 0.6)


@dataclass
class Variant:
    file: str
    engine: str
    precision: str  # fp32, fp16, int8, int8-weight-only
    quality: dict[str, Any]
    size_bytes: int
    structure: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def of(cls, art: Artifact) -> "Variant":
        return cls(art.file, art.engine, art.variant, art.quality, art.size_bytes, art.structure)


def _psnr(q: dict[str, Any]) -> float:
    """The figure choices are made by: for MNN files measured on its aarch64 kernels too,
    the worse of x86 and ARM (what a phone may get)."""
    db = from_json_number(q["psnr"])
    if "arm" in q:
        db = min(db, from_json_number(q["arm"]["psnr"]))
    return db


def _step_psnr(q: dict[str, Any]) -> dict[str, Any]:
    """A fallback round's figure: the one its choices were made by (x86 and ARM apart)."""
    if "arm" not in q:
        return {"psnr": q["psnr"]}
    return {"psnr": json_number(_psnr(q)), "psnr_x86": q["psnr"], "psnr_arm": q["arm"]["psnr"]}


def _fallback(
    build: Callable[[list[str]], Path],
    evaluate: Callable[[Path], dict[str, Any]],
    ranking: Callable[[], list[str]],
    target: float,
    log: Callable[[str], None],
    engine: str,
) -> tuple[Path, list[str], list[dict[str, Any]]]:
    """Quantize everything; while below target, keep the most sensitive 5%, 10%, 20%, 40%
    and 60% of the layers in float. Stops when the target holds, or when two rounds in a
    row gain less than 0.1 dB over the best so far (no gain left). Returns the best round."""
    path = build([])
    q = evaluate(path)
    steps = [{"kept_float": [], **_step_psnr(q), "size_bytes": path.stat().st_size, "gain_db": None}]
    log(f"{engine} int8: full quantization: PSNR {_psnr(q):.2f} dB vs FP32")
    best = (path, [], q)
    stale = 0
    for fraction in FALLBACK_FRACTIONS:
        if _psnr(best[2]) >= target:
            break
        order = ranking()
        candidate = order[: max(1, math.ceil(fraction * len(order)))]
        path = build(candidate)
        q = evaluate(path)
        gain = _psnr(q) - _psnr(best[2])
        steps.append(
            {
                "kept_float": candidate[len(best[1]) :] if gain >= 0.1 else candidate,
                "layers_in_float": len(candidate),
                **_step_psnr(q),
                "size_bytes": path.stat().st_size,
                "gain_db": round(gain, 3),
            }
        )
        log(f"{engine} int8: {len(candidate)} layer(s) in float: PSNR {_psnr(q):.2f} dB ({gain:+.2f} vs best)")
        if gain >= 0.1:
            best, stale = (path, list(candidate), q), 0
        else:
            stale += 1
            if stale >= 2:
                break
    final_path, kept, _ = best
    return final_path, kept, steps


@dataclass
class _Job:
    """One quantize run's shared state: what every variant is built from and judged by."""

    spec: Any
    model: Any
    calib: InputSet
    evaluation: InputSet
    reference: list[np.ndarray]
    header: dict[str, Any]
    recipe: dict[str, Any]
    work: Path
    log: Callable[[str], None]
    counter: Any = field(default_factory=lambda: iter(range(100_000)))

    def evaluate(self, path: Path, engine: str) -> dict[str, Any]:
        return validate(path, engine, "int8", self.evaluation, self.reference)[0]

    def int8_variant(self, path: Path, backend: Any) -> Variant:
        """The kept INT8 file as a report row: judged on the evaluation frames, and refused
        unless it is structurally INT8."""
        return Variant(
            path.name, backend.name, "int8", self.evaluate(path, backend.name), path.stat().st_size,
            backend.require_int8(path),
        )  # fmt: skip

    def trial_path(self, stem: str, fmt: str) -> Path:
        return self.work / f"{stem}_{next(self.counter)}.{fmt}"


def quantize_model(
    model_path: str | Path,
    out: str | Path,
    data: str | Path,
    config: QuantizeConfig | None = None,
    *,
    force: bool = False,
    log: Callable[[str], None] = lambda _m: None,
    crop_interpolation: str | None = None,
) -> dict[str, Any]:
    """FP16 and INT8 variants of a checkpoint, calibrated and judged on `data`'s held-out frames,
    written to `out` with the recipe `dhm export` rebuilds them from; returns the report."""
    c = config or QuantizeConfig()
    fp16, int8, calib_frames, eval_frames = c.fp16, c.int8, c.calib_frames, c.eval_frames
    ort_method, target_psnr, calib_file = c.ort_method, c.target_psnr, c.calib_file
    if not (fp16 or int8):
        raise SpecError("nothing to do: pass --fp16 and/or --int8")
    out = check_output(out, kind="dir", command="quantize", force=force, inputs=[model_path, data, calib_file])
    if not math.isfinite(target_psnr) or not 0 <= target_psnr <= 200:
        raise SpecError(f"--target-psnr {target_psnr}: expected a finite number of dB in 0 … 200")
    if not 1 <= eval_frames <= 10_000:
        raise SpecError(f"--eval-frames {eval_frames}: expected 1 … 10,000")
    with atomic_dir(out, replace=True, command="quantize") as tmp:
        job = _prepare(
            Path(model_path), data, calib_frames, eval_frames, calib_file, crop_interpolation, tmp, target_psnr, log
        )
        shutil.copyfile(model_path, tmp / SOURCE_FILE)
        save_inputs(tmp / CALIB_FILE, job.calib)
        save_inputs(tmp / EVAL_FILE, job.evaluation)
        onnx_fp32 = tmp / "model_fp32.onnx"
        variants = _float_variants(job, onnx_fp32, tmp, fp16)
        if int8:
            # the ranking costs a quantized forward pass per layer: measured only if a fallback round needs it
            ranked = functools.cache(functools.partial(_rank_layers, job, onnx_fp32))
            act_symmetric = False
            if c.use_inc:
                ort_method, act_symmetric = _inc(job)
            onnx_order = lambda: ranked()[0]  # noqa: E731
            mnn_order = lambda: [ranked()[1][n] for n in ranked()[0]]  # noqa: E731
            variants.append(_onnx_int8(job, onnx_fp32, tmp, onnx_order, ort_method, act_symmetric, target_psnr))
            variants.append(_mnn_int8(job, onnx_fp32, tmp, mnn_order, c.mnn_method, target_psnr))
        shutil.rmtree(job.work)
        report = _report(job, variants, target_psnr)
        (tmp / RECIPE_FILE).write_text(json.dumps(job.recipe, indent=2) + "\n")
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (tmp / "report.md").write_text(_markdown(report))
    return report


def _prepare(
    model_path: Path,
    data: str | Path,
    calib_frames: int,
    eval_frames: int,
    calib_file: str | Path | None,
    crop_interpolation: str | None,
    tmp: Path,
    target_psnr: float,
    log: Callable[[str], None],
) -> _Job:
    """Load and check the model and the calibration and evaluation sets; the FP32 outputs
    every variant is judged against; the recipe's header."""
    import torch

    from dhm.manifest import build_header
    from dhm.metrics import count_macs, count_params
    from dhm.models import file_sha256, load_checkpoint
    from dhm.quantize.calib import build_sets, check_finite_activations, check_shapes

    ckpt = load_checkpoint(model_path, crop_interpolation=crop_interpolation)
    spec = ckpt.spec
    # What is quantized is what runs after export (MobileOne reparameterized).
    model = ckpt.inference_model()
    sets = build_sets(data, spec, calib_frames, eval_frames, load_inputs(Path(calib_file)) if calib_file else None)
    check_shapes(sets.calib, spec, "calibration set")
    check_finite_activations(model, sets.calib, "calibration set")
    check_finite_activations(model, sets.eval, "evaluation set")
    log(
        f"model: {spec.describe()} ({spec.describe_conventions()}); calibration: {len(sets.calib)} frames "
        f"({sets.calib.source}); evaluation: {len(sets.eval)} frames"
    )
    with torch.inference_mode():
        reference = [model(*(torch.from_numpy(x[k]) for k in x)).numpy() for x in sets.eval.inputs]
    header = build_header(
        spec,
        macs=count_macs(model, *(torch.zeros(s) for s in spec.input_shapes(1).values())),
        params=count_params(model),
        source={"file": model_path.name, "sha256": file_sha256(model_path), "form": ckpt.form},
        versions=versions(),
    )
    recipe: dict[str, Any] = {
        "schema": RECIPE_SCHEMA,
        "source": {"file": SOURCE_FILE, "sha256": file_sha256(model_path), "original": str(model_path)},
        "spec": spec.to_dict(),
        "calibration": {"file": CALIB_FILE, "source": sets.calib.source, "frames": sets.calib.frames},
        "evaluation": {"file": EVAL_FILE, "source": sets.eval.source, "frames": sets.eval.frames},
        "target_psnr_db": target_psnr,
    }
    work = tmp / ".work"
    work.mkdir()
    return _Job(spec, model, sets.calib, sets.eval, reference, header, recipe, work, log)


def _float_variants(job: _Job, onnx_fp32: Path, tmp: Path, fp16: bool) -> list[Variant]:
    """FP32 (ONNX and MNN) and, if asked, FP16: each built and judged by the engine layer."""
    from dhm.runtime_py.engines.torch_onnx import export_onnx

    export_onnx(job.model, job.spec, onnx_fp32, job.evaluation.inputs[:2])
    configs = [Fp32()] + ([Fp16()] if fp16 else [])
    variants = []
    for config in configs:
        for backend in (get("onnxruntime"), get("mnn")):
            dst = tmp / f"model_{config.variant}.{backend.format}"
            art = build_and_validate(backend, config, onnx_fp32, dst, job.evaluation, job.reference, header=job.header)
            variants.append(Variant.of(art))
    if fp16:
        job.log("fp16: " + ", ".join(f"{v.file} {_psnr(v.quality):.1f} dB" for v in variants if v.precision == "fp16"))
    return variants


def _rank_layers(job: _Job, onnx_fp32: Path) -> tuple[list[str], dict[str, str]]:
    """Layers by the held-out PSNR each costs when quantized alone (torch, 4 evaluation
    frames), as ONNX Conv node names; both engines' fallbacks keep them in float in that order."""
    from dhm.runtime_py.engines.onnx_int8 import conv_output_names
    from dhm.quantize.sensitivity import layer_sensitivity, onnx_conv_name

    probe = InputSet(job.evaluation.inputs[:4], job.evaluation.source, job.evaluation.frames[:4])
    scores = layer_sensitivity(job.model, job.calib, probe)
    ranking = [onnx_conv_name(s.module) for s in scores]
    to_mnn = conv_output_names(onnx_fp32)
    unmapped = [n for n in ranking if n not in to_mnn]
    if unmapped:  # a layer the fallback could not keep in float would be silently quantized
        raise ConversionError(f"layer {unmapped[0]!r} has no Conv node in the exported ONNX graph")
    job.recipe["sensitivity"] = {
        "metric": "output PSNR vs FP32 with only this layer quantized (4 evaluation frames)",
        "layers": [s.to_dict() for s in scores[:16]],
    }
    job.log("most sensitive layers: " + ", ".join(f"{s.module} ({s.to_dict()['psnr_db']} dB)" for s in scores[:3]))
    return ranking, to_mnn


def _inc(job: _Job) -> tuple[str, bool]:
    from dhm.quantize.inc import search_activation_config

    probe = InputSet(job.evaluation.inputs[:4], job.evaluation.source, job.evaluation.frames[:4])
    found = search_activation_config(job.model, job.calib, probe)
    job.recipe["neural_compressor"] = {
        "role": "autotune of activation calibration and symmetry on the torch model (PT2E), "
        "scored by held-out PSNR; the winner sets the ONNX recipe",
        **found.to_dict(),
    }
    job.log(
        "neural-compressor: "
        + ", ".join(f"{'sym' if t['act_sym'] else 'asym'}/{t['act_algo']} {t['psnr_db']} dB" for t in found.trials)
        + f" -> {found.ort_method}, {'symmetric' if found.act_sym else 'asymmetric'} activations"
    )
    return found.ort_method, found.act_sym


def _onnx_int8(
    job: _Job,
    onnx_fp32: Path,
    tmp: Path,
    ranking: Callable[[], list[str]],
    method: str,
    act_symmetric: bool,
    target: float,
) -> Variant:
    """onnxruntime QDQ INT8: the weight type by measurement, then the accuracy-aware fallback."""
    from dhm.runtime_py.engines.onnx_int8 import WEIGHT_TYPES

    backend = get("onnxruntime")

    def build(weight_type: str, exclude: list[str]) -> Path:
        path = job.trial_path("onnx_int8", "onnx")
        config = OnnxInt8(method=method, exclude=tuple(exclude), act_symmetric=act_symmetric, weight_type=weight_type)
        backend.build(config, onnx_fp32, path, calib=job.calib, verify=False)
        return path

    # uint8 x int8 saturates on AVX2 hosts without VNNI (see onnx_int8.WEIGHT_TYPES): full
    # quantization with each weight type, the better one carries on into the fallback.
    trials = {w: build(w, []) for w in WEIGHT_TYPES}
    measured = {w: _psnr(job.evaluate(p, backend.name)) for w, p in trials.items()}
    weight_type = max(measured, key=lambda w: measured[w])
    weight_reason = "best held-out PSNR of " + ", ".join(f"{w} {v:.1f} dB" for w, v in measured.items())
    job.log(f"onnxruntime int8 weights: {weight_reason} -> {weight_type}")
    best, kept, steps = _fallback(
        lambda ex: trials[weight_type] if not ex else build(weight_type, ex),
        lambda p: job.evaluate(p, backend.name),
        ranking,
        target,
        job.log,
        backend.name,
    )
    config = OnnxInt8(method=method, exclude=tuple(kept), act_symmetric=act_symmetric, weight_type=weight_type)
    final = tmp / "model_int8.onnx"
    best.replace(final)
    job.recipe["onnx_int8"] = {
        "config": config.to_dict(),
        "method": method,
        "per_channel": True,
        "weights": f"{weight_type} symmetric",
        "weight_type": weight_type,
        "weight_reason": weight_reason,
        "activations": "int8 symmetric" if act_symmetric else "uint8 asymmetric",
        "act_symmetric": act_symmetric,
        "nodes_to_exclude": kept,
        "fallback": steps,
    }
    return job.int8_variant(final, backend)


def _auto_mnn_method(
    build: Callable[[str, list[str]], Path],
    psnr: Callable[[Path], float],
    used: Callable[[Path], str],
    target: float,
    log: Callable[[str], None],
) -> tuple[str, str, str]:
    """MNN's feature method by held-out PSNR: (full quantization's, fallback rounds', why).

    Cheapest first, and the search stops at the first method that meets the target: KL (8 s
    on the tests' teacher, 14 s with ARM numerics) never beat EMA in any recipe measured here,
    and ADMM (300 passes over every activation of one frame: 38 s) lost by 12-16 dB."""
    from dhm.runtime_py.engines.mnn_int8 import MNN_METHODS, SKIP_HONOURING

    tried: dict[str, float] = {}
    failed: dict[str, str] = {}
    not_needed: list[str] = []
    for m in MNN_METHODS:
        if tried and max(tried.values()) >= target:
            not_needed.append(m)
            continue
        try:
            path = build(m, [])
        except ConversionError as exc:  # a method that cannot calibrate this model drops out
            failed[m] = str(exc)
            log(f"mnn int8 {m}: {exc}")
            continue
        tried[used(path)] = psnr(path)
    if not tried:
        raise ConversionError("MNN INT8: no calibration method worked (" + "; ".join(failed.values()) + ")")
    full_method = max(tried, key=lambda k: tried[k])
    reason = "best held-out PSNR of " + ", ".join(
        [f"{k} {v:.1f} dB" for k, v in tried.items()] + [f"{k} failed" for k in failed]
    )
    if not_needed:
        reason += f" ({', '.join(not_needed)} not tried: {full_method} met the {target:g} dB target)"
    # MNN 3.6.1's EMA path quantizes every layer whatever skip_quant_op_names says
    # (checked structurally), so layers can only be kept in float with the best of the
    # methods that honour the list.
    honouring = [m for m in SKIP_HONOURING if m in tried]
    skip_method = max(honouring, key=lambda k: tried[k]) if honouring else full_method
    log(
        f"mnn int8 method: {reason} -> {full_method}"
        + (f" (fallback rounds: {skip_method})" if skip_method != full_method else "")
    )
    return full_method, skip_method, reason


def _mnn_int8(
    job: _Job, onnx_fp32: Path, tmp: Path, ranking: Callable[[], list[str]], mnn_method: str, target: float
) -> Variant:
    """MNN full INT8: the feature method by measurement ("auto"), then the fallback."""
    backend = get("mnn")
    cache: dict[str, Any] = {"dir": job.work}  # one converted source and calibration folder for every trial
    built: dict[tuple[str, tuple[str, ...]], tuple[Path, str]] = {}

    def build(method: str, skip: list[str]) -> Path:
        # the auto-method trials already built each full quantization: reuse them
        key = (method, tuple(skip))
        if key not in built:
            path = job.trial_path("mnn_int8", "mnn")
            info = backend.build(
                MnnInt8(method=method, skip=tuple(skip)),
                onnx_fp32,
                path,
                calib=job.calib,
                header=job.header,
                verify=False,
                cache=cache,
            )
            built[key] = (path, info["method"])
        return built[key][0]

    def used(path: Path) -> str:
        return next(m for p, m in built.values() if p == path)

    if mnn_method == "auto":
        psnr = lambda p: _psnr(job.evaluate(p, backend.name))  # noqa: E731
        full_method, skip_method, reason = _auto_mnn_method(build, psnr, used, target, job.log)
    else:
        full_method = skip_method = mnn_method
        reason = "chosen by the user (--mnn-method)"
    best, kept, steps = _fallback(
        lambda skip: build(skip_method if skip else full_method, skip),
        lambda p: job.evaluate(p, backend.name),
        ranking,
        target,
        job.log,
        backend.name,
    )
    final_method = used(best)
    config = MnnInt8(method=final_method, skip=tuple(kept))
    final = tmp / "model_int8.mnn"
    best.replace(final)
    job.recipe["mnn_int8"] = {
        "config": config.to_dict(),
        "method": final_method,
        "reason": reason if final_method == full_method else f"{reason}; layers kept in float need {final_method}",
        "weight_method": "MAX_ABS",
        "skip_quant_op_names": kept,
        "fallback_method": skip_method,
        "fallback": steps,
    }
    return job.int8_variant(final, backend)


def _report(job: _Job, variants: list[Variant], target_psnr: float) -> dict[str, Any]:
    fp32_sizes = {v.engine: v.size_bytes for v in variants if v.precision == "fp32"}
    return {
        "model": job.spec.to_dict(),
        "reference": "torch FP32 on evaluation frames (never used for calibration)",
        "target_psnr_db": target_psnr,
        "variants": [{**v.to_dict(), "size_vs_fp32": round(v.size_bytes / fp32_sizes[v.engine], 3)} for v in variants],
        "recipe": job.recipe,
    }


def _fmt_db(v: Any) -> str:
    return format_figure(v, ".2f", " dB")


def _fmt_lvl(v: Any) -> str:
    return format_figure(v, ".1f")


def variant_table(report: dict[str, Any]) -> str:
    rows = [
        "| file | engine | precision | size | vs FP32 size | PSNR (x86) | PSNR (ARM) | SSIM | mouth-PSNR | "
        "lip-box PSNR | lip-box (ARM) | lip colour Δ | max abs |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v in report["variants"]:
        q = v["quality"]
        arm = q.get("arm") or {}
        rows.append(
            f"| {v['file']} | {v['engine']} | {v['precision']} | {human_size(v['size_bytes'])} | "
            f"{v['size_vs_fp32']:.2f}x | "
            f"{_fmt_db(q['psnr'])} | {_fmt_db(arm.get('psnr'))} | {float(q['ssim']):.4f} | "
            f"{_fmt_db(q['mouth_psnr'])} | {_fmt_db(q.get('lip_psnr'))} | {_fmt_db(arm.get('lip_psnr'))} | "
            f"{_fmt_lvl(q.get('lip_color_diff'))} | {float(q['max_abs']):.2e} |"
        )
    kernels = next((v["quality"]["arm"]["kernels"] for v in report["variants"] if "arm" in v["quality"]), None)
    rows.append(
        ""
        if kernels is None
        else f"\nx86: this host's MNN/onnxruntime kernels. ARM: {kernels}; MNN INT8 choices use the worse of the two."
    )
    return "\n".join(rows)


def _markdown(report: dict[str, Any]) -> str:
    r = report["recipe"]
    lines = [
        "# dhm quantize report",
        "",
        f"Against {report['reference']}; calibration on held-out frames {r['calibration']['frames'][:3]}… "
        f"({len(r['calibration']['frames'])} frames), evaluation on {len(r['evaluation']['frames'])} other held-out "
        "frames.",
        "",
        variant_table(report),
        "",
    ]
    for key, title in (("onnx_int8", "ONNX INT8 (onnxruntime QDQ)"), ("mnn_int8", "MNN INT8")):
        if key not in r:
            continue
        q = r[key]
        kept = q.get("nodes_to_exclude", q.get("skip_quant_op_names", []))
        lines += [
            f"## {title}",
            "",
            f"- method: {q['method']}" + (f" ({q['reason']})" if "reason" in q else ""),
            *([f"- weights: {q['weight_type']} ({q['weight_reason']})"] if "weight_reason" in q else []),
            f"- layers kept in float: {len(kept)}" + (f": {', '.join(kept)}" if kept else ""),
            "",
            "| round | layers in float | PSNR vs FP32 | size | gain vs best |",
            "|---:|---:|---:|---:|---:|",
        ]
        for i, s in enumerate(q["fallback"]):
            gain = "-" if s["gain_db"] is None else f"{s['gain_db']:+.2f} dB"
            lines.append(
                f"| {i} | {s.get('layers_in_float', 0)} | {_fmt_db(s['psnr'])} | {human_size(s['size_bytes'])} | "
                f"{gain} |"
            )
        lines.append("")
    return "\n".join(lines)
