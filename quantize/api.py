"""`dhm quantize`: FP16 and INT8 variants, calibrated on held-out frames, with an
accuracy-aware fallback that keeps the most sensitive layers in float.

OUT/ holds every variant, the calibration set (`calib.npz`), the source checkpoint
(`model.pt`) and `recipe.json` (methods, kept-float layers, calibration frame ids), so
`dhm export OUT` can rebuild the INT8 files; `report.json`/`report.md` say what each
variant kept and lost against FP32 on evaluation frames it was not calibrated on.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dhm.data.inputs import InputSet
from dhm.errors import ConversionError, SpecError
from dhm.io import atomic_dir, check_output, human_size
from dhm.manifest import from_json_number, json_number
from dhm.metrics import image_quality

RECIPE_FILE = "recipe.json"
RECIPE_SCHEMA = "dhm.quantize-recipe/1"
SOURCE_FILE = "model.pt"
CALIB_FILE = "calib.npz"
EVAL_FILE = "eval.npz"
DEFAULT_TARGET_PSNR = 35.0
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


def _quality(outputs: list[np.ndarray], reference: list[np.ndarray]) -> dict[str, Any]:
    q = image_quality(np.concatenate(outputs), np.concatenate(reference)).to_dict()
    return {k: json_number(v) for k, v in q.items()}


def _run(path: Path, inputs: InputSet) -> list[np.ndarray]:
    from dhm.runtime_py.backends import load

    engine = load(path, threads=2, check_manifest=False)
    name = engine.outputs[0].name
    return [engine.run(x)[name] for x in inputs.inputs]


def _psnr(q: dict[str, Any]) -> float:
    return from_json_number(q["psnr"])


def _fallback(
    build: Callable[[list[str]], Path],
    evaluate: Callable[[Path], dict[str, Any]],
    ranking: list[str],
    target: float,
    log: Callable[[str], None],
    engine: str,
) -> tuple[Path, list[str], list[dict[str, Any]]]:
    """Quantize everything; while below target, keep the most sensitive 5%, 10%, 20%, 40%
    and 60% of the layers in float. Stops when the target holds, or when two rounds in a
    row gain less than 0.1 dB over the best so far (no gain left). Returns the best round."""
    path = build([])
    q = evaluate(path)
    steps = [{"kept_float": [], "psnr": q["psnr"], "size_bytes": path.stat().st_size, "gain_db": None}]
    log(f"{engine} int8: full quantization: PSNR {_psnr(q):.2f} dB vs FP32")
    best = (path, [], q)
    stale = 0
    for fraction in FALLBACK_FRACTIONS:
        if _psnr(best[2]) >= target:
            break
        candidate = ranking[: max(1, math.ceil(fraction * len(ranking)))]
        path = build(candidate)
        q = evaluate(path)
        gain = _psnr(q) - _psnr(best[2])
        steps.append({
            "kept_float": candidate[len(best[1]):] if gain >= 0.1 else candidate,
            "layers_in_float": len(candidate),
            "psnr": q["psnr"],
            "size_bytes": path.stat().st_size,
            "gain_db": round(gain, 3),
        })
        log(f"{engine} int8: {len(candidate)} layer(s) in float: PSNR {_psnr(q):.2f} dB ({gain:+.2f} vs best)")
        if gain >= 0.1:
            best, stale = (path, list(candidate), q), 0
        else:
            stale += 1
            if stale >= 2:
                break
    final_path, kept, _ = best
    return final_path, kept, steps


def quantize_model(
    model_path: str | Path,
    out: str | Path,
    data: str | Path,
    fp16: bool = True,
    int8: bool = True,
    calib_frames: int = 24,
    eval_frames: int = 16,
    ort_method: str = "minmax",
    mnn_method: str = "auto",
    target_psnr: float = DEFAULT_TARGET_PSNR,
    calib_file: str | Path | None = None,
    use_inc: bool = False,
    force: bool = False,
    log: Callable[[str], None] = lambda _m: None,
    crop_interpolation: str | None = None,
) -> dict[str, Any]:
    import torch

    from dhm.export.mnn_tools import convert_onnx
    from dhm.export.onnx_export import export_onnx
    from dhm.export.onnx_fp16 import convert_to_fp16
    from dhm.manifest import biz_code, build_header, engine_versions
    from dhm.metrics import count_macs, count_params
    from dhm.models import file_sha256, load_checkpoint
    from dhm.quantize import mnn_int8, ort_int8
    from dhm.quantize.checks import require_int8
    from dhm.quantize.calib import build_sets, check_finite_activations, check_shapes, load_inputs, save_inputs

    if not (fp16 or int8):
        raise SpecError("nothing to do: pass --fp16 and/or --int8")
    out = check_output(out, kind="dir", command="quantize", force=force, inputs=[model_path, data, calib_file])
    if not math.isfinite(target_psnr) or not 0 <= target_psnr <= 200:
        raise SpecError(f"--target-psnr {target_psnr}: expected a finite number of dB in 0 … 200")
    if not 1 <= eval_frames <= 10_000:
        raise SpecError(f"--eval-frames {eval_frames}: expected 1 … 10,000")
    ckpt = load_checkpoint(model_path, crop_interpolation=crop_interpolation)
    spec = ckpt.spec
    # What is quantized is what runs after export (MobileOne reparameterized).
    model = ckpt.inference_model()
    sets = build_sets(data, spec, calib_frames, eval_frames, load_inputs(Path(calib_file)) if calib_file else None)
    calib = sets.calib
    check_shapes(calib, spec, "calibration set")
    check_finite_activations(model, calib, "calibration set")
    check_finite_activations(model, sets.eval, "evaluation set")
    log(f"model: {spec.describe()} ({spec.describe_conventions()}); calibration: {len(calib)} frames ({calib.source}); "
        f"evaluation: {len(sets.eval)} frames")

    with torch.inference_mode():
        reference = [model(*(torch.from_numpy(x[k]) for k in x)).numpy() for x in sets.eval.inputs]

    shapes = spec.input_shapes(1)
    header = build_header(
        spec,
        macs=count_macs(model, *(torch.zeros(s) for s in shapes.values())),
        params=count_params(model),
        source={"file": Path(model_path).name, "sha256": file_sha256(model_path), "form": ckpt.form},
        versions=engine_versions(),
    )
    variants: list[Variant] = []
    recipe: dict[str, Any] = {
        "schema": RECIPE_SCHEMA,
        "source": {"file": SOURCE_FILE, "sha256": file_sha256(model_path), "original": str(model_path)},
        "spec": spec.to_dict(),
        "calibration": {"file": CALIB_FILE, "source": calib.source, "frames": calib.frames},
        "evaluation": {"file": EVAL_FILE, "source": sets.eval.source, "frames": sets.eval.frames},
        "target_psnr_db": target_psnr,
    }

    def evaluate(path: Path) -> dict[str, Any]:
        return _quality(_run(path, sets.eval), reference)

    def add(path: Path, engine: str, precision: str, structure: dict[str, Any] | None = None) -> Variant:
        v = Variant(path.name, engine, precision, evaluate(path), path.stat().st_size, structure or {})
        variants.append(v)
        return v

    with atomic_dir(out, replace=True, command="quantize") as tmp:
        shutil.copyfile(model_path, tmp / SOURCE_FILE)
        save_inputs(tmp / CALIB_FILE, calib)
        save_inputs(tmp / EVAL_FILE, sets.eval)
        fp32_onnx = tmp / "model_fp32.onnx"
        export_onnx(model, spec, fp32_onnx, sets.eval.inputs[:2])
        add(fp32_onnx, "onnxruntime", "fp32")
        fp32_mnn = tmp / "model_fp32.mnn"
        convert_onnx(fp32_onnx, fp32_mnn, biz_code=biz_code(header, "fp32"))
        add(fp32_mnn, "mnn", "fp32")

        if fp16:
            path = tmp / "model_fp16.onnx"
            convert_to_fp16(fp32_onnx, path)
            add(path, "onnxruntime", "fp16")
            path = tmp / "model_fp16.mnn"
            convert_onnx(fp32_onnx, path, fp16=True, biz_code=biz_code(header, "fp16"))
            add(path, "mnn", "fp16")
            log("fp16: " + ", ".join(f"{v.file} {_psnr(v.quality):.1f} dB" for v in variants if v.precision == "fp16"))

        if int8:
            work = tmp / ".work"
            work.mkdir()
            # Rank layers once (torch, held-out PSNR per lone quantized layer); both
            # engines' fallbacks keep the same layers in float, in that order.
            from dhm.quantize.sensitivity import layer_sensitivity, onnx_conv_name

            probe_eval = InputSet(sets.eval.inputs[:4], sets.eval.source, sets.eval.frames[:4])
            scores = layer_sensitivity(model, calib, probe_eval)
            ranking = [onnx_conv_name(s.module) for s in scores]
            to_mnn = ort_int8.conv_output_names(fp32_onnx)
            unmapped = [n for n in ranking if n not in to_mnn]
            if unmapped:  # a layer the fallback could not keep in float would be silently quantized
                raise ConversionError(f"layer {unmapped[0]!r} has no Conv node in the exported ONNX graph")
            recipe["sensitivity"] = {
                "metric": "output PSNR vs FP32 with only this layer quantized (4 evaluation frames)",
                "layers": [s.to_dict() for s in scores[:16]],
            }
            log("most sensitive layers: " + ", ".join(f"{s.module} ({s.to_dict()['psnr_db']} dB)" for s in scores[:3]))
            counter = iter(range(1000))
            act_symmetric = False
            if use_inc:
                from dhm.quantize.inc import search_activation_config

                found = search_activation_config(model, calib, probe_eval)
                ort_method, act_symmetric = found.ort_method, found.act_sym
                recipe["neural_compressor"] = {
                    "role": "autotune of activation calibration and symmetry on the torch model (PT2E), "
                    "scored by held-out PSNR; the winner sets the ONNX recipe",
                    **found.to_dict(),
                }
                log("neural-compressor: " + ", ".join(
                    f"{'sym' if t['act_sym'] else 'asym'}/{t['act_algo']} {t['psnr_db']} dB" for t in found.trials
                ) + f" -> {ort_method}, {'symmetric' if act_symmetric else 'asymmetric'} activations")

            def build_onnx(excluded: list[str], weight_type: str) -> Path:
                path = work / f"onnx_int8_{next(counter)}.onnx"
                ort_int8.quantize_qdq(fp32_onnx, path, calib, ort_method, excluded, act_symmetric, weight_type)
                return path

            # The weight type by measurement (see ort_int8.WEIGHT_TYPES): full quantization
            # with each, the better one carries on into the fallback rounds.
            weight_trials = {w: build_onnx([], w) for w in ort_int8.WEIGHT_TYPES}
            weight_psnr = {w: _psnr(evaluate(p)) for w, p in weight_trials.items()}
            weight_type = max(weight_psnr, key=lambda w: weight_psnr[w])
            weight_reason = "best held-out PSNR of " + ", ".join(f"{w} {v:.1f} dB" for w, v in weight_psnr.items())
            log(f"onnxruntime int8 weights: {weight_reason} -> {weight_type}")

            def build_onnx_weights(excluded: list[str]) -> Path:
                return weight_trials[weight_type] if not excluded else build_onnx(excluded, weight_type)

            best, kept, steps = _fallback(build_onnx_weights, evaluate, ranking, target_psnr, log, "onnxruntime")
            final = tmp / "model_int8.onnx"
            best.replace(final)
            add(final, "onnxruntime", "int8", require_int8(final))
            recipe["onnx_int8"] = {
                "method": ort_method,
                "per_channel": True,
                "weights": f"{weight_type} symmetric",
                "weight_type": weight_type,
                "weight_reason": weight_reason,
                "activations": "int8 symmetric" if act_symmetric else "uint8 asymmetric",
                "act_symmetric": act_symmetric,
                "nodes_to_exclude": kept,
                "fallback": steps,
            }

            int8_source = work / "int8-source.mnn"  # the quantizer keeps its source's bizCode
            convert_onnx(fp32_onnx, int8_source, biz_code=biz_code(header, "int8"))
            calib_dir = work / "mnn_calib"
            mnn_int8.write_calibration_folder(calib, calib_dir, [o for o in spec.output_shapes(1)])
            mnn_ranking = [to_mnn[n] for n in ranking]
            method_of: dict[Path, str] = {}
            built: dict[tuple[str, tuple[str, ...]], Path] = {}

            def build_with(method: str, skip: list[str]) -> Path:
                # the auto-method trials already built each full quantization: reuse them
                key = (method, tuple(skip))
                if key not in built:
                    path = work / f"mnn_int8_{next(counter)}.mnn"
                    method_of[path] = mnn_int8.quantize(int8_source, path, calib_dir, len(calib), method, skip)
                    built[key] = path
                return built[key]

            if mnn_method == "auto":
                tried = {}
                for m in mnn_int8.MNN_METHODS:
                    path = build_with(m, [])
                    tried[method_of[path]] = _psnr(evaluate(path))
                full_method = max(tried, key=lambda k: tried[k])
                reason = "best held-out PSNR of " + ", ".join(f"{k} {v:.1f} dB" for k, v in tried.items())
                # MNN 3.6.1's EMA path quantizes every layer whatever skip_quant_op_names
                # says (checked structurally), so layers can only be kept in float with
                # the best of the methods that honour the list.
                honouring = [m for m in mnn_int8.SKIP_HONOURING if m in tried]
                skip_method = max(honouring, key=lambda k: tried[k]) if honouring else full_method
                log(f"mnn int8 method: {reason} -> {full_method}" + (f" (fallback rounds: {skip_method})" if skip_method != full_method else ""))
            else:
                full_method = skip_method = mnn_method
                reason = "chosen by the user (--mnn-method)"

            best, kept_mnn, steps_mnn = _fallback(
                lambda skip: build_with(skip_method if skip else full_method, skip), evaluate, mnn_ranking, target_psnr, log, "mnn"
            )
            final_method = method_of[best]
            final = tmp / "model_int8.mnn"
            best.replace(final)
            add(final, "mnn", "int8", require_int8(final))
            recipe["mnn_int8"] = {
                "method": final_method,
                "reason": reason if final_method == full_method else f"{reason}; layers kept in float need {final_method}",
                "weight_method": "MAX_ABS",
                "skip_quant_op_names": kept_mnn,
                "fallback_method": skip_method,
                "fallback": steps_mnn,
            }
            shutil.rmtree(work)

        fp32_sizes = {v.engine: v.size_bytes for v in variants if v.precision == "fp32"}
        report = {
            "model": spec.to_dict(),
            "reference": "torch FP32 on evaluation frames (never used for calibration)",
            "target_psnr_db": target_psnr,
            "variants": [
                {**v.to_dict(), "size_vs_fp32": round(v.size_bytes / fp32_sizes[v.engine], 3)} for v in variants
            ],
            "recipe": recipe,
        }
        (tmp / RECIPE_FILE).write_text(json.dumps(recipe, indent=2) + "\n")
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (tmp / "report.md").write_text(_markdown(report))
    return report


def _fmt_db(v: Any) -> str:
    return "inf" if v == "inf" else f"{float(v):.2f}"


def variant_table(report: dict[str, Any]) -> str:
    rows = [
        "| file | engine | precision | size | vs FP32 size | PSNR | SSIM | mouth-PSNR | max abs |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for v in report["variants"]:
        q = v["quality"]
        rows.append(
            f"| {v['file']} | {v['engine']} | {v['precision']} | {human_size(v['size_bytes'])} | {v['size_vs_fp32']:.2f}x | "
            f"{_fmt_db(q['psnr'])} dB | {float(q['ssim']):.4f} | {_fmt_db(q['mouth_psnr'])} dB | {float(q['max_abs']):.2e} |"
        )
    return "\n".join(rows)


def _markdown(report: dict[str, Any]) -> str:
    r = report["recipe"]
    lines = [
        "# dhm quantize report",
        "",
        f"Against {report['reference']}; calibration on held-out frames {r['calibration']['frames'][:3]}… "
        f"({len(r['calibration']['frames'])} frames), evaluation on {len(r['evaluation']['frames'])} other held-out frames.",
        "",
        variant_table(report),
        "",
    ]
    for key, title in (("onnx_int8", "ONNX INT8 (onnxruntime QDQ)"), ("mnn_int8", "MNN INT8")):
        if key not in r:
            continue
        q = r[key]
        kept = q.get("nodes_to_exclude", q.get("skip_quant_op_names", []))
        lines += [f"## {title}", "", f"- method: {q['method']}" + (f" ({q['reason']})" if "reason" in q else ""),
                  *([f"- weights: {q['weight_type']} ({q['weight_reason']})"] if "weight_reason" in q else []),
                  f"- layers kept in float: {len(kept)}" + (f": {', '.join(kept)}" if kept else ""), "",
                  "| round | layers in float | PSNR vs FP32 | size | gain vs best |", "|---:|---:|---:|---:|---:|"]
        for i, s in enumerate(q["fallback"]):
            gain = "-" if s["gain_db"] is None else f"{s['gain_db']:+.2f} dB"
            lines.append(f"| {i} | {s.get('layers_in_float', 0)} | {_fmt_db(s['psnr'])} dB | {human_size(s['size_bytes'])} | {gain} |")
        lines.append("")
    return "\n".join(lines)
