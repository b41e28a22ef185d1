"""The training commands of the distill stage, generated from their settings dataclasses."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from dhm.distill.audio_config import AudioDistillSettings, AudioStudentChoice, AudioWeights
from dhm.settings import click_options, pick


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
