"""`dhm app-assets`: the bundle the Android and iOS demos embed: an exported MNN model
with its manifest, and a short clip of the dataset's speaker."""

from __future__ import annotations

import json
import shutil
import wave
from pathlib import Path
from typing import Any

from dhm.errors import DatasetError, SpecError


def write_app_assets(
    export_dir: str | Path,
    data: str | Path,
    out: str | Path,
    variant: str = "fp16",
    frames: int = 250,
    force: bool = False,
) -> dict[str, Any]:
    """Everything a demo app embeds: the model and its manifest, and a short clip (reference
    frames as JPEG, their landmarks, the clip's features as .f32, the clip's audio as WAV).

    The model shipped is the one the manifest lists, checked against its sha256: a
    tampered or replaced file is never put into an app."""
    from dhm.data.dataset import open_dataset
    from dhm.io import atomic_dir, check_output
    from dhm.manifest import MANIFEST_FILE, read_manifest
    from dhm.models.checkpoint import file_sha256
    from dhm.runtime_py.golden import write_f32
    from dhm.spec import audio_mode

    export_dir = Path(export_dir)
    if not 2 <= frames <= 100_000:
        raise SpecError(f"--frames {frames}: expected 2 … 100,000")
    check_output(out, kind="dir", command="app-assets", force=force, inputs=[export_dir, data])
    manifest = read_manifest(export_dir / MANIFEST_FILE)
    arts = [a for a in manifest["artifacts"] if a["engine"] == "mnn" and a["variant"] == variant]
    if not arts:
        have = sorted({a["variant"] for a in manifest["artifacts"] if a["engine"] == "mnn"})
        raise SpecError(f"{export_dir}: no MNN {variant} model (MNN variants there: {', '.join(have) or 'none'})")
    model = export_dir / arts[0]["file"]  # a plain file name: read_manifest checked it
    if not model.is_file() or model.is_symlink():
        raise SpecError(f"{model}: listed in the manifest but missing (or a link)")
    if file_sha256(model) != arts[0]["sha256"]:
        raise SpecError(f"{model}: sha256 differs from {export_dir / MANIFEST_FILE}: the file was changed or replaced")
    mode = manifest["generator"]["mode"]
    fps = audio_mode(mode).fps
    ds = open_dataset(data, mode=mode)
    n = min(frames, ds.n_frames)
    if n < 2:
        raise DatasetError(f"{data}: too few frames for a clip")
    feats = ds.audio(mode)[:n]
    with atomic_dir(out, replace=True, command="app-assets") as tmp:
        shutil.copy(model, tmp / "model.mnn")
        m = dict(manifest)
        m["artifacts"] = [dict(arts[0], file="model.mnn")]
        (tmp / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
        clip = tmp / "clip"
        clip.mkdir()
        for i in range(n):
            shutil.copy(ds.image_path(i), clip / f"{i}.jpg")
            shutil.copy(ds.landmark_path(i), clip / f"{i}.lms")
        write_f32(clip / "features.f32", feats)
        wav = ds.wav_path
        if wav is not None:
            _cut_wav(wav, clip / "audio.wav", n / fps)
        (clip / "clip.json").write_text(
            json.dumps({"frames": n, "fps": fps, "mode": mode, "audio": wav is not None}, indent=2) + "\n"
        )
    return {"out": str(out), "frames": n, "model": arts[0]["file"], "variant": variant}


def _cut_wav(src: Path, dst: Path, seconds: float) -> None:
    with wave.open(str(src), "rb") as r:
        params = r.getparams()
        data = r.readframes(min(r.getnframes(), int(seconds * r.getframerate())))
    with wave.open(str(dst), "wb") as w:
        w.setparams(params)
        w.writeframes(data)
