"""Reading, detecting and writing generator checkpoints.

Accepted on input (all loaded with `torch.load(weights_only=True)`):
  * a plain Ultralight state_dict,
  * `{"model": state_dict}` (Ultralight's other form),
  * a dhm checkpoint: `{"model": state_dict, "dhm": {...metadata...}}`.

The architecture, audio mode and widths are detected from tensor shapes alone, so a raw
Ultralight file needs no side information. dhm metadata, when present, is cross-checked.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dhm.errors import CheckpointError
from dhm.io import atomic_path
from dhm.models.ultralight import Model
from dhm.spec import AUDIO_MODES, GeneratorSpec

DHM_CHECKPOINT_FORMAT = 1

# Where each encoder width can be read: the out-channels of each stage's projecting conv.
_WIDTH_KEYS = (
    "inc.inconv.0.conv.6.weight",
    "down1.maxpool_conv.0.double_conv.0.conv.6.weight",
    "down2.maxpool_conv.0.double_conv.0.conv.6.weight",
    "down3.maxpool_conv.0.double_conv.0.conv.6.weight",
    "down4.maxpool_conv.0.double_conv.0.conv.6.weight",
)
# The audio branch's first conv: its in-channels tell HuBERT (16) from wenet (128).
_AUDIO_IN_KEY = "audio_model.conv1.conv.0.weight"


@dataclass
class LoadedCheckpoint:
    """A generator ready to run, with where it came from."""

    model: Model
    spec: GeneratorSpec
    path: Path | None
    form: str  # "ultralight-state-dict", "ultralight-model-dict" or "dhm"
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str | None:
        return file_sha256(self.path) if self.path else None


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        text = str(exc)
        if "Unsupported global" in text:
            raise CheckpointError(
                f"{path}: refuses to load: the file contains pickled code or objects, "
                "and dhm only loads plain tensors (torch.load weights_only=True)"
            ) from None
        # The weights-only unpickler buries its reason after a long preamble.
        reason = text.split("WeightsUnpickler error:")[-1].strip().splitlines()[0] if text.strip() else ""
        reason = reason or type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None


def split_checkpoint(obj: Any, source: str = "checkpoint") -> tuple[dict[str, torch.Tensor], str, dict[str, Any]]:
    """Return (state_dict, form, dhm metadata) from any accepted checkpoint object."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a state_dict or a dict with a 'model' entry, got {type(obj).__name__}")
    if "model" in obj and isinstance(obj["model"], Mapping):
        meta = obj.get("dhm")
        form = "dhm" if isinstance(meta, Mapping) else "ultralight-model-dict"
        state, metadata = obj["model"], dict(meta) if isinstance(meta, Mapping) else {}
    else:
        state, form, metadata = obj, "ultralight-state-dict", {}
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{source}: holds no tensors")
    return tensors, form, metadata


def detect_spec(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> GeneratorSpec:
    """Work out arch, mode and widths from tensor shapes."""
    missing = [k for k in (*_WIDTH_KEYS, _AUDIO_IN_KEY) if k not in state]
    if missing:
        sample = ", ".join(sorted(state)[:3])
        raise CheckpointError(
            f"{source}: does not match the Ultralight U-Net layout: missing {missing[0]!r}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + f"; first keys found: {sample}"
        )
    widths = tuple(int(state[k].shape[0]) for k in _WIDTH_KEYS)
    audio_in = int(state[_AUDIO_IN_KEY].shape[1])
    modes = [m.name for m in AUDIO_MODES.values() if m.in_channels == audio_in]
    if not modes:
        raise CheckpointError(
            f"{source}: audio branch takes {audio_in} input channels; "
            f"expected {' or '.join(f'{m.in_channels} ({m.name})' for m in AUDIO_MODES.values())}"
        )
    return GeneratorSpec(arch="ultralight", mode=modes[0], widths=widths)  # type: ignore[arg-type]


def _check_finite(state: Mapping[str, torch.Tensor], source: str) -> None:
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{source}: {bad} non-finite value(s) (NaN/Inf) in {key!r}")


def model_from_state(state: Mapping[str, torch.Tensor], spec: GeneratorSpec, source: str = "checkpoint") -> Model:
    """Build the generator for `spec` and load `state` strictly, explaining mismatches."""
    model = Model(spec)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing key {missing[0]!r}" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
    if unexpected:
        problems.append(
            f"unexpected key {unexpected[0]!r}" + (f" (+{len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
        )
    if mismatched:
        problems.append(
            f"shape mismatch {mismatched[0]}" + (f" (+{len(mismatched) - 1} more)" if len(mismatched) > 1 else "")
        )
    if problems:
        raise CheckpointError(f"{source}: does not fit {spec.describe()}: " + "; ".join(problems))
    model.load_state_dict(dict(state), strict=True)
    return model.eval()


def load_checkpoint(path: str | os.PathLike[str]) -> LoadedCheckpoint:
    """Load any accepted checkpoint file as an eval-mode generator on the CPU."""
    path = Path(path)
    source = str(path)
    state, form, metadata = split_checkpoint(_read(path), source)
    spec = detect_spec(state, source)
    declared = metadata.get("spec")
    if isinstance(declared, Mapping):
        declared_spec = GeneratorSpec.from_dict(dict(declared))
        if declared_spec != spec:
            raise CheckpointError(
                f"{source}: metadata says {declared_spec.describe()} but the tensors are {spec.describe()}"
            )
    _check_finite(state, source)
    model = model_from_state(state, spec, source)
    return LoadedCheckpoint(model=model, spec=spec, path=path, form=form, metadata=metadata)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    spec: GeneratorSpec,
    **metadata: Any,
) -> Path:
    """Write a dhm checkpoint atomically: state_dict plus plain-typed metadata.

    Metadata must be plain Python (str, int, float, bool, lists, dicts) so the file
    stays loadable with weights_only=True.
    """
    payload = {
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "dhm": {"format": DHM_CHECKPOINT_FORMAT, "spec": spec.to_dict(), **metadata},
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path
