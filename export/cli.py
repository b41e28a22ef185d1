"""`dhm export`: the command is generated from `ExportConfig` and calls `export_model`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dhm.export.config import ExportConfig
from dhm.settings import click_options, crop_interpolation_option


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="Output folder (created atomically)."
)
@click_options(ExportConfig)
@click.option("--force", is_flag=True, help="Replace OUT if it exists (only after the new export succeeded).")
@crop_interpolation_option
def export(model: Path, out: Path, force: bool, crop_interpolation: str | None, **settings: Any) -> None:
    """Export MODEL (a dhm or Ultralight checkpoint, or a `dhm quantize` output folder)
    to validated ONNX and MNN files.

    \b
    OUT/model_<variant>.onnx   torch -> ONNX (static shapes; inputs face, audio; output out),
                               checked, simplified with onnxsim only if it still matches
    OUT/model_<variant>.mnn    ONNX -> MNN through MNN's compiled converter in a child process
    OUT/manifest.json          I/O, preprocessing, audio window, versions, sha256, parity
    OUT/report.md              size and parity per artefact
    OUT/audio_fp32.onnx|mnn    the audio model (PCM -> features): --audio-model, or dhm's
                               front end for models trained on dhm's own features

    Every artefact is run by its engine against the torch FP32 model and must match
    (FP32: max abs diff <= 1e-4), or nothing is written. No network, no installs.
    """
    from dhm.export.pipeline import export_model

    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    config = ExportConfig(**settings)
    result = export_model(model, out, config, force=force, log=log, crop_interpolation=crop_interpolation)
    click.echo(result.table())
    for note in result.notes:
        if "audio model" in note:
            click.echo(note)
    click.echo(f"wrote {len(result.artifacts)} artefacts and manifest.json to {result.out_dir}")
