"""`dhm app-assets`: the bundle the Android and iOS demos embed: an exported MNN model
with its manifest, and a short clip of the dataset's speaker."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from dhm.errors import DatasetError, SpecError
from dhm.runtime_py.engines.registry import for_format, get


def write_app_assets(
    export_dir: str | Path,
    data: str | Path,
    out: str | Path,
    variant: str = "fp16",
    frames: int = 250,
    force: bool = False,
) -> dict[str, Any]:
    """Everything a demo app embeds: the model and its manifest, the audio model when the
    export has one, and a short clip (reference frames as JPEG, their landmarks, the
    clip's audio as 16 kHz mono WAV). The app turns the audio into frames itself; only a
    model without an audio model gets the clip's precomputed features (features.f32).

    Every model shipped is the one the manifest lists, checked against its sha256: a
    tampered or replaced file is never put into an app."""
    from dhm.data.dataset import open_dataset
    from dhm.io import atomic_dir, check_output
    from dhm.manifest import MANIFEST_FILE, listed_file, read_manifest
    from dhm.spec import audio_mode

    export_dir = Path(export_dir)
    if not 2 <= frames <= 100_000:
        raise SpecError(f"--frames {frames}: expected 2 … 100,000")
    check_output(out, kind="dir", command="app-assets", force=force, inputs=[export_dir, data])
    manifest = read_manifest(export_dir / MANIFEST_FILE)
    shipped = [a for a in manifest["artifacts"] if get(a["engine"]).ships]  # what the apps run: MNN
    arts = [a for a in shipped if a["variant"] == variant]
    if not arts:
        have = sorted({a["variant"] for a in shipped})
        raise SpecError(f"{export_dir}: no MNN {variant} model (MNN variants there: {', '.join(have) or 'none'})")
    model = listed_file(export_dir, arts[0], export_dir / MANIFEST_FILE)  # a plain file name: read_manifest checked it
    mode = manifest["generator"]["mode"]
    fps = audio_mode(mode).fps
    ds = open_dataset(data, mode=mode)
    n = min(frames, ds.n_frames)
    if n < 2:
        raise DatasetError(f"{data}: too few frames for a clip")
    audio_model = _audio_model(export_dir, manifest)
    if audio_model is not None and ds.wav_path is None:
        raise DatasetError(f"{data}: no aud.wav; the app's audio model needs the clip's audio")
    with atomic_dir(out, replace=True, command="app-assets") as tmp:
        shutil.copy(model, tmp / "model.mnn")
        m = dict(manifest)
        m["artifacts"] = [dict(arts[0], file="model.mnn")]
        if audio_model is not None:
            path, entry = audio_model
            shutil.copy(path, tmp / "audio.mnn")
            m["audio_model"] = dict(manifest["audio_model"], artifacts=[dict(entry, file="audio.mnn")])
        else:
            m.pop("audio_model", None)
        vad = _shipped_file(export_dir, manifest, "vad") if audio_model is not None else None
        if vad is not None:  # the voice detector rests the mouth in silence (silero-vad on MNN)
            shutil.copy(vad[0], tmp / "vad.mnn")
            m["vad"] = dict(manifest["vad"], artifacts=[dict(vad[1], file="vad.mnn")])
        else:
            m.pop("vad", None)
        (tmp / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
        _write_clip(tmp / "clip", ds, n, fps, mode, audio_model is not None, vad is not None)
    return {
        "out": str(out),
        "frames": n,
        "model": arts[0]["file"],
        "variant": variant,
        "audio_model": audio_model[1]["file"] if audio_model else None,
        "vad": vad[1]["file"] if vad else None,
    }


def _write_clip(
    clip: Path, ds: Any, n: int, fps: int, mode: str, pcm: bool, vad: bool
) -> None:  # fmt: skip
    """The clip: its first `n` reference frames and landmarks, its audio (16 kHz WAV), features
    where the app has no audio model, and clip.json (with the idle footage where a detector ships)."""
    from dhm.runtime_py.golden import write_f32

    clip.mkdir()
    for i in range(n):
        shutil.copy(ds.image_path(i), clip / f"{i}.jpg")
        shutil.copy(ds.landmark_path(i), clip / f"{i}.lms")
    if not pcm:  # features computed off the phone
        write_f32(clip / "features.f32", ds.audio(mode)[:n])
    wav = ds.wav_path
    if wav is not None:
        _cut_wav(wav, clip / "audio.wav", n / fps)
    info: dict[str, Any] = {"frames": n, "fps": fps, "mode": mode, "audio": wav is not None, "pcm": pcm}
    if vad:  # the clip frames the app shows in silence (the same detector on the clip's audio)
        from dhm.runtime_py.idle import IdleSettings, idle_footage

        footage = idle_footage(ds, fps, IdleSettings(), frames=n)
        info["idle_footage"] = {
            "frames": footage.frames,
            "mouth": footage.mouth,
            "silent": footage.silent,
            "note": footage.note,
        }
    (clip / "clip.json").write_text(json.dumps(info, indent=2) + "\n")


def _audio_model(export_dir: Path, manifest: dict[str, Any]) -> tuple[Path, dict[str, Any]] | None:
    """The export's MNN audio model, checked against its sha256 (None: the model is fed features)."""
    return _shipped_file(export_dir, manifest, "audio_model")


def _shipped_file(export_dir: Path, manifest: dict[str, Any], section_name: str) -> tuple[Path, dict[str, Any]] | None:
    """The MNN file of a manifest section (`audio_model`, `vad`), checked against its sha256."""
    from dhm.manifest import MANIFEST_FILE, listed_file

    section = manifest.get(section_name)
    if section is None:
        return None
    entries = [a for a in section["artifacts"] if for_format(a["format"]).ships]
    if not entries:
        what = {"audio_model": "audio model", "vad": "voice detector"}[section_name]
        raise SpecError(f"{export_dir}: its {what} has no MNN file; export with --target mnn")
    return listed_file(export_dir, entries[0], export_dir / MANIFEST_FILE), entries[0]


def _cut_wav(src: Path, dst: Path, seconds: float) -> None:
    """The clip's audio as 16 kHz mono PCM16: what the apps push to the core as they play it."""
    from dhm.audio.frontend import SAMPLE_RATE, read_pcm, write_wav

    write_wav(dst, read_pcm(src)[0][: int(round(seconds * SAMPLE_RATE))], SAMPLE_RATE)
