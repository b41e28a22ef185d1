"""Generator models and checkpoints (imports torch)."""

from __future__ import annotations

import torch

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
from dhm.spec import GeneratorSpec


def build_model(spec: GeneratorSpec, reparameterized: bool = False) -> torch.nn.Module:
    """The generator `spec` describes; MobileOne models in their trained (multi-branch)
    form unless `reparameterized`."""
    if spec.arch == "mobileone":
        from dhm.models.mobileone import MobileOneModel

        return MobileOneModel(spec, reparameterized=reparameterized)
    return Model(spec)


def count_trained_params(spec: GeneratorSpec) -> int:
    """Parameters of the trained form (MobileOne: every branch; others: the same model)."""
    return sum(p.numel() for p in build_model(spec).parameters())


def inference_model(model: torch.nn.Module) -> torch.nn.Module:
    """The form that is exported and run: MobileOne reparameterized, others unchanged."""
    from dhm.models.mobileone import MobileOneModel, reparameterize

    return reparameterize(model) if isinstance(model, MobileOneModel) else model


__all__ = [
    "Detected",
    "LoadedCheckpoint",
    "Model",
    "build_model",
    "count_trained_params",
    "detect",
    "detect_spec",
    "file_sha256",
    "inference_model",
    "load_checkpoint",
    "model_from_state",
    "save_checkpoint",
    "split_checkpoint",
]
