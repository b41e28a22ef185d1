"""The `dhm` command line: a thin click layer, one library call per command.

Heavy libraries (torch, onnxruntime, MNN) are imported inside the commands, so
`dhm --help` stays instant. Known failures (`dhm.errors.DhmError`) print one line on
stderr and exit non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from dhm import __version__
from dhm.errors import DhmError


class DhmGroup(click.Group):
    """A click group that turns DhmError into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DhmError as exc:
            click.echo(f"dhm: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("dhm: interrupted", err=True)
            ctx.exit(130)


@click.group(cls=DhmGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="dhm")
def main() -> None:
    """dhm: take a trained 2.5D talking-head generator (Ultralight-Digital-Human style)
    and make it run on a phone.

    \b
    Pipeline:
      dhm data synth   write the built-in talking-head dataset (no download)
      dhm info         what a checkpoint is: arch, audio mode, widths, MACs, size
      dhm export       checkpoint -> validated ONNX and MNN files + manifest.json
    """


# ----------------------------------------------------------------------------- info


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the facts as JSON.")
def info(checkpoint: Path, as_json: bool) -> None:
    """Describe a generator checkpoint (Ultralight or dhm format).

    Detects the architecture, audio mode and channel widths from the tensor shapes, and
    reports parameters, MACs per frame and file size. The file is loaded with
    torch.load(weights_only=True): pickled code is refused, never run.
    """
    from dhm.models.info import checkpoint_info

    facts = checkpoint_info(checkpoint)
    if as_json:
        click.echo(json.dumps(facts, indent=2))
        return
    for key, label in (
        ("arch", "arch"),
        ("mode", "audio mode"),
        ("widths_text", "widths"),
        ("params_text", "parameters"),
        ("macs_text", "MACs / frame"),
        ("file_size_text", "file size"),
        ("form", "format"),
        ("inputs_text", "inputs"),
        ("output_text", "output"),
    ):
        click.echo(f"{label:>13}: {facts[key]}")


# ----------------------------------------------------------------------------- data


@main.group(cls=DhmGroup)
def data() -> None:
    """Datasets in Ultralight's folder layout."""


@data.command("synth")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--frames", default=500, show_default=True, help="Number of video frames.")
@click.option("--seed", default=0, show_default=True, help="Random seed; the same seed gives the same bytes.")
@click.option(
    "--mode",
    type=click.Choice(["hubert", "wenet"]),
    default="hubert",
    show_default=True,
    help="Feature layout to write: aud_hu.npy at 25 fps, or aud_wenet.npy at 20 fps.",
)
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def data_synth(out: Path, frames: int, seed: int, mode: str, force: bool) -> None:
    """Write the built-in talking-head dataset to OUT.

    A procedurally rendered speaker whose mouth follows a synthetic voice, in exactly
    the layout Ultralight's preprocessing produces (full_body_img/, landmarks/,
    aud_hu.npy or aud_wenet.npy, aud.wav), plus synth.json describing the clip.
    """
    from dhm.data.synth import write_synth_dataset
    from dhm.errors import OutputError

    if out.exists() and not force:
        raise OutputError(f"{out}: already exists (use --force to replace it)")
    if frames < 8:
        raise click.BadParameter("at least 8 frames", param_hint="--frames")
    with click.progressbar(length=frames, label="rendering", file=sys.stderr) as bar:
        path = write_synth_dataset(out, frames=frames, seed=seed, mode=mode, force=force, progress=lambda i, n: bar.update(1))
    click.echo(f"wrote {frames} frames ({mode}, seed {seed}) to {path}")


@data.command("check")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--mode", type=click.Choice(["hubert", "wenet"]), default=None, help="Require this mode's features.")
def data_check(folder: Path, mode: str | None) -> None:
    """Check an Ultralight dataset folder, decoding every frame."""
    from dhm.data import open_dataset

    ds = open_dataset(folder, mode=mode)
    ds.check(decode=True)
    click.echo(
        f"{folder}: {ds.n_frames} frames of {ds.frame_hw[1]}x{ds.frame_hw[0]}, "
        f"{ds.landmarks.shape[1]} landmarks each, features: {', '.join(ds.modes)}"
    )


# --------------------------------------------------------------------------- export


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="Output folder (created atomically).")
@click.option(
    "--target",
    default="all",
    show_default=True,
    help="onnx, mnn or all (comma-separated).",
)
@click.option("--variants", default="fp32", show_default=True, help="Comma-separated: fp32, fp16 (int8: from a quantize output).")
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Dataset folder: validate on its held-out frames instead of random inputs.")
@click.option("--frames", default=8, show_default=True, help="Validation frames.")
@click.option("--opset", default=None, type=int, help="ONNX opset (default 17).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists (only after the new export succeeded).")
def export(model: Path, out: Path, target: str, variants: str, data: Path | None, frames: int, opset: int | None, force: bool) -> None:
    """Export MODEL (a dhm or Ultralight checkpoint) to validated ONNX and MNN files.

    \b
    OUT/model_<variant>.onnx   torch -> ONNX (static shapes; inputs face, audio; output out),
                               checked, simplified with onnxsim only if it still matches
    OUT/model_<variant>.mnn    ONNX -> MNN through MNN's compiled converter in a child process
    OUT/manifest.json          I/O, preprocessing, audio window, versions, sha256, parity
    OUT/report.md              size and parity per artefact

    Every artefact is run by its engine against the torch FP32 model and must match
    (FP32: max abs diff <= 1e-4), or nothing is written. No network, no installs.
    """
    from dhm.export.pipeline import export_model

    targets = "onnx,mnn" if target == "all" else target
    result = export_model(
        model,
        out,
        targets=targets,
        variants=variants,
        data=data,
        frames=frames,
        force=force,
        opset=opset,
        log=lambda msg: click.echo(msg, err=True),
    )
    click.echo(result.table())
    click.echo(f"wrote {len(result.artifacts)} artefacts and manifest.json to {result.out_dir}")


if __name__ == "__main__":  # pragma: no cover
    main()
