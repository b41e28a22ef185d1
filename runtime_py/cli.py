"""`dhm run`: the reference runtime's command (`render_video`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dhm.runtime_py.idle import IdleSettings
from dhm.settings import Count, click_options, crop_interpolation_option, pick


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--data", required=True, type=click.Path(path_type=Path), help="Dataset folder: the speaker's frames and landmarks."
)
@click.option(
    "--audio-features",
    type=click.Path(path_type=Path),
    default=None,
    help="Precomputed features (.npy, [N,2,1024] hubert or [N,16,512] wenet).",
)
@click.option(
    "--wav",
    type=click.Path(path_type=Path),
    default=None,
    help="A WAV file (any rate; resampled to 16 kHz), streamed in 20 ms chunks through the model's audio model "
    "(the manifest's audio_fp32.mnn/.onnx, or dhm's numpy front end for a .pt trained on dhm features).",
)
@click.option(
    "--audio-variant",
    default="fp32",
    show_default=True,
    type=click.Choice(["fp32", "fp16", "int8"]),
    help="With --wav: which of the export's audio model files turns PCM into features (fp16/int8 exist for an "
    "audio student exported with those variants; the export report gives what each costs in frame PSNR).",
)
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="Output .mp4.")
@click.option(
    "--side-by-side", type=click.Path(path_type=Path), default=None, help="A second model rendered next to the first."
)
@click.option("--threads", default=2, show_default=True, type=Count(1, 1024), help="Inference threads.")
@click.option(
    "--precision",
    default="fp32",
    show_default=True,
    type=click.Choice(["fp32", "fp16"]),
    help="Engine precision (MNN: high/low).",
)
@click.option(
    "--idle/--no-idle",
    default=True,
    show_default=True,
    help="With --wav: in silence show the speaker's own footage (the longest silent stretch of the dataset's "
    "clip) and run neither model; fade the generated mouth in and out around speech.",
)
@click_options(IdleSettings)
@crop_interpolation_option
@click.option(
    "--force", is_flag=True, help="Replace OUT if it exists (only once the new video is complete and checked)."
)
def run(model: Path, data: Path, out: Path, **kw: Any) -> None:
    """Render a lip-synced video of the dataset's speaker with MODEL (.pt/.pth, .onnx or .mnn).

    Reference frames run in Ultralight's ping-pong order; each frame is cropped, masked,
    inferred and pasted back exactly as in training. The MP4 is H.264 with the AAC sound
    of the WAV (or the dataset's aud.wav), the first frame at audio time 0: it plays in
    browsers and phone galleries.
    """
    from dhm.runtime_py.video import render_video

    idle = pick(IdleSettings, kw) if kw.pop("idle") else None
    kw = {k: v for k, v in kw.items() if k not in IdleSettings.__dataclass_fields__}
    r = render_video(model, data, out, log=lambda m: click.echo(m, err=True), idle=idle, **kw)
    ms = r["stage_ms"]
    cost = (
        "per generated frame: "
        + ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items())
        + f" = {r['pipeline_fps']:.1f} fps"
        if r["generated"]
        else "no frame needed a model"
    )
    click.echo(
        f"wrote {r['frames']} frames at {r['fps']} fps to {r['out']} ({'with' if r['audio'] else 'without'} audio); "
        + cost
    )
    if "lookahead_ms" in r:
        click.echo(f"audio: {r['audio_model']}; audio-to-frame lookahead {r['lookahead_ms']:.0f} ms plus compute")
    if r.get("idle"):
        click.echo(r["idle"]["line"])
