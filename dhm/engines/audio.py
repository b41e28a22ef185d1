"""The audio front end that belongs to a generator engine: PCM -> feature rows.

An exported model's manifest lists its audio model (`audio_model`, written by `dhm export`
for models trained on dhm's own features); it runs on the generator's engine kind (MNN
beside an .mnn file, onnxruntime beside an .onnx). A torch checkpoint trained on dhm's
features uses the numpy front end the training features came from (the reference the
exported audio models are validated against).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dhm.audio_model import PCM_INPUT, ROWS_OUTPUT, AudioModelSpec, logmel_rows_numpy, logmel_spec
from dhm.errors import SpecError

NO_AUDIO_MODEL = (
    "pass --audio-features FILE.npy (features computed off the phone), or export a model trained on dhm's "
    "own features with `dhm export`, which writes its audio model"
)


@dataclass
class AudioFrontEnd:
    spec: AudioModelSpec
    rows: Callable[[np.ndarray], np.ndarray]  # [window_samples] -> [rows_per_call, row_size]
    description: str


def engine_rows(engine: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A PCM window -> the audio model's rows [rows_per_call, row_size], run by `engine`."""

    def rows(window: np.ndarray) -> np.ndarray:
        return engine.run({PCM_INPUT: window.reshape(1, 1, -1)})[ROWS_OUTPUT][0]

    return rows


def audio_front_end(engine: Any, threads: int = 1, variant: str = "fp32") -> AudioFrontEnd:
    """The audio model for `engine`'s generator, or one line saying why there is none.

    `variant`: which of the export's audio files (fp32, or a student's fp16/int8); the
    generator's own variant does not choose it, since the audio model's INT8 costs frames
    the generator's INT8 does not (see the export report)."""
    from dhm.data.audio import FRONTEND_ID
    from dhm.engines.registry import get
    from dhm.models.checkpoint import file_sha256

    mode = engine.conventions.mode.name if engine.conventions is not None else None
    if engine.backend == "torch":
        if engine.frontend != FRONTEND_ID:
            raise SpecError(
                f"{engine.path}: was trained on {engine.frontend or 'features from an unknown front end'} "
                f"({mode}); dhm computes only its own {FRONTEND_ID} features from a WAV: {NO_AUDIO_MODEL}"
            )
        spec = logmel_spec(mode)
        return AudioFrontEnd(spec, lambda w: logmel_rows_numpy(spec, w), f"numpy {FRONTEND_ID} (reference)")
    manifest = getattr(engine, "manifest", None)
    if manifest is None:
        raise SpecError(f"{engine.path}: no manifest.json beside it names an audio model; {NO_AUDIO_MODEL}")
    section = manifest.get("audio_model")
    if section is None:
        frontend = manifest["audio"].get("frontend", "features from outside dhm")
        raise SpecError(
            f"{engine.manifest_path}: lists no audio model (the generator listens to {frontend}); {NO_AUDIO_MODEL}"
        )
    backend = get(engine.backend)
    entries = [a for a in section["artifacts"] if a["format"] == backend.format]
    if not entries:
        raise SpecError(f"{engine.manifest_path}: its audio model has no {backend.format} file; re-run `dhm export`")
    chosen = [a for a in entries if a.get("variant", "fp32") == variant]
    if not chosen:
        listed = ", ".join(sorted({a.get("variant", "fp32") for a in entries}))
        left_out = [
            x["reason"] for x in section.get("left_out", []) if (x["variant"], x["engine"]) == (variant, backend.name)
        ]
        hint = (
            f"export left it out: {left_out[0]}"
            if left_out
            else "export with --variants including it and --audio-model"
        )
        raise SpecError(
            f"{engine.manifest_path}: its audio model has no {variant} {backend.format} file "
            f"(it lists {listed}); {hint}"
        )
    entries = chosen
    path = engine.path.parent / entries[0]["file"]
    if not path.is_file():
        raise SpecError(f"{path}: the audio model the manifest lists is missing")
    if file_sha256(path) != entries[0]["sha256"]:
        raise SpecError(f"{path}: sha256 differs from {engine.manifest_path}: the file was changed or replaced")
    spec = AudioModelSpec.from_dict(section)
    audio_engine = backend.load(path, threads=threads, precision=section["precision"])
    got = {t.name: tuple(t.shape) for t in audio_engine.inputs}
    if got != {PCM_INPUT: (1, 1, spec.window_samples)}:
        raise SpecError(f"{path}: inputs {got} disagree with {engine.manifest_path}")
    return AudioFrontEnd(spec, engine_rows(audio_engine), f"{path.name} ({backend.name})")
