"""Generator models and checkpoints (imports torch)."""

from __future__ import annotations

from dhm.models.build import build_model, count_trained_params, fold_batchnorm, inference_model
from dhm.models.checkpoint import (
    LoadedCheckpoint,
    detect_spec,
    file_sha256,
    load_checkpoint,
    model_from_state,
    save_checkpoint,
    split_checkpoint,
)
from dhm.models.layouts import Detected, detect
from dhm.models.ultralight import Model

__all__ = [
    "Detected",
    "LoadedCheckpoint",
    "Model",
    "build_model",
    "count_trained_params",
    "detect",
    "detect_spec",
    "file_sha256",
    "fold_batchnorm",
    "inference_model",
    "load_checkpoint",
    "model_from_state",
    "save_checkpoint",
    "split_checkpoint",
]
