"""`dhm train` and `dhm distill`: one library call each."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dhm.data import SampleBuilder, open_dataset
from dhm.errors import SpecError
from dhm.io import atomic_path, human_size
from dhm.metrics import file_size, generator_cost
from dhm.models import LoadedCheckpoint, file_sha256, load_checkpoint
from dhm.plots import image_strip, line_chart
from dhm.spec import GeneratorSpec, stem_tag
from dhm.distill.loop import RunConfig, RunResult, dataset_hash, run_training
from dhm.distill.weights import DISTILL_DEFAULTS, DISTILL_EMA, DISTILL_LR, TRAIN_DEFAULTS, LossWeights
from dhm.distill.presets import DEFAULT_PRESET, resolve_student
from dhm.distill.train_config import TrainingSettings


def _frontend(data: Path) -> str | None:
    meta = data / "synth.json"
    if meta.is_file():
        try:
            return json.loads(meta.read_text()).get("audio_frontend")
        except ValueError:
            return None
    return None


def _run(
    kind: str,
    data: Path,
    out: Path,
    spec: GeneratorSpec,
    settings: TrainingSettings,
    weights: LossWeights,
    teacher: LoadedCheckpoint | None,
    init: str,
    resume: bool,
    force: bool,
    progress: bool,
    checkpoint_name: str,
    metadata: dict[str, Any],
    extra_report: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Settings -> RunConfig -> training loop -> reports (shared by train and distill)."""
    ds = open_dataset(data, mode=spec.mode)
    config = RunConfig(
        kind=kind,
        data=str(data),
        data_hash=dataset_hash(ds),
        student=spec.to_dict(),
        teacher_sha256=file_sha256(teacher.path) if teacher is not None and teacher.path else None,
        steps=settings.steps,
        batch_size=settings.batch_size,
        lr=settings.lr,
        seed=settings.seed,
        weights=weights.to_dict(),
        eval_every=settings.resolved_eval_every,
        eval_frames=settings.eval_frames,
        init=init,
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        ema=settings.ema,
        teacher_pool=settings.teacher_pool if teacher is not None else 0,
    )
    result = run_training(
        config,
        out,
        student_spec=spec,
        teacher=teacher,
        resume=resume,
        force=force,
        device=settings.device,
        checkpoint_name=checkpoint_name,
        progress=progress,
        metadata=metadata,
        inputs=[data, teacher.path if teacher is not None else None],
    )
    return _write_reports(result, config, spec, teacher, ds, data, extra_report or {})


def train_generator(
    data: str | Path,
    out: str | Path,
    spec: GeneratorSpec,
    settings: TrainingSettings,
    weights: LossWeights | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a generator from scratch on a dataset folder (-> OUT/model.pt)."""
    settings.check()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    data = Path(data).resolve()
    frontend = _frontend(data)
    return _run(
        "train",
        data,
        Path(out),
        spec,
        settings,
        weights or TRAIN_DEFAULTS,
        teacher=None,
        init="random",
        resume=resume,
        force=force,
        progress=progress,
        checkpoint_name="model.pt",
        metadata={"audio_frontend": frontend} if frontend else {},
    )


def distill_student(
    teacher_path: str | Path,
    data: str | Path,
    out: str | Path,
    student: str = DEFAULT_PRESET,
    settings: TrainingSettings | None = None,
    weights: LossWeights | None = None,
    init: str = "teacher",
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    student_arch: str | None = None,
    crop_interpolation: str | None = None,
    student_stem: str | None = None,
    budget_ms: float | None = None,
    snap_packs: bool = False,
    probe: Any = None,
    log: Any = None,
) -> dict[str, Any]:
    """Distil `teacher_path` into a smaller student (-> OUT/student.pt + reports).

    The student inherits the teacher's conventions (revision, audio window, crop filter);
    `student_arch` picks another family (the MobileOne U-Net) with the same window, `student_stem`
    the first level (full, or s2d: folded into channels).
    `student="auto"` with `budget_ms`: the widest candidate measured under the budget on
    `probe`'s engine (dhm.bench.probe.ProbeSettings); `snap_packs`: a preset's widths rounded
    to 4 or 8 channels, whichever measures faster."""
    settings = settings or TrainingSettings(lr=DISTILL_LR, ema=DISTILL_EMA)
    settings.check()
    if init not in ("teacher", "random"):
        raise SpecError(f"--init {init!r}: expected teacher or random")
    if settings.threads:
        torch.set_num_threads(settings.threads)
    _check_choice(student, budget_ms, snap_packs, probe)
    teacher = load_checkpoint(teacher_path, crop_interpolation=crop_interpolation)
    student_spec, chosen_by = _student(
        teacher.spec, student, (student_arch, student_stem), budget_ms, snap_packs, probe, log
    )
    data = Path(data).resolve()
    frontend = teacher.metadata.get("audio_frontend") or _frontend(data)
    return _run(
        "distill",
        data,
        Path(out),
        student_spec,
        settings,
        weights or DISTILL_DEFAULTS,
        teacher=teacher,
        init=init,
        resume=resume,
        force=force,
        progress=progress,
        checkpoint_name="student.pt",
        metadata={"teacher_spec": teacher.spec.to_dict(), **({"audio_frontend": frontend} if frontend else {})},
        extra_report=chosen_by,
    )


def _quiet(_message: str) -> None:
    pass


def _check_choice(student: str, budget_ms: float | None, snap_packs: bool, probe: Any) -> None:
    """The ways of choosing the student, refused before any work when they contradict."""
    from dhm.distill.presets import STUDENT_PRESETS

    if student == "auto" and budget_ms is None:
        raise SpecError("--student auto needs --budget-ms (the time per frame the student must fit)")
    if budget_ms is not None and student not in ("auto", DEFAULT_PRESET):
        raise SpecError(f"--student {student} and --budget-ms both choose the student; pass one of them")
    if snap_packs and (budget_ms is not None or student not in STUDENT_PRESETS):
        raise SpecError(f"--snap-packs rounds a preset's widths; --student {student} is not one of "
                        f"{', '.join(STUDENT_PRESETS)}")  # fmt: skip
    if probe is not None and (budget_ms is not None or snap_packs):
        probe.check()


def _student(
    teacher: GeneratorSpec, student: str, kind: tuple[str | None, str | None], budget_ms: float | None,
    snap_packs: bool, probe: Any, log: Any,
) -> tuple[GeneratorSpec, dict[str, Any]]:  # fmt: skip
    """The student's spec, and how it was chosen where a measurement chose it (for the report).
    `kind`: the family and stem asked for (None: the teacher's family; a budget tries both stems)."""
    arch, stem = kind
    if budget_ms is not None:
        from dhm.bench.probe import ProbeSettings
        from dhm.distill.budget import choose_student

        spec, record = choose_student(
            teacher, budget_ms, probe or ProbeSettings(), arch=arch, log=log or _quiet, stem=stem
        )
        return spec, {"budget": record}
    if snap_packs:
        from dhm.bench.probe import ProbeSettings
        from dhm.distill.budget import snap_preset

        spec, record = snap_preset(teacher, student, probe or ProbeSettings(), arch, log=log or _quiet, stem=stem)
        return spec, {"snap": record}
    return resolve_student(teacher, student, arch, stem), {}


def _cost(spec: GeneratorSpec, path: Path | None) -> dict[str, Any]:
    macs, params = generator_cost(spec)
    return {
        "spec": spec.to_dict(),
        "macs": macs,
        "params": params,
        "file_size": file_size(path) if path and path.exists() else None,
    }


def _write_reports(
    result: RunResult,
    config: RunConfig,
    spec: GeneratorSpec,
    teacher: LoadedCheckpoint | None,
    ds,
    data: Path,
    extra: dict[str, Any],
) -> dict[str, Any]:
    out = result.out_dir
    if int(os.environ.get("RANK", "0")) != 0:
        return {}
    model_cost = _cost(spec, result.checkpoint)
    report: dict[str, Any] = {
        "kind": config.kind,
        "checkpoint": str(result.checkpoint),
        "config": config.to_dict(),
        "model": model_cost,
        "best": result.best,
        "history": result.history,
        "training": {
            "seconds": round(result.seconds, 1),
            "steps_run": result.steps_done,
            "resumed_from_step": result.resumed_from,
            "samples_per_second": round(
                result.steps_done * config.batch_size * config.world_size / max(result.seconds, 1e-9), 2
            ),
            "processes": config.world_size,
            "torch_threads": torch.get_num_threads(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "init": result.extra["init"],
        },
        "split": {
            "train_frames": result.extra["train_frames"],
            "heldout_frames": result.extra["heldout_frames"],
            "eval_frames": result.extra["eval_frames"],
        },
        "ceiling": result.extra["ceiling"],
        "protocols": {
            "generation": "reference = another held-out frame (as in training): quality and lip sync of what the "
            "model generates",
            "inference": "reference = the target frame (as deployed): parity; against the ground truth it rewards "
            "copying the input",
        },
    }
    if teacher is not None:
        t_cost = _cost(teacher.spec, teacher.path)
        report["teacher"] = {**t_cost, "path": str(teacher.path), "sha256": config.teacher_sha256}
        report["ratios"] = {
            "macs": t_cost["macs"] / model_cost["macs"],
            "params": t_cost["params"] / model_cost["params"],
            "file_size": (t_cost["file_size"] or 0) / max(1, model_cost["file_size"] or 1),
        }
    report.update(extra)  # how the student was chosen (a latency budget, snapped packs)
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(_markdown(report))
    _curves(out / "curves.png", result.history, teacher is not None)
    _strip(out / "strip.png", result, ds, spec, teacher)
    return report


def _fmt_q(q: dict[str, Any] | None) -> str:
    if not q:
        return "-"
    text = f"{q['psnr']:.2f} dB / {q['ssim']:.4f} / {q['mouth_psnr']:.2f} dB"
    if "lip_psnr" in q:
        text += f" / {q['lip_psnr']:.2f} dB / {q['lip_color_diff']:.1f}"
    return text


def _widths_cell(spec: dict[str, Any]) -> str:
    """Widths, with the stem where it is not upstream's full-resolution one."""
    tag = stem_tag(spec.get("stem"))
    return ",".join(map(str, spec["widths"])) + (f" ({tag.strip()} stem)" if tag else "")


def _markdown(r: dict[str, Any]) -> str:
    m = r["model"]
    lines = [f"# dhm {r['kind']} report", ""]
    lines.append("| | widths | MACs/frame | parameters | file size |")
    lines.append("|---|---|---:|---:|---:|")
    if "teacher" in r:
        t = r["teacher"]
        lines.append(
            f"| teacher | {_widths_cell(t['spec'])} | {t['macs']:,} | {t['params']:,} | "
            f"{human_size(t['file_size'] or 0)} |"
        )
    name = "student" if r["kind"] == "distill" else "model"
    lines.append(
        f"| {name} | {_widths_cell(m['spec'])} | {m['macs']:,} | {m['params']:,} | {human_size(m['file_size'] or 0)} |"
    )
    if "ratios" in r:
        ra = r["ratios"]
        lines.append(f"| teacher / student | | {ra['macs']:.1f}x | {ra['params']:.1f}x | {ra['file_size']:.1f}x |")
    best = r["best"]
    lines += [
        "",
        f"Held-out frames ({len(r['split']['eval_frames'])}, never trained on), best step {best.get('step')} "
        "(chosen by the generation protocol):",
        "",
        "| protocol | against | PSNR / SSIM / mouth-PSNR / lip-box PSNR / lip colour Δ (levels) |",
        "|---|---|---|",
    ]
    for protocol, note in (
        ("generation", "reference = another held-out frame: the mouth comes from the audio"),
        ("inference", "reference = the target frame, as deployed: parity only (copying the input scores here)"),
    ):
        part = best.get(protocol, {})
        for against in ("vs_teacher", "vs_gt"):
            if against in part:
                lines.append(f"| {protocol} | {against[3:].replace('gt', 'ground truth')} | {_fmt_q(part[against])} |")
        lines.append(f"| | | *{note}* |")
    gen = best.get("generation", {})
    if gen.get("lip_sync") is not None:
        ceiling = r.get("ceiling", {}).get("lip_sync")
        teacher_sync = gen.get("teacher_lip_sync")
        lines += [
            "",
            f"Lip sync (generation protocol, correlation of the true mouth opening with the opening in the "
            f"generated mouth): {name} {gen['lip_sync']:.3f}"
            + (f", teacher {teacher_sync:.3f}" if teacher_sync is not None else "")
            + (f", ground truth {ceiling:.3f}" if ceiling is not None else "")
            + ".",
        ]
    tr = r["training"]
    key = "vs_teacher" if "teacher" in r else "vs_gt"
    lines += [
        "",
        f"Training: {tr['steps_run']} steps (resumed from {tr['resumed_from_step']}) in {tr['seconds']:.0f} s, "
        f"{tr['samples_per_second']} samples/s, {tr['torch_threads']} torch threads on {tr['machine']}; init: "
        f"{tr['init']}; "
        + (
            f"the kept weights are a moving average of the trained ones (decay {ema:g}, --ema)."
            if (ema := r["config"].get("ema", 0.0))
            else "the kept weights are the trained ones (--ema 0)."
        )
        + (
            f" The teacher ran once, on {pool} fixed training pairs every batch was drawn from (--teacher-pool)."
            if (pool := r["config"].get("teacher_pool", 0))
            else ""
        ),
        "",
        f"| step | loss | generation PSNR {key[3:]} | lip-box PSNR | inference PSNR {key[3:]} |",
        "|---:|---:|---:|---:|---:|",
    ]
    for h in r["history"]:
        g, i = h["generation"][key], h["inference"][key]
        lip = f"{g['lip_psnr']:.2f}" if "lip_psnr" in g else "-"
        lines.append(f"| {h['step']} | {h['loss']:.4f} | {g['psnr']:.2f} | {lip} | {i['psnr']:.2f} |")
    lines += ["", "![curves](curves.png)", "", "![held-out frames](strip.png)", ""]
    lines += _choice_markdown(r)
    return "\n".join(lines)


def _choice_markdown(r: dict[str, Any]) -> list[str]:
    """How the student's widths were measured into place, where they were."""
    if "budget" in r:
        from dhm.distill.budget import markdown

        return [*markdown(r["budget"]), ""]
    if "snap" in r:
        s = r["snap"]
        rows = "; ".join(f"{','.join(map(str, x['widths']))} {x['p50_ms']:.2f} ms" for x in s["rows"])
        return [f"Preset {s['preset']} rounded to the faster channel pack on {s['engine']} at {s['threads']} "
                f"thread(s): {rows}.", ""]  # fmt: skip
    return []


def _curves(path: Path, history: list[dict[str, Any]], distill: bool) -> None:
    if not history:
        return
    steps = [h["step"] for h in history]
    key = "vs_teacher" if distill else "vs_gt"
    series = {
        f"generation PSNR {key[3:]}": (steps, [h["generation"][key]["psnr"] for h in history]),
        f"inference PSNR {key[3:]}": (steps, [h["inference"][key]["psnr"] for h in history]),
    }
    if "lip_psnr" in history[0]["generation"][key]:
        series["generation lip-box PSNR"] = (steps, [h["generation"][key]["lip_psnr"] for h in history])
    line_chart(path, "held-out PSNR during training", "step", "dB", series)


def _strip(path: Path, result: RunResult, ds, spec: GeneratorSpec, teacher: LoadedCheckpoint | None) -> None:
    from dhm.models import load_checkpoint as _load

    from dhm.data.inputs import generation_references

    # Generation protocol (reference = another held-out frame): what the model paints from the audio.
    frames = result.extra["eval_frames"][:: max(1, len(result.extra["eval_frames"]) // 4)][:4]
    refs = [
        r
        for f, r in zip(result.extra["eval_frames"], generation_references(result.extra["eval_frames"]), strict=True)
        if f in frames
    ]
    builder = SampleBuilder(ds, spec)
    batch = builder.batch(frames, refs)
    model = _load(result.checkpoint).model
    with torch.inference_mode():
        pred = model(torch.from_numpy(batch["face"]), torch.from_numpy(batch["audio"])).numpy()
        tout = (
            teacher.model(torch.from_numpy(batch["face"]), torch.from_numpy(batch["audio"])).numpy()
            if teacher
            else None
        )

    def tile(x: np.ndarray) -> np.ndarray:
        return (x.transpose(1, 2, 0) * 255).astype(np.uint8)

    rows = []
    for i in range(len(frames)):
        row = ([tile(tout[i])] if tout is not None else []) + [tile(pred[i]), tile(batch["target"][i])]
        rows.append(row)
    labels = (["teacher"] if teacher else []) + [("student" if teacher else "model"), "ground truth"]
    image_strip(path, rows, labels)
