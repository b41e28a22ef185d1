"""`dhm export`: checkpoint -> validated ONNX and MNN artefacts plus manifest.json.

torch -> ONNX (checked, simplified only if it still matches), then every requested
variant is built from that graph and validated by the engine layer
(`dhm.runtime_py.engines.build_and_validate`): run by its own engine on the same inputs as the torch
FP32 model, it must meet its variant's tolerance, or the export fails. INT8 files are
rebuilt from a `dhm quantize` recipe's serialized configs. Everything is written into a
temporary folder beside OUT and moved into place only when all artefacts passed.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dhm.runtime_py.engines import (
    TARGETS,
    TOLERANCES,
    Artifact,
    BuildConfig,
    Fp16,
    Fp32,
    Tolerance,
    build_and_validate,
    get,
    mirror_of,
    versions,
)
from dhm.errors import ConversionError, ParityError, SpecError
from dhm.export.config import ExportConfig
from dhm.io import atomic_dir, check_output, human_size
from dhm.manifest import MANIFEST_FILE, build_header, format_figure, validate
from dhm.quantize.recipe import INT8_SECTIONS, int8_config, measured_psnr, read_recipe
from dhm.spec import GeneratorSpec

VARIANTS = ("fp32", "fp16", "int8")


@dataclass
class ExportResult:
    out_dir: Path
    manifest: dict[str, Any]
    artifacts: list[Artifact]
    notes: list[str]

    def table(self) -> str:
        rows = [
            "| artefact | engine | variant | size | max abs diff | PSNR vs torch FP32 | PSNR on ARM | lip-box PSNR | "
            "tolerance |",
            "|---|---|---|---:|---:|---:|---:|---:|---|",
        ]
        for a in self.artifacts:
            p = a.parity or {}
            ps = format_figure(p["psnr"], ".1f", " dB")
            arm = format_figure((p.get("arm") or {}).get("psnr"), ".1f", " dB")
            lip_text = format_figure(a.quality.get("lip_psnr"), ".1f", " dB")
            tol = Tolerance.from_dict(p["tolerance"]).describe() or "-"
            rows.append(
                f"| {a.file} | {a.engine} | {a.variant} | {human_size(a.size_bytes)} | {p['max_abs']:.2e} | {ps} | "
                f"{arm} | {lip_text} | {tol} |"
            )
        return "\n".join(rows)


def artifact_record(a: Artifact, extra: dict[str, Any]) -> dict[str, Any]:
    """An artefact as the manifest lists it."""
    return {
        "file": a.file,
        "format": a.format,
        "engine": a.engine,
        "variant": a.variant,
        "size_bytes": a.size_bytes,
        "sha256": a.sha256,
        **extra,
        **({"structure": a.structure} if a.structure else {}),
        "parity": a.parity,
    }


def parse_list(text: str | Sequence[str], allowed: Sequence[str], what: str) -> list[str]:
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if "all" in items:
        return list(allowed)
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise SpecError(
            f"{what} {bad[0] if bad else '(none)'!r}: expected a comma-separated list of {', '.join(allowed)}"
        )
    return [a for a in allowed if a in items]


def int8_tolerance(recipe: dict[str, Any] | None, engine: str) -> Tolerance:
    """A rebuilt INT8 file must come within 1 dB of what `dhm quantize` measured."""
    section = next(s for s, e in INT8_SECTIONS.items() if e == engine)
    measured = measured_psnr(recipe or {}, section)
    measured = 30.0 if measured is None else measured
    return Tolerance(min_psnr=min(measured, 60.0) - 1.0)


def _plan(targets: list[str], variants: list[str], recipe: dict[str, Any] | None) -> list[tuple[Any, BuildConfig]]:
    """(backend, config) for every artefact asked for: the one place engines are chosen."""
    plan = []
    for target in targets:
        backend = get(TARGETS[target])
        for variant in variants:
            if variant == "int8":
                section = next(s for s, e in INT8_SECTIONS.items() if e == backend.name)
                if recipe is None or section not in recipe:
                    raise SpecError(f"the quantize recipe has no {backend.name} INT8 build ({section})")
                plan.append((backend, int8_config(recipe, section)))
            else:
                plan.append((backend, Fp32() if variant == "fp32" else Fp16()))
    return plan


def export_model(
    model_path: str | Path,
    out: str | Path,
    config: ExportConfig | None = None,
    *,
    force: bool = False,
    log: Callable[[str], None] = lambda _msg: None,
    crop_interpolation: str | None = None,
) -> ExportResult:
    """The recipe: 1 check the request, 2 resolve the checkpoint (a quantize folder's source),
    3 the validation inputs and reference outputs, 4 torch -> ONNX -> every variant, built and
    validated, 5 the audio model, 6 the manifest and report, all written atomically to OUT.
    `audio_model`: an audio student (`dhm distill-audio`) to ship as the audio model; without
    it, a model trained on dhm's own features ships that front end."""
    from dhm.data.inputs import heldout_inputs, load_inputs, random_inputs

    c = config or ExportConfig()
    data, frames, opset, audio_model = c.data, c.frames, c.opset, c.audio_model
    out = Path(out)
    targets = parse_list(c.targets, tuple(TARGETS), "target")
    variants = parse_list(c.variants, VARIANTS, "variant")
    recipe = read_recipe(model_path) if Path(model_path).is_dir() else None
    if "int8" in variants and recipe is None:
        raise SpecError(
            "the int8 variant is built from a `dhm quantize` output (its recipe and calibration set); "
            "export fp32/fp16 here, or pass a quantize output folder as MODEL"
        )
    if not 1 <= frames <= 1000:
        raise SpecError(f"--frames {frames}: expected 1 … 1000 validation frames")
    check_output(out, kind="dir", command="export", force=force, inputs=[model_path, data, audio_model])
    plan = _plan(targets, variants, recipe)
    src = _resolve_source(Path(model_path), recipe, variants, crop_interpolation, audio_model, data)
    spec, quant_dir = src.ckpt.spec, src.quant_dir
    log(
        f"model: {spec.describe()} ({src.ckpt.form}): {spec.describe_conventions()}"
        + (f", quantize recipe from {quant_dir}" if quant_dir else "")
    )
    if data:
        check = heldout_inputs(data, spec, "eval", frames)
    elif quant_dir is not None:
        check = load_inputs(quant_dir / recipe["evaluation"]["file"])
    else:
        check = random_inputs(spec, n=min(frames, 4))
    log(f"validation inputs: {len(check)} frames from {check.source}")
    with atomic_dir(out, replace=True, command="export") as tmp:
        built = _build_variants(src, plan, recipe, check, tmp, targets, variants, opset, log)
        manifest = {**built.header, "artifacts": built.records}
        frame_check = _frame_check(built.model, spec, data, check) if src.audio is not None and data else None
        audio_section = _audio_model(built.header, spec, tmp, targets, data, log, src.audio, variants, frame_check)
        if audio_section is not None:
            manifest["audio_model"] = audio_section
            built.notes.append(_audio_note(audio_section, spec))
            from dhm.export.vad import export_vad  # PCM in: the detector that rests the mouth ships with it

            manifest["vad"] = export_vad(tmp, targets, log)
            files = ", ".join(a["file"] for a in manifest["vad"]["artifacts"])
            worst = max(a["parity"]["max_abs_prob"] for a in manifest["vad"]["artifacts"])
            built.notes.append(
                f"voice detector: {files} (silero-vad {manifest['vad']['version']}, 32 ms hops; speech probabilities "
                f"max abs {worst:.1e} against silero's own model, the same decisions): the mouth rests in silence"
            )
        else:
            built.notes.append(
                f"no audio model: this model listens to {spec.mode} features computed off the phone "
                "(dhm exports the front end of models trained on its own features, or an audio student given with "
                "--audio-model); runtimes take feature files"
            )
        validate(manifest, "generated manifest")
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        result = ExportResult(out_dir=out, manifest=manifest, artifacts=built.artifacts, notes=built.notes)
        (tmp / "report.md").write_text(_report(result, spec.describe(), check.source))
    for a in built.artifacts:  # the files now live in OUT
        a.path = out / a.file
    return result


@dataclass
class _Source:
    """What is exported: the checkpoint (a quantize folder's source, checked against its
    recipe), the folder it came from, its calibration set and the audio student to ship."""

    path: Path
    ckpt: Any
    quant_dir: Path | None
    calib: Any
    audio: Any


def _resolve_source(
    model_path: Path, recipe: dict[str, Any] | None, variants: Sequence[str], crop_interpolation: str | None,
    audio_model: str | Path | None, data: str | Path | None,
) -> _Source:  # fmt: skip
    from dhm.data.inputs import load_inputs
    from dhm.models.checkpoint import file_sha256, load_checkpoint

    quant_dir = model_path if recipe is not None else None
    calib = None
    if quant_dir is not None:
        model_path = quant_dir / recipe["source"]["file"]
        if not model_path.is_file() or file_sha256(model_path) != recipe["source"]["sha256"]:
            raise SpecError(f"{model_path}: differs from the checkpoint the recipe in {quant_dir} was made for")
        # the crop filter the model was quantized with (an override there is not in model.pt)
        recorded = GeneratorSpec.from_dict(recipe["spec"]).crop_interpolation
        if crop_interpolation is not None and crop_interpolation != recorded:
            raise SpecError(
                f"{quant_dir}: was quantized for {recorded} crops; --crop-interpolation {crop_interpolation} "
                "contradicts it"
            )
        crop_interpolation = recorded
        if "int8" in variants:
            calib = load_inputs(quant_dir / recipe["calibration"]["file"])
    ckpt = load_checkpoint(model_path, crop_interpolation=crop_interpolation)
    audio_source = None
    if audio_model is not None:  # checked before any work, like the generator
        from .audio import student_source

        audio_source = student_source(Path(audio_model), ckpt.spec.mode)
        if "int8" in variants and data is None:
            raise SpecError("an INT8 audio model is calibrated on the dataset's audio: pass --data with --audio-model")
    return _Source(model_path, ckpt, quant_dir, calib, audio_source)


@dataclass
class _Built:
    model: Any  # the exported (inference) form
    header: dict[str, Any]
    artifacts: list[Artifact]
    records: list[dict[str, Any]]
    notes: list[str]


def _build_variants(
    src: _Source, plan: list, recipe: dict[str, Any] | None, check: Any, tmp: Path, targets: Sequence[str],
    variants: Sequence[str], opset: int | None, log: Callable[[str], None],
) -> _Built:  # fmt: skip
    """torch -> ONNX once, then every planned variant built from it and validated against the
    checkpoint's own outputs on `check` (MobileOne: the reparameterized form, checked first)."""
    import torch

    from dhm.metrics import count_macs, count_params
    from dhm.models.checkpoint import file_sha256
    from dhm.runtime_py.engines.torch_onnx import DEFAULT_OPSET, export_onnx

    ckpt, spec = src.ckpt, src.ckpt.spec
    model = ckpt.inference_model()
    with torch.inference_mode():
        reference = [ckpt.model(*(torch.from_numpy(x[k]) for k in x)).numpy() for x in check.inputs]
    header = build_header(
        spec,
        macs=count_macs(model, *(torch.zeros(s) for s in spec.input_shapes(1).values())),
        params=count_params(model),
        source={"file": src.path.name, "sha256": file_sha256(src.path), "form": ckpt.form},
        versions=versions(),
        frontend=ckpt.metadata.get("audio_frontend"),
        created=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    )
    built = _Built(model, header, [], [], [])
    onnx_fp32 = tmp / "model_fp32.onnx" if "onnx" in targets and "fp32" in variants else tmp / ".model_fp32.onnx"
    if model is not ckpt.model:
        with torch.inference_mode():
            reparam = [model(*(torch.from_numpy(x[k]) for k in x)).numpy() for x in check.inputs]
        diff = max(float(np.abs(a - b).max()) for a, b in zip(reparam, reference, strict=True))
        if diff > TOLERANCES["fp32"].max_abs:
            raise ParityError(f"reparameterized model differs from the multi-branch one by {diff:.2e}")
        built.notes.append(
            f"MobileOne reparameterized ({count_params(ckpt.model):,} -> {count_params(model):,} parameters); "
            f"max abs vs the multi-branch model {diff:.1e}"
        )
        log(built.notes[-1])
    exported = export_onnx(model, spec, onnx_fp32, check.inputs, opset=opset or DEFAULT_OPSET)
    built.notes.append(f"onnxsim: {exported.simplify_note}")
    log(f"onnx: opset {exported.opset}, {exported.nodes} nodes, simplified: {exported.simplified}")
    for backend, config in plan:
        dst = tmp / f"model_{config.variant}.{backend.format}"
        tol = TOLERANCES.get(config.variant) or int8_tolerance(recipe, backend.name)
        art = build_and_validate(backend, config, onnx_fp32, dst, check, reference, tol, calib=src.calib, header=header)
        built.artifacts.append(art)
        onnx_info = (
            {"opset": exported.opset, "simplified": exported.simplified}
            if backend.format == "onnx" and config.variant != "int8"
            else {}
        )
        built.records.append(artifact_record(art, onnx_info))
        p = art.parity or {}
        log(f"{art.file}: max abs {p['max_abs']:.2e}, PSNR {format_figure(p['psnr'], '.1f', ' dB')}")
    if onnx_fp32.name.startswith("."):
        onnx_fp32.unlink()
    built.notes.extend(_arm_note(plan))
    return built


def _arm_note(plan: list) -> list[str]:
    mirror = next((m for m in (mirror_of(b.name) for b, _ in plan) if m is not None), None)
    if mirror is None:
        return []
    why_not = mirror.unavailable()
    return [
        f"ARM numerics: every MNN file also ran on {mirror.kernels}; INT8 must meet its tolerance there too"
        if why_not is None
        else f"ARM numerics not measured: {why_not}"
    ]


def _audio_model(
    header: dict[str, Any],
    spec: GeneratorSpec,
    tmp: Path,
    targets: list[str],
    data: str | Path | None,
    log,
    source=None,
    variants: Sequence[str] = ("fp32",),
    frame_check=None,
) -> dict[str, Any] | None:
    """audio_fp32.onnx/.mnn: the given audio student, or the front end when the model was
    trained on dhm's own features."""
    from dhm.audio.frontend import FRONTEND_ID

    from .audio import export_audio_model, logmel_source

    if source is None:
        if header["audio"].get("frontend") != FRONTEND_ID:
            return None
        source = logmel_source(spec.mode)
    wav = Path(data) / "aud.wav" if data else None
    formats = [get(TARGETS[t]).format for t in targets]
    return export_audio_model(source, tmp, formats, wav=wav, log=log, variants=tuple(variants), frames=frame_check)


def _frame_check(model, spec: GeneratorSpec, data: str | Path, check):
    """The generator (torch FP32) on the held-out check frames, driven by any per-frame
    features of the dataset's audio: how an audio variant's features look as frames."""
    import torch

    from dhm.audio.frontend import SAMPLE_RATE, read_pcm
    from dhm.data.preprocess import audio_window
    from dhm.spec import AUDIO_MODES, FACE_INPUT

    from .audio import FrameCheck

    pcm = read_pcm(Path(data) / "aud.wav")[0].astype(np.float32)
    conv = spec.conventions

    def render(feats: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return np.concatenate(
                [
                    model(torch.from_numpy(x[FACE_INPUT]), torch.from_numpy(audio_window(feats, i, conv)[None])).numpy()
                    for i, x in zip(check.frames, check.inputs, strict=True)
                ]
            )

    # the frames the check frames' windows read, within the audio's own frame count
    n_frames = min(max(check.frames) + conv.window_after, pcm.size * AUDIO_MODES[spec.mode].fps // SAMPLE_RATE)
    return FrameCheck(pcm, n_frames, render, check.quality, check.source)


def _audio_note(section: dict[str, Any], spec: GeneratorSpec) -> str:
    from dhm.audio.geometry import AudioModelSpec

    am = AudioModelSpec.from_dict(section)
    mmacs = section["macs_per_call"] * section["calls_per_second"] / 1e6
    fp32 = [a for a in section["artifacts"] if a["variant"] == "fp32"]
    worst = max(a["parity"]["max_abs"] for a in fp32)
    reference = fp32[0]["parity"]["reference"]
    smaller = [
        f"{a['file']} cosine {a['parity']['cosine']:.4f}"
        + (f", frames {format_figure(a['parity']['frames']['psnr'], '.1f', ' dB')}" if "frames" in a["parity"] else "")
        for a in section["artifacts"]
        if a["variant"] != "fp32"
    ]
    return (
        f"audio model ({am.frontend}, {', '.join(a['file'] for a in section['artifacts'])}): "
        f"{am.window_samples} PCM samples -> {am.rows_per_call} row(s) of {am.row_size} per call, "
        f"{mmacs:.1f} MMACs per second of audio; FP32 features max abs {worst:.1e} vs {reference}"
        + (f"; {'; '.join(smaller)} (frames: the generator driven by them vs by the FP32 student)" if smaller else "")
        + f"; audio-to-frame lookahead {am.lookahead_ms(spec.window):.0f} ms with the {spec.window}-frame window"
        + "".join(f"; {x['file']} left out ({x['reason']})" for x in section.get("left_out", []))
    )


def _audio_table(section: dict[str, Any]) -> list[str]:
    """The audio model's files, each against its reference (report.md)."""
    lines = [
        "## Audio model",
        "",
        "| file | engine | variant | size | features max abs | cosine | generator frames PSNR | mouth-PSNR |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for a in section["artifacts"]:
        p = a["parity"]
        fr = p.get("frames") or {}
        lines.append(
            f"| {a['file']} | {a['engine']} | {a['variant']} | {a['size_bytes'] / 1024:.1f} KiB | {p['max_abs']:.2e} "
            f"| {p.get('cosine', '–')} | {format_figure(fr['psnr'], '.1f', ' dB') if fr else '–'} "
            f"| {format_figure(fr['mouth_psnr'], '.1f', ' dB') if fr else '–'} |"
        )
    lines += [
        "",
        f"FP32 files against {section['artifacts'][0]['parity']['reference']} on PCM windows; smaller variants "
        "against it too, and the generator's held-out frames driven by their features against frames driven by "
        "the FP32 student's.",
        "",
    ]
    lines += [f"Left out (missed its gate): {x['file']}: {x['reason']}." for x in section.get("left_out", [])]
    return lines


def _report(result: ExportResult, model: str, source: str) -> str:
    lines = [
        "# dhm export report",
        "",
        f"- model: {model}",
        f"- MACs per frame: {result.manifest['generator']['macs']:,}; parameters: "
        f"{result.manifest['generator']['params']:,}",
        f"- validation inputs: {source} ({result.artifacts[0].parity['frames'] if result.artifacts else 0} frames), "
        "reference: the torch FP32 model",
        "",
        result.table(),
        "",
        *[f"- {n}" for n in result.notes],
        "",
        *(_audio_table(result.manifest["audio_model"]) if "audio_model" in result.manifest else []),
    ]
    return "\n".join(lines)


__all__ = ["ConversionError", "ExportResult", "export_model"]
