"""`dhm bench`: the command is generated from `BenchSettings` and calls `run_bench`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dhm.bench.config import BenchSettings
from dhm.errors import DhmError
from dhm.settings import Finite, click_options, crop_interpolation_option, pick

PATH = click.Path(path_type=Path)


@click.command()
@click.argument("models", nargs=-1, type=str)
@click.option(
    "--reference",
    type=click.Path(path_type=Path),
    default=None,
    help="The full teacher checkpoint (.pt): the parity reference (torch FP32) and the speed baseline.",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="Dataset folder: parity and the end-to-end pipeline use its held-out frames.",
)
@click_options(BenchSettings)
@click.option("--json", "json_path", type=PATH, default=None, help="Write the full record (schema dhm.bench/2) here.")
@click.option(
    "--report", "report_path", type=PATH, default=None, help="Write the Markdown report here, with PNG plots beside it."
)
@click.option(
    "--compare",
    "compare_paths",
    nargs=2,
    type=PATH,
    default=None,
    help="Compare two --json results instead of benching.",
)
@click.option(
    "--soak",
    "soak_s",
    type=Finite(10.0, 86400.0),
    default=None,
    help="Instead of benching: stream SECONDS of speech and silence through one model's PcmSession (an export "
    "folder or file with an audio model) and report memory, frames and latency drift (e.g. --soak 3600).",
)
@crop_interpolation_option
@click.option("--force", is_flag=True, help="Replace --json/--report files that are not earlier bench outputs.")
def bench(
    models: tuple[str, ...], reference: Path | None, data: Path | None, json_path: Path | None,
    report_path: Path | None, compare_paths: tuple[Path, Path] | None, soak_s: float | None,
    crop_interpolation: str | None, force: bool, **kw: Any,
) -> None:  # fmt: skip
    """Parity and latency of MODELS against the full teacher.

    \b
    MODELS: `dhm export` folders (every artefact in them), checkpoints (torch, plus
    onnxruntime/MNN FP32 exported for the run) or single .onnx/.mnn files; NAME=PATH
    names one in the report.

    Parity: PSNR, SSIM, mouth-PSNR and max abs against --reference in torch FP32 on the
    dataset's held-out frames. Latency: p50/p90/p99/mean, load time and memory per
    model x engine x variant x threads, timed in interleaved rounds with the teacher so
    that every speed-up is a ratio from the same run; plus the end-to-end pipeline split
    into crop, infer and paste. With --device adb the MNN models run on the phone with
    MNN's ModuleBasic (pass --mnn-bin) and their outputs come back for parity.

    \b
    Example:
      dhm bench student=out/export --reference teacher/model.pt --data data \\
                --threads 1,2 --json bench.json --report bench.md
      dhm bench --compare before.json after.json
      dhm bench out/export/model_fp32.mnn --data data --soak 3600 --report soak.md
    """
    if compare_paths:
        _compare(compare_paths, report_path, force)
        return
    if soak_s is not None:
        _soak(models, data, soak_s, pick(BenchSettings, kw), json_path, report_path, force)
        return
    if not models or reference is None or data is None:
        raise DhmError("bench needs MODELS, --reference and --data (or --compare A.json B.json)")
    from dataclasses import replace

    settings = replace(pick(BenchSettings, kw), crop_interpolation=crop_interpolation, force=force)
    _bench(models, reference, data, settings, json_path, report_path)


def _bench(
    models: tuple[str, ...], reference: Path, data: Path, settings: BenchSettings, json_path: Path | None,
    report_path: Path | None,
) -> None:  # fmt: skip
    from dhm.bench.api import run_bench
    from dhm.bench.report import markdown

    log = lambda m: click.echo(m, err=True)  # noqa: E731
    result = run_bench(list(models), reference, data, settings, json_path, report_path, log=log)
    click.echo(markdown(result))
    written = [str(p) for p in (json_path, report_path) if p]
    if written:
        click.echo(f"wrote {', '.join(written)}", err=True)


def _compare(paths: tuple[Path, Path], report_path: Path | None, force: bool) -> None:
    """Two earlier --json results side by side (a Markdown table), printed and with --report written."""
    from dhm.bench.report import compare, read_result

    a, b = paths
    if report_path:
        from dhm.bench.report import own_report
        from dhm.io import check_output

        check_output(report_path, kind="file", command="bench", force=force, inputs=[a, b], own_file=own_report)
    text = compare(read_result(a), read_result(b), a.stem, b.stem)
    if report_path:
        from dhm.io import atomic_path

        with atomic_path(report_path) as tmp:
            tmp.write_text(text)
    click.echo(text)


def _soak(
    models: tuple[str, ...], data: Path | None, seconds: float, settings: BenchSettings, json_path: Path | None,
    report_path: Path | None, force: bool,
) -> None:  # fmt: skip
    """One model, a long stream: the soak's report printed, and written with --json/--report."""
    import json

    from dhm.bench.soak import markdown, run_soak
    from dhm.io import atomic_path, check_output

    if len(models) != 1 or data is None:
        raise DhmError("bench --soak needs one MODEL (an exported .mnn/.onnx with an audio model) and --data")
    for path in (json_path, report_path):
        if path is not None:
            check_output(path, kind="file", command="bench", force=force, inputs=[Path(models[0]), data])
    model = Path(models[0])
    if model.is_dir():
        raise DhmError(f"{model}: bench --soak runs one model file (e.g. {model}/model_fp32.mnn)")
    result = run_soak(model, data, seconds, threads=max(settings.threads), log=lambda m: click.echo(m, err=True))
    text = markdown(result)
    for path, body in ((json_path, json.dumps(result, indent=1) + "\n"), (report_path, text)):
        if path is not None:
            with atomic_path(path) as tmp:
                tmp.write_text(body)
    click.echo(text)
