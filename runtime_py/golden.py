"""Golden vectors for native ports of the pipeline (`dhm golden`).

`write_golden` runs `AvatarPipeline` (the reference runtime) with a real engine and
records, per output frame: the reference frame (decoded, raw BGR), its landmarks, the
network inputs the pipeline built, the engine's outputs and the pasted frame. The C++
core, the JNI glue and the Objective-C++ bridge must reproduce the inputs and the
pasted frame from the same frame, landmarks and features (bit-exact or within 1 LSB).

Files (little-endian): `*.u8` = int32 h, w, c + bytes; `*.f32` = int32 ndim, dims + float32.
`cases.txt` lists "index reference" per case; `manifest.json` is the model's.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dhm.errors import DatasetError, SpecError


def write_u8(path: Path, img: np.ndarray) -> None:
    img = np.ascontiguousarray(img, dtype=np.uint8)
    if img.ndim != 3:
        raise ValueError("expected an HWC image")
    with open(path, "wb") as f:
        f.write(np.asarray(img.shape, dtype="<i4").tobytes())
        f.write(img.tobytes())


def write_f32(path: Path, arr: np.ndarray) -> None:
    arr = np.ascontiguousarray(arr, dtype="<f4")
    with open(path, "wb") as f:
        f.write(np.asarray([arr.ndim, *arr.shape], dtype="<i4").tobytes())
        f.write(arr.tobytes())


class _Recording:
    """An engine wrapper that keeps every input and output (for the replay engine)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.calls: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.engine.run(inputs)
        self.calls.append(({k: np.array(v) for k, v in inputs.items()}, {k: np.array(v) for k, v in out.items()}))
        return out


def _manifest_beside(model: Path) -> Path:
    from dhm.manifest import MANIFEST_FILE

    m = model.parent / MANIFEST_FILE
    if not m.is_file():
        raise SpecError(f"{model}: no {MANIFEST_FILE} beside it; pass a model from a `dhm export` folder")
    return m


def write_golden(
    model: str | Path, data: str | Path, out: str | Path, frames: int = 6, threads: int = 1, force: bool = False
) -> dict[str, Any]:
    from dhm.runtime_py.engines import conventions_of, load
    from dhm.runtime_py.pipeline import AvatarPipeline, pingpong

    from dhm.data.dataset import open_dataset
    from dhm.data.preprocess import audio_window
    from dhm.io import atomic_dir, check_output
    from dhm.manifest import read_manifest

    model = Path(model)
    if not 1 <= frames <= 1000:
        raise SpecError(f"--frames {frames}: expected 1 … 1000")
    check_output(out, kind="dir", command="golden", force=force, inputs=[model.parent, data])
    manifest_path = _manifest_beside(model)
    manifest = read_manifest(manifest_path)
    mode = manifest["generator"]["mode"]
    ds = open_dataset(data, mode=mode)
    if frames < 1 or frames > ds.n_frames:
        raise DatasetError(f"{data}: cannot take {frames} golden frames from {ds.n_frames}")
    loaded = load(model, threads=threads)
    conv = conventions_of(loaded)
    # every window of the recorded frames lies inside these features (window <= 16)
    feats = ds.audio(mode)[: frames + conv.window_after]
    engine = _Recording(loaded)
    pipe = AvatarPipeline(engine, ds, conv)
    refs = pingpong(ds.n_frames, frames)
    with atomic_dir(out, replace=True, command="golden") as tmp:
        shutil.copy(manifest_path, tmp / "manifest.json")
        write_f32(tmp / "features.f32", feats)
        cases = []
        for i, ref in enumerate(refs):
            frame = pipe.render(ref, audio_window(feats, i, conv))
            inputs, outputs = engine.calls[-1]
            write_u8(tmp / f"ref_{ref}.u8", ds.frame(ref))
            shutil.copy(ds.landmark_path(ref), tmp / f"ref_{ref}.lms")
            for name, value in inputs.items():
                write_f32(tmp / f"{name}_{i}.f32", value)
            for name, value in outputs.items():
                write_f32(tmp / f"{name}_{i}.f32", value)
            write_u8(tmp / f"pasted_{i}.u8", frame)
            cases.append((i, ref))
        (tmp / "cases.txt").write_text("".join(f"{i} {r}\n" for i, r in cases))
        pcm_cases = _pcm_golden(tmp, loaded, ds, conv, manifest, frames, threads)
        idle_frames = _idle_golden(tmp, loaded, ds, conv, manifest, threads)
        (tmp / "README.txt").write_text(
            f"Golden vectors from dhm.runtime_py for {model.name} ({engine.engine.backend}; {conv.describe()}).\n"
            "Per case i with reference frame r: ref_r.u8 (decoded frame, HWC BGR), ref_r.lms, "
            "<input>_i.f32 (network inputs), <output>_i.f32 (recorded outputs), pasted_i.u8 (the output frame).\n"
        )
    return {
        "out": str(out),
        "cases": len(cases),
        "pcm_cases": pcm_cases,
        "idle_frames": idle_frames,
        "engine": engine.engine.backend,
    }


PCM_CHUNK = 320  # 20 ms


def _pcm_golden(tmp: Path, engine: Any, ds: Any, conv: Any, manifest: dict[str, Any], frames: int, threads: int) -> int:
    """PCM -> audio model -> features -> frames through `PcmSession`, with every audio-model
    and generator run recorded: `pcm.f32` (the utterance: `frames` frames and 201 samples
    more, so the tail rule is exercised), `pcm_windows.f32`/`pcm_rows.f32` (the audio
    model's runs), `pcm_features.f32`, and per frame `pcm_<input>_i.f32`, `pcm_<output>_i.f32`,
    `pcm_pasted_i.u8`; `pcm_cases.txt` lists them. Nothing when the manifest has no audio model."""
    from dhm.audio.frontend import read_pcm
    from dhm.runtime_py.streaming import AudioFrontEnd, audio_front_end
    from dhm.runtime_py.pipeline import AvatarPipeline, pingpong
    from dhm.runtime_py.session import PcmSession

    if "audio_model" not in manifest or ds.wav_path is None:
        return 0
    front = audio_front_end(engine, threads=threads)
    pcm = read_pcm(ds.wav_path)[0][: frames * front.spec.samples_per_frame + 201]
    windows: list[np.ndarray] = []
    rows: list[np.ndarray] = []

    def recorded_rows(window: np.ndarray) -> np.ndarray:
        windows.append(np.array(window, dtype=np.float32))
        rows.append(np.array(front.rows(window), dtype=np.float32))
        return rows[-1]

    generator = _Recording(engine)
    session = PcmSession(
        AvatarPipeline(generator, ds, conv), AudioFrontEnd(front.spec, recorded_rows, front.description)
    )
    session.audio.log = []
    out = []
    for start in range(0, pcm.size, PCM_CHUNK):
        out += session.push_pcm(pcm[start : start + PCM_CHUNK])
    out += session.finish()
    write_f32(tmp / "pcm.f32", pcm)
    write_f32(tmp / "pcm_windows.f32", np.stack(windows))
    write_f32(tmp / "pcm_rows.f32", np.stack(rows))
    write_f32(tmp / "pcm_features.f32", np.stack(session.audio.log))
    refs = pingpong(ds.n_frames, len(out))
    for i, (frame, (inputs, outputs)) in enumerate(zip(out, generator.calls, strict=True)):
        for name, value in {**inputs, **outputs}.items():
            write_f32(tmp / f"pcm_{name}_{i}.f32", value)
        write_u8(tmp / f"pcm_pasted_{i}.u8", frame)
        write_u8(tmp / f"ref_{refs[i]}.u8", ds.frame(refs[i]))
        shutil.copy(ds.landmark_path(refs[i]), tmp / f"ref_{refs[i]}.lms")
    (tmp / "pcm_references.txt").write_text(f"{ds.n_frames}\n")
    (tmp / "pcm_cases.txt").write_text("".join(f"{i} {r}\n" for i, r in enumerate(refs)))
    return len(out)


def _idle_golden(tmp: Path, engine: Any, ds: Any, conv: Any, manifest: dict[str, Any], threads: int) -> int:
    """Speech with silence around it through `PcmSession` resting the mouth with the export's
    own voice detector: `idle_pcm.f32`, `idle_footage.txt` (the footage's reference frames in
    clip order), `idle_mouth.txt` (the open-mouthed frames the generator sees as its reference),
    `idle_scores.f32` (the detector's score per hop), `idle_shares.txt` (each
    frame's generated share in 1/256ths), `idle_pasted_i.u8`, and the runs the session made:
    `idle_windows.f32`/`idle_rows.f32` (the audio model's, none in silence) and per generator
    run k `idle_<input>_k.f32`, `idle_<output>_k.f32` (`idle_cases.txt`: k and its reference).
    Nothing without a `vad`."""
    from dhm.audio.frontend import read_pcm
    from dhm.runtime_py.idle import IdleSettings, idle_footage, shipped_detector
    from dhm.runtime_py.pipeline import AvatarPipeline
    from dhm.runtime_py.session import IdleRun, PcmSession
    from dhm.runtime_py.streaming import AudioFrontEnd, audio_front_end
    from dhm.runtime_py.vad import HOP

    if "vad" not in manifest or "audio_model" not in manifest or ds.wav_path is None:
        return 0
    front = audio_front_end(engine, threads=threads)
    spf = front.spec.samples_per_frame
    speech = read_pcm(ds.wav_path)[0]
    quiet = lambda n: np.zeros(n, np.float32)  # noqa: E731
    parts = [quiet(12 * spf), speech[: 30 * spf], quiet(16 * spf), speech[30 * spf : 40 * spf], quiet(8 * spf + 137)]
    pcm = np.concatenate(parts)
    settings = IdleSettings(ramp=manifest["vad"].get("ramp_frames", IdleSettings().ramp))
    footage = idle_footage(ds, conv.mode.fps, settings)
    make = shipped_detector(engine)
    windows: list[np.ndarray] = []
    rows: list[np.ndarray] = []

    def recorded_rows(window: np.ndarray) -> np.ndarray:  # only the runs a generated frame reads
        windows.append(np.array(window, dtype=np.float32))
        rows.append(np.array(front.rows(window), dtype=np.float32))
        return rows[-1]

    generator = _Recording(engine)
    recorded = AudioFrontEnd(front.spec, recorded_rows, front.description)
    session = PcmSession(AvatarPipeline(generator, ds, conv), recorded, IdleRun(settings, footage, make))
    out = []
    for start in range(0, pcm.size, PCM_CHUNK):
        out += session.push_pcm(pcm[start : start + PCM_CHUNK])
    out += session.finish()
    scores = make().scores(np.pad(pcm, (0, (-pcm.size) % HOP)).reshape(-1, HOP))
    write_f32(tmp / "idle_pcm.f32", pcm)
    write_f32(tmp / "idle_scores.f32", scores)
    (tmp / "idle_footage.txt").write_text("".join(f"{r}\n" for r in footage.frames))
    (tmp / "idle_mouth.txt").write_text("".join(f"{r}\n" for r in footage.mouth))
    (tmp / "idle_shares.txt").write_text("".join(f"{v}\n" for v in session.shares))
    for i, frame in enumerate(out):
        write_u8(tmp / f"idle_pasted_{i}.u8", frame)
    write_f32(tmp / "idle_windows.f32", np.stack(windows))
    write_f32(tmp / "idle_rows.f32", np.stack(rows))
    generated = [i for i, share in enumerate(session.shares) if share]
    for k, (inputs, outputs) in enumerate(generator.calls):
        for name, value in {**inputs, **outputs}.items():
            write_f32(tmp / f"idle_{name}_{k}.f32", value)
    (tmp / "idle_cases.txt").write_text("".join(f"{k} {session.reference(i)}\n" for k, i in enumerate(generated)))
    shown = {session.reference(i) for i in range(len(out))}
    for r in sorted(shown | {footage.mouth_reference(i) for i in generated}):
        write_u8(tmp / f"ref_{r}.u8", ds.frame(r))
        shutil.copy(ds.landmark_path(r), tmp / f"ref_{r}.lms")
    return len(out)
