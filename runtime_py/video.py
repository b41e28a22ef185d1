"""`dhm run`: render a lip-synced video of the dataset's speaker with any model file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dhm.audio.frontend import SAMPLE_RATE
from dhm.errors import DatasetError, OutputError, SpecError
from dhm.io import check_output, publish
from dhm.runtime_py.mp4 import Mp4Writer, read_mp4


CHUNK_SAMPLES = 320  # 20 ms: what an audio callback typically delivers


def read_pcm(wav: str | Path, log: Callable[[str], None]) -> np.ndarray:
    """16 kHz mono float PCM of a WAV (resampled, and said so, at any other rate)."""
    from dhm.audio.frontend import read_pcm

    samples, rate = read_pcm(wav)
    if rate != SAMPLE_RATE:
        log(f"{Path(wav).name}: {rate} Hz, resampled to {SAMPLE_RATE} Hz (soxr HQ)")
    return samples


def pcm_frames(session: Any, samples: np.ndarray, chunk: int) -> Iterator[np.ndarray]:
    """Frames of a PCM session fed `chunk` samples at a time, as a microphone would."""
    for start in range(0, samples.size, chunk):
        yield from session.push_pcm(samples[start : start + chunk])
    yield from session.finish()


def check_video(path: Path, frames: int, size: tuple[int, int], sound: bool, out: Path) -> None:
    """The file decodes as H.264 with every frame of `size` and, with `sound`, an AAC track as long
    as the video (to one AAC frame): a full disk or a failed encoder must not replace OUT."""
    try:
        info = read_mp4(path)
    except Exception as e:  # PyAV raises its own error types for every undecodable file
        raise OutputError(f"{out}: the video did not come out readable ({e}); nothing was replaced") from e
    even = (size[0] + size[0] % 2, size[1] + size[1] % 2)
    audio_ok = not sound or (info.audio_codec == "aac" and abs(info.audio_seconds - frames / info.fps) < 0.07)
    if info.video_codec != "h264" or info.frames != frames or info.size != even or not audio_ok:
        raise OutputError(
            f"{out}: the video did not come out whole ({info.frames} of {frames} frames, "
            f"{info.audio_seconds:.2f} s of sound; is the disk full?); nothing was replaced"
        )


def _temp_beside(out: Path) -> Path:
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}.", suffix=".mp4.part")
    os.close(fd)
    return Path(name)


def render_video(
    model: str | Path,
    data: str | Path,
    out: str | Path,
    audio_features: str | Path | None = None,
    wav: str | Path | None = None,
    side_by_side: str | Path | None = None,
    threads: int = 2,
    precision: str = "fp32",
    log: Callable[[str], None] = lambda _m: None,
    crop_interpolation: str | None = None,
    force: bool = False,
    audio_variant: str = "fp32",
    idle: Any = None,
) -> dict[str, Any]:
    """An H.264 + AAC video of `model` (and `side_by_side` beside it) speaking `data`'s clip,
    driven by feature files or by a WAV streamed through each model's audio model (with
    `idle`, an `IdleSettings`: footage in silence, see `dhm.runtime_py.idle`)."""
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise OutputError(f"{out}: the video is written as .mp4; give an output name ending in .mp4")
    check_output(out, kind="file", command="run", force=force, inputs=[model, side_by_side, data, audio_features, wav])
    if not out.parent.is_dir():
        raise OutputError(f"{out}: folder {out.parent} does not exist")
    pipelines, mode, ds = _pipelines(model, side_by_side, data, threads, precision, crop_interpolation, log)
    h, w = ds.frame_hw
    size = (w * len(pipelines), h)
    if (audio_features is None) == (wav is None):
        raise SpecError("give exactly one of --audio-features FILE.npy and --wav FILE.wav")
    sessions: list[Any] = []
    samples = None
    if wav is not None:
        samples = read_pcm(wav, log)
        idle_run = _idle_run(pipelines[0].engine, ds, mode, idle, samples, log) if idle is not None else None
        sessions, n_frames, streams = _pcm_streams(pipelines, wav, samples, mode, threads, audio_variant, idle_run, log)
    else:
        from dhm.data.dataset import read_features

        feats = read_features(audio_features, mode)
        n_frames = len(feats)
        streams = [p.frames(feats) for p in pipelines]
    # The sound under the video: the streamed WAV, or the dataset's own aud.wav
    pcm = samples if wav is not None else (read_pcm(ds.wav_path, log) if ds.wav_path is not None else None)
    # Written beside OUT under a temporary name; OUT appears only when complete and checked.
    video = _temp_beside(out)
    try:
        with Mp4Writer(video, mode.fps, size, pcm, SAMPLE_RATE) as writer:
            for frames in zip(*streams, strict=False):
                writer.write(np.concatenate(frames, axis=1) if len(frames) > 1 else frames[0])
        check_video(video, n_frames, size, pcm is not None, out)
        publish(video, out)
    finally:
        video.unlink(missing_ok=True)
    if pcm is None:
        log(f"{data}: no aud.wav, so the video is silent")
    return _summary(pipelines, sessions, out, n_frames, mode, pcm is not None, model, side_by_side)


def _pipelines(
    model: str | Path, side_by_side: str | Path | None, data: str | Path, threads: int, precision: str,
    crop_interpolation: str | None, log: Callable[[str], None],
) -> tuple[list[Any], Any, Any]:  # fmt: skip
    """The model's frame pipeline (and the side-by-side model's, which must listen alike), its
    audio mode and the dataset."""
    from dhm.data.dataset import open_dataset
    from dhm.runtime_py.engines import conventions_of, load
    from dhm.runtime_py.pipeline import AvatarPipeline

    engine = load(model, threads=threads, precision=precision, crop_interpolation=crop_interpolation)
    conv = conventions_of(engine)
    mode = conv.mode
    log(f"{Path(model).name}: {conv.describe()}")
    ds = open_dataset(data, need_features=False)
    pipelines = [AvatarPipeline(engine, ds, conv)]
    if side_by_side is not None:
        other = load(side_by_side, threads=threads, precision=precision)
        other_conv = conventions_of(other)
        if other_conv.mode != mode:
            raise SpecError(f"{side_by_side}: is a {other_conv.mode.name} model; {model} is {mode.name}")
        log(f"{Path(side_by_side).name}: {other_conv.describe()}")
        pipelines.append(AvatarPipeline(other, ds, other_conv))
    return pipelines, mode, ds


def _idle_run(engine: Any, ds: Any, mode: Any, settings: Any, samples: np.ndarray, log: Callable[[str], None]) -> Any:
    """The footage shown in silence (said in one line), the export's own voice model where it
    ships one, and a word on audio no detector can trust."""
    from dhm.runtime_py.idle import idle_footage, shipped_detector
    from dhm.runtime_py.session import IdleRun

    footage = idle_footage(ds, mode.fps, settings)
    log(footage.note)
    clipped = float(np.mean(np.abs(samples) >= 0.999)) if samples.size else 0.0
    if clipped > 0.001:
        log(f"the WAV is clipped ({100 * clipped:.1f} % of its samples at full scale): speech may be misjudged")
    shipped = shipped_detector(engine) if settings.detector == "silero" else None
    return IdleRun(settings, footage, shipped)


def _pcm_streams(
    pipelines: list[Any], wav: str | Path, samples: np.ndarray, mode: Any, threads: int, audio_variant: str,
    idle: Any, log: Callable[[str], None],
) -> tuple[list[Any], int, list[Any]]:  # fmt: skip
    """PCM -> each model's own audio model -> frames, streamed in 20 ms chunks."""
    from dhm.runtime_py.session import PcmSession
    from dhm.runtime_py.streaming import audio_front_end

    sessions = []
    for p in pipelines:
        front_end = audio_front_end(p.engine, threads=threads, variant=audio_variant)
        sessions.append(PcmSession(p, front_end, idle))
        log(f"{p.engine.path.name}: audio from {front_end.description}, lookahead {sessions[-1].lookahead_ms:.0f} ms")
    n_frames = sessions[0].front_end.spec.frames_for(samples.size)
    if n_frames == 0:
        raise DatasetError(
            f"{wav}: too short for one video frame ({1000 / mode.fps:.0f} ms at {mode.fps} fps); nothing to render"
        )
    return sessions, n_frames, [pcm_frames(s, samples, CHUNK_SAMPLES) for s in sessions]


def _summary(
    pipelines: list[Any], sessions: list[Any], out: Path, n_frames: int, mode: Any, audio: bool,
    model: str | Path, side_by_side: str | Path | None,
) -> dict[str, Any]:  # fmt: skip
    """What was rendered, and what each frame cost (the audio model's share included)."""
    times = pipelines[0].times
    stage_ms = times.per_frame_ms()
    fps = times.fps()
    if sessions:  # the audio model's share, per frame
        stage_ms["audio"] = 1000.0 * sessions[0].audio_seconds / max(1, times.frames)
        total_ms = sum(stage_ms.values())
        fps = 1000.0 / total_ms if total_ms > 0 else float("inf")
    return {
        "out": str(out),
        "frames": n_frames,
        "fps": mode.fps,
        "audio": audio,
        "stage_ms": stage_ms,
        "pipeline_fps": fps,
        "generated": times.frames,
        **(
            {"audio_model": sessions[0].front_end.description, "lookahead_ms": sessions[0].lookahead_ms}
            if sessions
            else {}
        ),
        **({"idle": _idle_summary(sessions[0])} if sessions and sessions[0].idle is not None else {}),
        "models": [str(model)] + ([str(side_by_side)] if side_by_side else []),
    }


def _idle_summary(session: Any) -> dict[str, Any]:
    """How many frames the models painted, and the line that says it."""
    r = session.summary()
    frames, inferred = r["frames"], r["inferred"]
    if r["speech_frames"] == 0:
        line = (
            f"idle: no speech heard by {r['detector']}: none of the {frames} frames was generated; "
            "the video shows the speaker's footage"
        )
    else:
        line = (
            f"idle: {r['detector']} heard speech in {r['speech_frames']} of {frames} frames; the generator ran for "
            f"{inferred} ({100 * inferred / max(1, frames):.0f} %, fades of {r['ramp_frames']} frames included), "
            f"the audio model for {r['audio_calls']} of {r['audio_calls_available']} windows"
        )
    return {**r, "line": line}
