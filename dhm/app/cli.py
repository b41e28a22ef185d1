"""The `dhm` command line: the group, its error handling, and the stages' commands assembled.

Each stage owns its commands (`distill/cli.py`, `quantize/cli.py`, `export/cli.py`,
`bench/cli.py`, `runtime_py/cli.py`), generated from its settings dataclass; the few that
have no stage of their own (info, data, features, app-assets, golden, demo) are here. Heavy
libraries (torch, onnxruntime, MNN) are imported inside the commands, so `dhm --help` stays
instant. Known failures (`dhm.errors.DhmError`) print one line on stderr and exit non-zero;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from dhm import __version__
from dhm.errors import DhmError, Terminated
from dhm.bench.cli import bench as bench_command
from dhm.bench.probe import ProbeSettings
from dhm.distill.cli import distill as distill_command
from dhm.distill.cli import distill_audio as distill_audio_command
from dhm.distill.cli import train as train_command
from dhm.export.cli import export as export_command
from dhm.quantize.cli import quantize as quantize_command
from dhm.runtime_py.cli import run as run_command
from dhm.settings import Count, Finite, click_options, crop_interpolation_option, pick

SEED = Count(0, 2**32 - 1)


def _os_error_line(exc: OSError) -> str:
    """One line for a failed file operation: a full disk, a read-only or vanished folder."""
    import errno

    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        reason = f"{reason}: the disk (or the file size limit) is full"
    elif exc.errno is None:  # numpy's short writes say only what they wrote
        reason = f"a write failed ({reason}); is the disk full?"
    where = exc.filename or ""
    return f"{where}: {reason}" if where else reason


class DhmGroup(click.Group):
    """A click group that turns every expected failure into one line and an exit code:
    DhmError (1), a bad option value (2), a failed file operation such as a full disk (1),
    Ctrl-C (130) and SIGTERM (143). Whatever was being written has been cleaned up by then."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DhmError as exc:
            click.echo(f"dhm: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except click.exceptions.Exit:
            raise
        except click.UsageError as exc:
            click.echo(f"dhm: error: {exc.format_message()}", err=True)
            ctx.exit(2)
        except OSError as exc:
            click.echo(f"dhm: error: {_os_error_line(exc)}", err=True)
            ctx.exit(1)
        except MemoryError:
            click.echo(
                "dhm: error: out of memory (the inputs or settings ask for more than this machine has)", err=True
            )
            ctx.exit(1)
        except Terminated:
            click.echo("dhm: terminated", err=True)
            ctx.exit(143)
        except KeyboardInterrupt:
            click.echo("dhm: interrupted", err=True)
            ctx.exit(130)


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


@click.group(cls=DhmGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="dhm")
def main() -> None:
    """dhm: take a trained 2.5D talking-head generator (Ultralight-Digital-Human style)
    and make it run on a phone.

    \b
    Pipeline:
      dhm data synth   write the built-in talking-head dataset (no download)
      dhm features     HuBERT / wenet teacher features of WAVs, exactly as Ultralight
      dhm info         what a checkpoint is: arch, audio mode, widths, MACs, size
      dhm train        train a generator on a dataset folder
      dhm distill      teacher -> smaller student, judged on held-out frames
      dhm distill-audio  HuBERT/wenet features -> a small streaming audio student
      dhm quantize     FP16 and INT8 variants calibrated on held-out frames
      dhm export       checkpoint -> validated ONNX and MNN files + manifest.json
      dhm run          render a lip-synced video with any .pt / .onnx / .mnn model
      dhm bench        parity and latency against the full teacher, host or phone (adb)
      dhm app-assets   copy a model, its manifest and a clip into the Android/iOS demos
      dhm golden       golden vectors the native core is tested against
      dhm demo         all of the above on the built-in data, one summary table

    \b
    Outputs: nothing is written over an input, and an existing output that is not the
    command's own earlier one is replaced only with --force; everything appears complete or
    not at all (a failure, Ctrl-C or a full disk leaves the old output as it was).
    """
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


# ----------------------------------------------------------------------------- info


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the facts as JSON.")
@click.option(
    "--latency",
    is_flag=True,
    help="Also time the student presets (widths in 4- and 8-channel packs) untrained on --budget-engine and "
    "show which are on the Pareto front of latency against MACs (cached per machine).",
)
@click_options(ProbeSettings, only=("budget_engine", "budget_threads", "budget_precision", "budget_runs"))
@crop_interpolation_option
def info(checkpoint: Path, as_json: bool, latency: bool, crop_interpolation: str | None, **kw: Any) -> None:
    """Describe a generator checkpoint (Ultralight, FeatherTalk or dhm format).

    Detects the family, the upstream revision (key layout, audio branch), the audio mode
    and window and the channel widths from tensor names and shapes, and reports the crop
    filter the model expects, parameters, MACs per frame and file size. The file is
    loaded with torch.load(weights_only=True): pickled code is refused, never run.
    """
    from dhm.models.info import checkpoint_info

    facts = checkpoint_info(checkpoint, crop_interpolation=crop_interpolation)
    if latency:
        from dhm.distill.budget import preset_front
        from dhm.models.checkpoint import load_checkpoint

        spec = load_checkpoint(checkpoint, crop_interpolation=crop_interpolation).spec
        facts["presets_by_latency"] = preset_front(spec, pick(ProbeSettings, kw), log=lambda m: click.echo(m, err=True))
    if as_json:
        click.echo(json.dumps(facts, indent=2))
        return
    for key, label in (
        ("detected", "detected"),
        ("arch_text", "family"),
        ("revision_text", "revision"),
        ("mode", "audio mode"),
        ("window_text", "audio window"),
        ("crop_text", "crop filter"),
        ("widths_text", "widths"),
        ("params_text", "parameters"),
        ("macs_text", "MACs / frame"),
        ("file_size_text", "file size"),
        ("form", "format"),
        ("inputs_text", "inputs"),
        ("output_text", "output"),
    ):
        click.echo(f"{label:>13}: {facts[key]}")
    if latency:
        from dhm.distill.budget import front_markdown

        click.echo("\n" + "\n".join(front_markdown(facts["presets_by_latency"])))


# ----------------------------------------------------------------------------- data


@main.group(cls=DhmGroup)
def data() -> None:
    """Datasets in Ultralight's folder layout."""


@data.command("synth")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--frames", default=500, show_default=True, type=Count(8, 100_000), help="Number of video frames.")
@click.option(
    "--seed", default=0, show_default=True, type=SEED, help="Random seed; the same seed gives the same bytes."
)
@click.option(
    "--mode",
    type=click.Choice(["hubert", "wenet"]),
    default="hubert",
    show_default=True,
    help="Feature layout to write: aud_hu.npy at 25 fps, or aud_wenet.npy at 20 fps.",
)
@click.option(
    "--scale",
    default=1.0,
    show_default=True,
    type=Finite(0.5, 8.0),
    help="Frame and face size: 1 gives a ~138 px face box (upscaled to the 168 px crop), 1.6 a ~220 px one "
    "(downscaled).",
)
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def data_synth(out: Path, frames: int, seed: int, mode: str, scale: float, force: bool) -> None:
    """Write the built-in talking-head dataset to OUT.

    A procedurally rendered speaker whose mouth follows a synthetic voice, in exactly
    the layout Ultralight's preprocessing produces (full_body_img/, landmarks/,
    aud_hu.npy or aud_wenet.npy, aud.wav), plus synth.json describing the clip.
    """
    from dhm.data.synth import write_synth_dataset

    with click.progressbar(length=frames, label="rendering", file=sys.stderr) as bar:
        path = write_synth_dataset(
            out, frames=frames, seed=seed, mode=mode, force=force, progress=lambda i, n: bar.update(1), scale=scale
        )
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


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--hubert",
    "hubert_dir",
    type=click.Path(path_type=Path),
    help="A local transformers HubertModel folder (your hubert-large-ls960-ft): hubert features.",
)
@click.option(
    "--wenet",
    "wenet_onnx",
    type=click.Path(path_type=Path),
    help="Your wenet encoder.onnx (Ultralight's streaming conformer): wenet features.",
)
@click.option(
    "-o", "--out-dir", type=click.Path(path_type=Path), default=None, help="Write here instead of beside each WAV."
)
@click.option("--force", is_flag=True, help="Replace existing feature files.")
def features(
    inputs: tuple[Path, ...], hubert_dir: Path | None, wenet_onnx: Path | None, out_dir: Path | None, force: bool
) -> None:
    """Teacher audio features of WAVs (or dataset folders' aud.wav), exactly as
    Ultralight's data_utils/hubert.py and wenet_infer.py compute them.

    \b
    x.wav -> x_hu.npy    [N,2,1024] at 25 fps   (--hubert FOLDER)
    x.wav -> x_wenet.npy [N,16,512] at 20 fps   (--wenet encoder.onnx)

    Weights are read from this disk only (no hub access). WAVs at other rates are resampled
    to 16 kHz with soxr's HQ filter (what librosa.resample does upstream); of a stereo WAV
    the first channel is used, as upstream does. A dataset folder's features are checked
    against its video frame count (at most 2 apart). Needs the audio extra:
    pip install 'dhm[audio]'.
    """
    from dhm.audio.teacher import open_teacher, plan_feature_jobs, run_feature_job
    from dhm.io import ensure_writable_dir

    if (hubert_dir is None) == (wenet_onnx is None):
        raise click.UsageError("give exactly one teacher: --hubert FOLDER or --wenet encoder.onnx")
    mode = "hubert" if hubert_dir is not None else "wenet"
    if out_dir is not None:
        ensure_writable_dir(out_dir)
    jobs = plan_feature_jobs(mode, list(inputs), out_dir, force)
    teacher = open_teacher(mode, hubert_dir or wenet_onnx)
    with click.progressbar(jobs, label=f"{mode} features", file=sys.stderr) as bar:
        for job in bar:
            feats, rate = run_feature_job(teacher, mode, job)
            note = f", resampled from {rate} Hz" if rate != 16000 else ""
            click.echo(f"{job.wav} -> {job.out}: {list(feats.shape)}{note}", err=False)


# ----------------------------------------------------------------------------- native apps


@main.command("app-assets")
@click.argument("export_dir", type=click.Path(path_type=Path))
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path),
    help="Dataset folder: the clip's frames, landmarks, features and audio.",
)
@click.option(
    "-o",
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Assets folder, e.g. android_demo/app/src/main/assets/dhm or ios_demo/Resources/dhm.",
)
@click.option(
    "--variant",
    default="fp16",
    show_default=True,
    type=click.Choice(["fp32", "fp16", "int8"]),
    help="Which MNN model of the export to ship.",
)
@click.option("--frames", default=250, show_default=True, type=Count(2, 100_000), help="Clip length in frames.")
@click.option("--force", is_flag=True, help="Replace OUT even if it is not an earlier `dhm app-assets` output.")
def app_assets(export_dir: Path, data: Path, out: Path, variant: str, frames: int, force: bool) -> None:
    """Copy an exported MNN model, its manifest and a short clip into a demo app.

    \b
    Android: dhm app-assets export --data data -o android_demo/app/src/main/assets/dhm
    iOS:     dhm app-assets export --data data -o ios_demo/Resources/dhm
    """
    from dhm.runtime_py.app_assets import write_app_assets

    r = write_app_assets(export_dir, data, out, variant=variant, frames=frames, force=force)
    click.echo(
        f"wrote {r['out']}: {r['model']} ({r['variant']}) as model.mnn, manifest.json, {r['frames']} clip frames"
    )


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Dataset folder.")
@click.option(
    "-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="Output folder of golden vectors."
)
@click.option("--frames", default=6, show_default=True, type=Count(1, 1000), help="Output frames to record.")
@click.option("--force", is_flag=True, help="Replace OUT even if it is not an earlier `dhm golden` output.")
def golden(model: Path, data: Path, out: Path, frames: int, force: bool) -> None:
    """Golden vectors for native ports: what runtime_py computes for a few frames.

    Per frame: the reference frame, its landmarks, the network inputs, MODEL's outputs and
    the pasted frame. The C++ core, the JNI glue and the iOS bridge are tested against
    them (bit-exact or within 1 LSB).
    """
    from dhm.runtime_py.golden import write_golden

    r = write_golden(model, data, out, frames=frames, force=force)
    click.echo(f"wrote {r['cases']} golden cases ({r['engine']}) to {r['out']}")


# ----------------------------------------------------------------------------- demo


@main.command()
@click.option(
    "--workdir",
    default="demo_work",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Where every stage writes; finished stages are reused.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="Tiny data and budgets, for tests: models of 10-20 steps, so the numbers mean little and the "
    "video's mouth is a grey patch.",
)
@click.option(
    "--full",
    is_flag=True,
    help="Also the audio-encoder path: distill-audio on the teacher's features, the INT8 student exported with "
    "that audio student, a video driven from PCM through it.",
)
@click.option(
    "--train-teacher",
    is_flag=True,
    help="Train the teacher here (7-9 min on a 2-core laptop) instead of starting from the one dhm ships, which "
    "this recipe trained.",
)
def demo(workdir: Path, quick: bool, full: bool, train_teacher: bool) -> None:
    """The whole pipeline on the built-in data, no download.

    synth data -> the teacher (the one dhm ships, trained by this recipe; --train-teacher trains
    it here) -> distil a student -> quantize (FP16, INT8) -> export
    ONNX and MNN -> a side-by-side video (teacher | INT8 student) -> dhm bench, then one
    table with MACs, size, host latency, end-to-end fps and PSNR against the teacher for
    every variant. A second run skips finished stages; a changed input re-runs what
    depends on it. --full adds the audio student (`dhm distill-audio`), judged on held-out
    audio, exported into the INT8 student's audio-model slot and rendered from PCM.
    """
    from dhm.app.demo import run_demo

    log = lambda m: click.echo(m, err=True)  # noqa: E731
    summary = run_demo(workdir, quick=quick, full=full, log=log, train_teacher=train_teacher)
    click.echo(summary["table"])
    click.echo(
        f"stages run: {', '.join(summary['ran']) or 'none'}; skipped: {', '.join(summary['skipped']) or 'none'}; "
        f"{summary['seconds']:.0f} s; video: {summary['video']}; bench report: {summary['bench_report']}"
    )


# The stages' own commands, each generated from its stage's config dataclass
main.add_command(quantize_command)
main.add_command(export_command)
main.add_command(distill_audio_command)
main.add_command(train_command)
main.add_command(distill_command)
main.add_command(bench_command)
main.add_command(run_command)


if __name__ == "__main__":  # pragma: no cover
    main()
