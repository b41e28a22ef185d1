"""The training commands of the distill stage, generated from their settings dataclasses."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import click

from dhm.distill.audio_config import AudioDistillSettings, AudioStudentChoice, AudioWeights
from dhm.distill.train_config import TRAINING_OPTIONS, TrainingSettings
from dhm.distill.weights import DISTILL_DEFAULTS, DISTILL_EMA, DISTILL_LR, TRAIN_DEFAULTS, TRAIN_HELP, LossWeights
from dhm.bench.probe import ProbeSettings
from dhm.settings import Finite, click_options, crop_interpolation_option, pick
from dhm.spec import ARCHS, LATEST_REVISION, REVISIONS, STEMS

TRAIN_WEIGHTS = ("ssim", "mouth", "lips", "bce", "border")  # train has no teacher: no pixel, feature or gt term


@click.command("distill-audio")
@click.option(
    "--data", required=True, type=click.Path(path_type=Path), help="Dataset folder: aud.wav + aud_hu/aud_wenet.npy."
)
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option(
    "--mode", default=None, type=click.Choice(["hubert", "wenet"]), help="Features to learn (default: the dataset's)."
)
@click.option(
    "--audio-dir",
    "audio_dirs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="More training audio: x.wav + x_hu.npy / x_wenet.npy pairs (`dhm features`). Repeatable.",
)
@click.option(
    "--generator",
    type=click.Path(path_type=Path),
    default=None,
    help="A generator of this mode: the report renders held-out frames with student vs teacher features.",
)
@click_options(AudioStudentChoice)
@click_options(AudioDistillSettings)
@click_options(AudioWeights)
@click.option(
    "--force", is_flag=True, help="Start over: an existing OUT is set aside and deleted once this run saves state."
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run saved in OUT (Ctrl-C/SIGTERM save it; same settings, bit-for-bit).",
)
@click.option("--quiet", is_flag=True, help="No progress line.")
def distill_audio(
    data: Path,
    out: Path,
    mode: str | None,
    audio_dirs: tuple[Path, ...],
    generator: Path | None,
    force: bool,
    resume: bool,
    quiet: bool,
    **kw: Any,
) -> None:
    """Distil the audio teacher (HuBERT, wenet, or dhm's front end) into a small streaming
    student that runs on the phone: PCM in, the generator's per-frame features out.

    Trained on the dataset's aud.wav and its teacher features (plus --audio-dir pairs);
    judged on the dataset's held-out blocks, never trained on: feature cosine and relative
    error against the teacher, and with --generator the generator's output driven by
    student features against it driven by teacher features (PSNR, SSIM, mouth and lip
    box), each next to a student that ignores the audio (the training mean).

    \b
    OUT/audio_student.pt  the student (`dhm export MODEL --audio-model` puts it on the phone)
    OUT/report.json|md    cost (params, MACs per second of audio, lookahead) and figures
    OUT/resume.pt         while a run is unfinished (Ctrl-C, SIGTERM): continue with --resume

    Under `torchrun --nproc-per-node N -m dhm.app.cli distill-audio ...` each process trains on
    its own batches and gradients are averaged (rank 0 writes OUT).
    """
    from dhm.distill.audio import distill_audio as run

    settings = replace(pick(AudioDistillSettings, kw), weights=pick(AudioWeights, kw))
    report = run(
        data, out, mode=mode, audio_dirs=list(audio_dirs), generator=generator, student=pick(AudioStudentChoice, kw),
        settings=settings, force=force, progress=not quiet, resume=resume,
    )  # fmt: skip
    if report is None:  # another rank of a torchrun job: rank 0 writes and reports
        return
    click.echo((out / "report.md").read_text().rstrip())
    click.echo(f"wrote {out / 'audio_student.pt'} and report.md")


def _run_flags(command: Any) -> Any:
    for option in reversed([
        click.option("--resume", is_flag=True, help="Continue the run saved in OUT (bit-for-bit, same settings)."),
        click.option("--force", is_flag=True, help="Overwrite a different run in OUT."),
        click.option("--quiet", is_flag=True, help="No progress line."),
    ]):  # fmt: skip
        command = option(command)
    return command


@click.command()
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Dataset folder (Ultralight layout).")
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option(
    "--arch",
    default="ultralight",
    show_default=True,
    type=click.Choice(list(ARCHS)),
    help="ultralight (InvertedResidual U-Net) or mobileone (FeatherTalk's MobileOne U-Net).",
)
@click.option("--mode", default="hubert", show_default=True, type=click.Choice(["hubert", "wenet"]))
@click.option("--widths", default="mobile", show_default=True, help="full, mobile, or w0,w1,w2,w3,w4.")
@click.option(
    "--revision",
    default=LATEST_REVISION,
    show_default=True,
    type=click.Choice(list(REVISIONS)),
    help="Upstream revision whose layout and conventions (audio window, crop filter) the model follows.",
)
@crop_interpolation_option
@click_options(LossWeights, only=TRAIN_WEIGHTS, defaults=asdict(TRAIN_DEFAULTS), helps=TRAIN_HELP)
@click_options(TrainingSettings, only=TRAINING_OPTIONS)
@_run_flags
def train(
    data: Path, out: Path, arch: str, mode: str, widths: str, revision: str, crop_interpolation: str | None,
    resume: bool, force: bool, quiet: bool, **kw: Any,
) -> None:  # fmt: skip
    """Train a generator from scratch on a dataset folder.

    Loss: L1 (extra weight in the mouth rectangle) + SSIM, on training frames with a
    random reference, as Ultralight trains. Held-out frames are evaluated
    inference-style (reference = current frame) and the best step is kept.

    \b
    OUT/model.pt        best checkpoint (dhm format; `dhm info` reads it)
    OUT/report.json|md  cost, held-out PSNR/SSIM/mouth-PSNR per evaluation
    OUT/curves.png      held-out PSNR by step
    OUT/strip.png       held-out frames: model | ground truth
    OUT/resume.pt       resumable state (Ctrl-C saves it; --resume continues)
    """
    from dhm.distill import train_generator
    from dhm.spec import GeneratorSpec

    spec = GeneratorSpec(arch=arch, mode=mode, widths=widths, revision=revision, crop_interpolation=crop_interpolation)
    weights = replace(TRAIN_DEFAULTS, **{k: kw[k] for k in TRAIN_WEIGHTS})
    settings = pick(TrainingSettings, kw)
    report = train_generator(data, out, spec, settings, weights, resume=resume, force=force, progress=not quiet)
    _summary(report)
    click.echo(f"wrote {out / 'model.pt'} and report.md")


def _student_kind(command: Any) -> Any:
    """--student-arch and --student-stem: which network the student is, beside its widths."""
    arch = click.option(
        "--student-arch",
        default=None,
        type=click.Choice(list(ARCHS)),
        help="The student's family (default: the teacher's); it keeps the teacher's audio window and crop filter.",
    )
    stem = click.option(
        "--student-stem",
        default=None,
        type=click.Choice(list(STEMS)),
        help="The student's first level: full (at 160x160, as upstream; the default) or s2d (folded into channels "
        "at 80x80: more MACs for the same time per frame on MNN, faster training steps). --budget-ms tries both "
        "unless this is given.",
    )
    return arch(stem(command))


@click.command()
@click.option(
    "--teacher", required=True, type=click.Path(path_type=Path), help="Teacher checkpoint (Ultralight or dhm)."
)
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Dataset folder (Ultralight layout).")
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option(
    "--student",
    default="x10",
    show_default=True,
    help="Preset x4, x10, x20, x30 (1/N of the teacher's MACs), w0,w1,w2,w3,w4, or auto (with --budget-ms).",
)
@click.option(
    "--budget-ms",
    type=Finite(0.0, 1e6, lo_open=True),
    default=None,
    help="Choose the student by speed: the widest candidate (both families, widths in 4- and 8-channel packs) "
    "whose measured time per frame on --budget-engine at --budget-threads fits. Timings are cached per machine.",
)
@click.option(
    "--snap-packs", is_flag=True, help="Round a preset's widths to 4 or 8 channels, whichever measures faster."
)
@click_options(ProbeSettings)
@_student_kind
@crop_interpolation_option
@click.option(
    "--init",
    "init",
    default="teacher",
    show_default=True,
    type=click.Choice(["teacher", "random"]),
    help="Start from the teacher's most important channels, or from scratch.",
)
@click_options(LossWeights, defaults=asdict(DISTILL_DEFAULTS))
@click_options(TrainingSettings, only=("teacher_pool",))
@click_options(TrainingSettings, only=TRAINING_OPTIONS, defaults={"lr": DISTILL_LR, "ema": DISTILL_EMA})
@_run_flags
def distill(
    teacher: Path, data: Path, out: Path, student: str, budget_ms: float | None, snap_packs: bool,
    student_arch: str | None, student_stem: str | None, crop_interpolation: str | None, init: str, resume: bool,
    force: bool, quiet: bool, **kw: Any,
) -> None:  # fmt: skip
    """Distil a trained generator into a phone-sized student.

    The teacher is frozen; the student (same family, smaller widths) learns the
    teacher's outputs (L1 + SSIM, extra mouth weight, an L1 over the lips alone) and
    intermediate features (1x1 adapters), optionally the ground truth. Held-out frames,
    never trained on, are evaluated at regular steps against the teacher and the ground
    truth in two protocols (reference = the target, as deployed; reference = another
    frame, so the mouth must come from the audio), with whole-crop, lip-box PSNR and lip
    colour; the best step by the second is kept. Under torchrun it trains with
    DistributedDataParallel.

    \b
    OUT/student.pt      best student (dhm format, with teacher and data hashes)
    OUT/report.json|md  MACs, parameters, file sizes and their ratios; held-out metrics
    OUT/curves.png      held-out PSNR by step
    OUT/strip.png       held-out frames: teacher | student | ground truth
    OUT/resume.pt       resumable state (Ctrl-C saves it; --resume continues)

    \b
    The widest student that runs in 8 ms per frame on MNN, 2 threads (--budget-device adb: on a phone):
      dhm distill --teacher model.pt --data data -o out --student auto --budget-ms 8
    """
    from dhm.distill import distill_student

    report = distill_student(
        teacher, data, out, student=student, settings=pick(TrainingSettings, kw), weights=pick(LossWeights, kw),
        init=init, resume=resume, force=force, progress=not quiet, student_arch=student_arch,
        student_stem=student_stem, crop_interpolation=crop_interpolation, budget_ms=budget_ms, snap_packs=snap_packs,
        probe=pick(ProbeSettings, kw), log=lambda m: click.echo(m, err=True),
    )  # fmt: skip
    if report:
        _summary(report)
        click.echo(f"wrote {out / 'student.pt'} and report.md")


def _summary(report: dict[str, Any]) -> None:
    best = report.get("best", {})
    for protocol in ("generation", "inference"):
        for key, label in (("vs_teacher", "vs teacher"), ("vs_gt", "vs ground truth")):
            q = best.get(protocol, {}).get(key)
            if q:
                lip = (
                    f", lip-box PSNR {q['lip_psnr']:.2f} dB (lip colour Δ {q['lip_color_diff']:.1f})"
                    if "lip_psnr" in q
                    else ""
                )
                click.echo(
                    f"held-out {label} ({protocol}): PSNR {q['psnr']:.2f} dB, SSIM {q['ssim']:.4f}, "
                    f"mouth-PSNR {q['mouth_psnr']:.2f} dB{lip}"
                )
    sync = best.get("generation", {}).get("lip_sync")
    if sync is not None:
        click.echo(f"lip sync (generation): {sync:.3f} (ground truth {report.get('ceiling', {}).get('lip_sync')})")
    if "ratios" in report:
        r = report["ratios"]
        click.echo(
            f"teacher/student: {r['macs']:.1f}x MACs, {r['params']:.1f}x parameters, {r['file_size']:.1f}x file size"
        )
    t = report.get("training", {})
    if t:
        click.echo(f"training: {t['steps_run']} steps in {t['seconds']:.0f} s ({t['samples_per_second']} samples/s)")
