"""Generator models and checkpoints (imports torch)."""

from dhm.models.checkpoint import (
    LoadedCheckpoint,
    detect_spec,
    file_sha256,
    load_checkpoint,
    model_from_state,
    save_checkpoint,
    split_checkpoint,
)
from dhm.models.ultralight import Model, build_model

__all__ = [
    "LoadedCheckpoint",
    "Model",
    "build_model",
    "detect_spec",
    "file_sha256",
    "load_checkpoint",
    "model_from_state",
    "save_checkpoint",
    "split_checkpoint",
]
