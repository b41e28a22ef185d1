"""`dhm quantize`: the command is generated from `QuantizeConfig` and calls `quantize_model`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dhm.quantize.config import QuantizeConfig
from dhm.settings import click_options, crop_interpolation_option


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path),
    help="Dataset folder: calibration and evaluation use its held-out frames.",
)
@click.option(
    "-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="Output folder (created atomically)."
)
@click_options(QuantizeConfig)
@click.option("--force", is_flag=True, help="Replace OUT if it exists (only after the new run succeeded).")
@crop_interpolation_option
def quantize(model: Path, data: Path, out: Path, force: bool, crop_interpolation: str | None, **settings: Any) -> None:
    """FP16 and INT8 variants of MODEL, calibrated on held-out frames.

    Calibration frames come from the dataset's held-out calibration blocks, built as
    inference builds them; every variant is judged against the FP32 model on other
    held-out frames. INT8 variants are checked structurally (int8 weights stored and
    integer kernels run). If full INT8 misses --target-psnr, the layers whose
    quantization adds the most error are kept in float, a few more each round, until
    the target holds or a round gains nothing.

    \b
    OUT/model_{fp32,fp16,int8}.{onnx,mnn}   the variants
    OUT/recipe.json     methods, layers kept in float, calibration frame ids
    OUT/calib.npz       the calibration set; OUT/model.pt the source checkpoint
    OUT/report.md|json  size, PSNR, SSIM, mouth-PSNR, max abs diff per variant and engine

    `dhm export OUT --variants int8` rebuilds the INT8 files from the recipe.
    """
    from dhm.quantize.api import quantize_model, variant_table

    log = lambda m: click.echo(m, err=True)  # noqa: E731
    config = QuantizeConfig(**settings)
    report = quantize_model(model, out, data, config, force=force, log=log, crop_interpolation=crop_interpolation)
    click.echo(variant_table(report))
    click.echo(f"wrote {len(report['variants'])} variants, recipe.json and report.md to {out}")
