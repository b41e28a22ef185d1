"""`dhm export`: checkpoint -> validated ONNX and MNN artefacts plus manifest.json.

Every artefact is run by its own engine on the same inputs as the torch FP32 model and
must meet its variant's tolerance, or the export fails. Everything is written into a
temporary folder beside OUT and moved into place only when all artefacts passed.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dhm.errors import ConversionError, ParityError, SpecError
from dhm.io import atomic_dir, check_output, human_size, read_json
from dhm.manifest import MANIFEST_FILE, biz_code, build_header, engine_versions, json_number, validate
from dhm.metrics import max_abs_diff, psnr
from dhm.spec import GeneratorSpec

TARGETS = ("onnx", "mnn")
VARIANTS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Tolerance:
    """What an artefact must meet against torch FP32 on the validation inputs."""

    max_abs: float | None = None
    min_psnr: float | None = None

    def check(self, max_abs: float, psnr_db: float) -> bool:
        ok = True
        if self.max_abs is not None:
            ok &= max_abs <= self.max_abs
        if self.min_psnr is not None:
            ok &= psnr_db >= self.min_psnr
        return ok

    def to_dict(self) -> dict[str, float]:
        out = {}
        if self.max_abs is not None:
            out["max_abs"] = self.max_abs
        if self.min_psnr is not None:
            out["min_psnr_db"] = self.min_psnr
        return out

    def describe(self) -> str:
        parts = []
        if self.max_abs is not None:
            parts.append(f"max abs <= {self.max_abs:g}")
        if self.min_psnr is not None:
            parts.append(f"PSNR >= {self.min_psnr:.1f} dB")
        return " and ".join(parts)


TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_abs=1e-4),
    # FP16 weights round each weight to 11 significant bits; 45 dB is far below what a
    # correct conversion gives (about 60 dB here) and far above a broken one.
    "fp16": Tolerance(max_abs=2e-2, min_psnr=45.0),
}


@dataclass
class Artifact:
    file: str
    format: str
    engine: str
    variant: str
    size_bytes: int
    sha256: str
    parity: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "format": self.format,
            "engine": self.engine,
            "variant": self.variant,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            **self.extra,
            "parity": self.parity,
        }


@dataclass
class ExportResult:
    out_dir: Path
    manifest: dict[str, Any]
    artifacts: list[Artifact]
    notes: list[str]

    def table(self) -> str:
        rows = [
            "| artefact | engine | variant | size | max abs diff | PSNR vs torch FP32 | tolerance |",
            "|---|---|---|---:|---:|---:|---|",
        ]
        for a in self.artifacts:
            p = a.parity
            ps = p["psnr"] if isinstance(p["psnr"], str) else f"{p['psnr']:.1f} dB"
            tol = Tolerance(**{k.replace("min_psnr_db", "min_psnr"): v for k, v in p["tolerance"].items()}).describe() or "-"
            rows.append(
                f"| {a.file} | {a.engine} | {a.variant} | {human_size(a.size_bytes)} | {p['max_abs']:.2e} | {ps} | {tol} |"
            )
        return "\n".join(rows)


def parse_list(text: str | Sequence[str], allowed: Sequence[str], what: str) -> list[str]:
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if "all" in items:
        return list(allowed)
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise SpecError(f"{what} {bad[0] if bad else '(none)'!r}: expected a comma-separated list of {', '.join(allowed)}")
    return [a for a in allowed if a in items]


def _parity(outputs: list[np.ndarray], reference: list[np.ndarray], source: str, tol: Tolerance, label: str) -> dict[str, Any]:
    out = np.concatenate(outputs)
    ref = np.concatenate(reference)
    if not np.isfinite(out).all():
        raise ParityError(f"{label}: produced non-finite outputs")
    diff = max_abs_diff(out, ref)
    db = psnr(out, ref)
    passed = tol.check(diff, db)
    if not passed:
        raise ParityError(
            f"{label}: does not match torch FP32 (max abs {diff:.2e}, PSNR {db:.1f} dB; needs {tol.describe()})"
        )
    return {
        "reference": "torch-fp32",
        "inputs": source,
        "frames": len(outputs),
        "max_abs": diff,
        "psnr": json_number(db),
        "tolerance": tol.to_dict(),
        "passed": True,
    }


def _run_engine(path: Path, inputs: list[dict[str, np.ndarray]], precision: str = "fp32") -> list[np.ndarray]:
    from dhm.runtime_py.backends import load

    engine = load(path, threads=1, precision=precision, check_manifest=False)
    name = engine.outputs[0].name
    return [engine.run(x)[name] for x in inputs]


def export_model(
    model_path: str | Path,
    out: str | Path,
    targets: Sequence[str] = TARGETS,
    variants: Sequence[str] = ("fp32",),
    data: str | Path | None = None,
    frames: int = 8,
    force: bool = False,
    opset: int | None = None,
    log: Callable[[str], None] = lambda _msg: None,
    crop_interpolation: str | None = None,
) -> ExportResult:
    import torch

    from dhm.data.inputs import heldout_inputs, random_inputs
    from dhm.metrics import count_macs, count_params
    from dhm.models.checkpoint import file_sha256, load_checkpoint
    from dhm.export.onnx_export import DEFAULT_OPSET, export_onnx

    out = Path(out)
    targets = parse_list(targets, TARGETS, "target")
    variants = parse_list(variants, VARIANTS, "variant")
    recipe = read_recipe(model_path) if Path(model_path).is_dir() else None
    if "int8" in variants and recipe is None:
        raise SpecError(
            "the int8 variant is built from a `dhm quantize` output (its recipe and calibration set); "
            "export fp32/fp16 here, or pass a quantize output folder as MODEL"
        )
    if not 1 <= frames <= 1000:
        raise SpecError(f"--frames {frames}: expected 1 … 1000 validation frames")
    check_output(out, kind="dir", command="export", force=force, inputs=[model_path, data])

    quant_dir = Path(model_path) if recipe is not None else None
    if quant_dir is not None:
        model_path = quant_dir / recipe["source"]["file"]
        if file_sha256(model_path) != recipe["source"]["sha256"]:
            raise SpecError(f"{model_path}: differs from the checkpoint the recipe in {quant_dir} was made for")
        # the crop filter the model was quantized with (an override there is not in model.pt)
        recorded = GeneratorSpec.from_dict(recipe["spec"]).crop_interpolation
        if crop_interpolation is not None and crop_interpolation != recorded:
            raise SpecError(f"{quant_dir}: was quantized for {recorded} crops; --crop-interpolation {crop_interpolation} contradicts it")
        crop_interpolation = recorded
    ckpt = load_checkpoint(model_path, crop_interpolation=crop_interpolation)
    spec = ckpt.spec
    log(f"model: {spec.describe()} ({ckpt.form}): {spec.describe_conventions()}"
        + (f", quantize recipe from {quant_dir}" if quant_dir else ""))
    # MobileOne: the reparameterized form is exported, checked against the multi-branch one.
    model = ckpt.inference_model()
    if data:
        check = heldout_inputs(data, spec, "eval", frames)
    elif quant_dir is not None:
        from dhm.quantize.calib import load_inputs

        check = load_inputs(quant_dir / recipe["evaluation"]["file"])
    else:
        check = random_inputs(spec, n=min(frames, 4))
    log(f"validation inputs: {len(check)} frames from {check.source}")
    with torch.inference_mode():
        reference = [ckpt.model(*(torch.from_numpy(x[k]) for k in x)).numpy() for x in check.inputs]

    shapes = spec.input_shapes(1)
    macs = count_macs(model, *(torch.zeros(s) for s in shapes.values()))
    header = build_header(
        spec,
        macs=macs,
        params=count_params(model),
        source={"file": Path(model_path).name, "sha256": file_sha256(model_path), "form": ckpt.form},
        versions=engine_versions(),
        frontend=ckpt.metadata.get("audio_frontend"),
        created=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    )

    artifacts: list[Artifact] = []
    notes: list[str] = []
    with atomic_dir(out, replace=True, command="export") as tmp:
        onnx_fp32 = tmp / "model_fp32.onnx"
        if model is not ckpt.model:
            with torch.inference_mode():
                reparam = [model(*(torch.from_numpy(x[k]) for k in x)).numpy() for x in check.inputs]
            diff = max(float(np.abs(a - b).max()) for a, b in zip(reparam, reference))
            if diff > TOLERANCES["fp32"].max_abs:
                raise ParityError(f"reparameterized model differs from the multi-branch one by {diff:.2e}")
            notes.append(f"MobileOne reparameterized ({count_params(ckpt.model):,} -> {count_params(model):,} parameters); "
                         f"max abs vs the multi-branch model {diff:.1e}")
            log(notes[-1])
        exported = export_onnx(model, spec, onnx_fp32, check.inputs, opset=opset or DEFAULT_OPSET)
        notes.append(f"onnxsim: {exported.simplify_note}")
        log(f"onnx: opset {exported.opset}, {exported.nodes} nodes, simplified: {exported.simplified}")

        def add(path: Path, fmt: str, engine: str, variant: str, outputs: list[np.ndarray], **extra: Any) -> None:
            tol = TOLERANCES[variant] if variant in TOLERANCES else int8_tolerance(recipe, engine)
            parity = _parity(outputs, reference, check.source, tol, f"{path.name} ({engine} {variant})")
            artifacts.append(
                Artifact(
                    file=path.name,
                    format=fmt,
                    engine=engine,
                    variant=variant,
                    size_bytes=path.stat().st_size,
                    sha256=file_sha256(path),
                    parity=parity,
                    extra=extra,
                )
            )
            log(f"{path.name}: max abs {parity['max_abs']:.2e}, PSNR {parity['psnr'] if isinstance(parity['psnr'], str) else round(parity['psnr'], 1)}")

        if "onnx" in targets:
            for variant in variants:
                if variant == "fp32":
                    add(onnx_fp32, "onnx", "onnxruntime", "fp32", _run_engine(onnx_fp32, check.inputs),
                        opset=exported.opset, simplified=exported.simplified)
                elif variant == "fp16":
                    from dhm.export.onnx_fp16 import convert_to_fp16

                    path = tmp / "model_fp16.onnx"
                    convert_to_fp16(onnx_fp32, path)
                    add(path, "onnx", "onnxruntime", "fp16", _run_engine(path, check.inputs),
                        opset=exported.opset, simplified=exported.simplified)
                elif variant == "int8":
                    path = tmp / "model_int8.onnx"
                    structure = rebuild_onnx_int8(quant_dir, recipe, onnx_fp32, path)
                    add(path, "onnx", "onnxruntime", "int8", _run_engine(path, check.inputs), structure=structure)
        if "mnn" in targets:
            from dhm.export.mnn_tools import convert_onnx

            for variant in variants:
                path = tmp / f"model_{variant}.mnn"
                if variant == "int8":
                    # the quantizer keeps its source's bizCode: give it the int8 one
                    source = tmp / ".int8-source.mnn"
                    convert_onnx(onnx_fp32, source, biz_code=biz_code(header, "int8"))
                    structure = rebuild_mnn_int8(quant_dir, recipe, source, path, spec)
                    source.unlink()
                    add(path, "mnn", "mnn", "int8", _run_engine(path, check.inputs), structure=structure)
                    continue
                convert_onnx(onnx_fp32, path, fp16=variant == "fp16", biz_code=biz_code(header, variant))
                add(path, "mnn", "mnn", variant, _run_engine(path, check.inputs))
        if "onnx" not in targets:
            onnx_fp32.unlink()

        manifest = {**header, "artifacts": [a.to_dict() for a in artifacts]}
        validate(manifest, "generated manifest")
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        result = ExportResult(out_dir=out, manifest=manifest, artifacts=artifacts, notes=notes)
        (tmp / "report.md").write_text(_report(result, spec.describe(), check.source))
    return result


def read_recipe(folder: str | Path) -> dict[str, Any]:
    from dhm.quantize.api import RECIPE_FILE, RECIPE_SCHEMA

    path = Path(folder) / RECIPE_FILE
    if not path.is_file():
        raise SpecError(f"{folder}: a folder, but not a `dhm quantize` output (no {RECIPE_FILE})")
    recipe = read_json(path, "quantize recipe")
    if not isinstance(recipe, dict) or recipe.get("schema") != RECIPE_SCHEMA:
        found = recipe.get("schema") if isinstance(recipe, dict) else type(recipe).__name__
        raise SpecError(f"{path}: recipe schema {found!r}, expected {RECIPE_SCHEMA!r}")
    problem = recipe_problem(recipe)
    if problem:
        raise SpecError(f"{path}: not a usable recipe ({problem})")
    return recipe


def recipe_problem(recipe: dict[str, Any]) -> str | None:
    """What is missing or mistyped in a recipe (the parts export reads), or None."""

    def is_str_list(v: Any) -> bool:
        return isinstance(v, list) and all(isinstance(x, str) for x in v)

    checks: list[tuple[str, Any, Any]] = [
        ("source.file", ("source", "file"), lambda v: isinstance(v, str) and "/" not in v and v not in ("", ".", "..")),
        ("source.sha256", ("source", "sha256"), lambda v: isinstance(v, str) and len(v) == 64),
        ("spec", ("spec",), lambda v: isinstance(v, dict)),
        ("calibration.file", ("calibration", "file"), lambda v: isinstance(v, str) and "/" not in v),
        ("evaluation.file", ("evaluation", "file"), lambda v: isinstance(v, str) and "/" not in v),
    ]
    if "onnx_int8" in recipe:
        checks += [("onnx_int8.method", ("onnx_int8", "method"), lambda v: isinstance(v, str)),
                   ("onnx_int8.nodes_to_exclude", ("onnx_int8", "nodes_to_exclude"), is_str_list),
                   ("onnx_int8.fallback", ("onnx_int8", "fallback"), lambda v: isinstance(v, list))]
    if "mnn_int8" in recipe:
        checks += [("mnn_int8.method", ("mnn_int8", "method"), lambda v: isinstance(v, str)),
                   ("mnn_int8.skip_quant_op_names", ("mnn_int8", "skip_quant_op_names"), is_str_list),
                   ("mnn_int8.fallback", ("mnn_int8", "fallback"), lambda v: isinstance(v, list))]
    for name, keys, ok in checks:
        value: Any = recipe
        for k in keys:
            value = value.get(k) if isinstance(value, dict) else None
        if value is None:
            return f"missing {name}"
        if not ok(value):
            return f"{name} has the wrong type or value"
    try:
        GeneratorSpec.from_dict(recipe["spec"])
    except SpecError as exc:
        return f"spec: {exc}"
    return None


def int8_tolerance(recipe: dict[str, Any] | None, engine: str) -> Tolerance:
    """A rebuilt INT8 file must come within 1 dB of what `dhm quantize` measured."""
    key = "onnx_int8" if engine == "onnxruntime" else "mnn_int8"
    steps = (recipe or {}).get(key, {}).get("fallback", [])
    kept = [s for s in steps if s.get("gain_db") is None or s["gain_db"] >= 0.1]  # the rounds that became "best"
    measured = kept[-1]["psnr"] if kept else 30.0
    measured = 99.0 if measured == "inf" else float(measured)
    return Tolerance(min_psnr=min(measured, 60.0) - 1.0)


def rebuild_onnx_int8(quant_dir: Path, recipe: dict[str, Any], fp32_onnx: Path, dst: Path) -> dict[str, Any]:
    from dhm.quantize import ort_int8
    from dhm.quantize.calib import load_inputs
    from dhm.quantize.checks import require_int8

    q = recipe["onnx_int8"]
    calib = load_inputs(quant_dir / recipe["calibration"]["file"])
    ort_int8.quantize_qdq(fp32_onnx, dst, calib, q["method"], q["nodes_to_exclude"], q.get("act_symmetric", False),
                          q.get("weight_type", "int8"))
    return require_int8(dst)


def rebuild_mnn_int8(quant_dir: Path, recipe: dict[str, Any], fp32_mnn: Path, dst: Path, spec) -> dict[str, Any]:
    import tempfile

    from dhm.quantize import mnn_int8
    from dhm.quantize.calib import load_inputs
    from dhm.quantize.checks import require_int8

    q = recipe["mnn_int8"]
    calib = load_inputs(quant_dir / recipe["calibration"]["file"])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "calib"
        mnn_int8.write_calibration_folder(calib, folder, list(spec.output_shapes(1)))
        mnn_int8.quantize(fp32_mnn, dst, folder, len(calib), q["method"], q["skip_quant_op_names"])
    return require_int8(dst)


def _report(result: ExportResult, model: str, source: str) -> str:
    lines = [
        "# dhm export report",
        "",
        f"- model: {model}",
        f"- MACs per frame: {result.manifest['generator']['macs']:,}; parameters: {result.manifest['generator']['params']:,}",
        f"- validation inputs: {source} ({result.artifacts[0].parity['frames'] if result.artifacts else 0} frames), "
        "reference: the torch FP32 model",
        "",
        result.table(),
        "",
        *[f"- {n}" for n in result.notes],
        "",
    ]
    return "\n".join(lines)


__all__ = ["ConversionError", "ExportResult", "TOLERANCES", "export_model"]
