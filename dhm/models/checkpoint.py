"""Reading, detecting and writing generator checkpoints.

Accepted on input (all loaded with `torch.load(weights_only=True)`):
  * a plain Ultralight or FeatherTalk state_dict, of any upstream revision,
  * `{"model": state_dict}` (upstream's other form),
  * a dhm checkpoint: `{"model": state_dict, "dhm": {...metadata...}}`.

Family, revision, audio mode, window and widths are detected from tensor names and shapes
alone (`dhm.models.layouts`), so a raw upstream file needs no side information. dhm
metadata, when present, is cross-checked, and its recorded crop filter is authoritative.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from dhm.errors import CheckpointError, OutputError, SpecError
from dhm.io import atomic_path
from dhm.models.layouts import Detected, detect, equivalent_revisions
from dhm.spec import GeneratorSpec

# 1: spec {arch, mode, widths}; 2: adds revision, window and crop_interpolation.
DHM_CHECKPOINT_FORMAT = 2


@dataclass
class LoadedCheckpoint:
    """A generator ready to run, with where it came from."""

    model: torch.nn.Module
    spec: GeneratorSpec
    path: Path | None
    form: str  # "ultralight-state-dict", "ultralight-model-dict" or "dhm"
    metadata: dict[str, Any] = field(default_factory=dict)
    detected: Detected | None = None
    crop_source: str = "revision default"  # or "recorded by dhm", "--crop-interpolation"

    @property
    def sha256(self) -> str | None:
        return file_sha256(self.path) if self.path else None

    @property
    def reparameterized(self) -> bool:
        return bool(getattr(self.model, "reparameterized", False))

    def inference_model(self) -> torch.nn.Module:
        """What runs after export: MobileOne models reparameterized, others as they are."""
        from dhm.models.build import inference_model

        return inference_model(self.model)


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
        raise CheckpointError(
            f"{source}: expected a state_dict or a dict with a 'model' entry, got {type(obj).__name__}"
        )
    if "model" in obj and isinstance(obj["model"], Mapping):
        meta = obj.get("dhm")
        form = "dhm" if isinstance(meta, Mapping) else "ultralight-model-dict"
        state, metadata = obj["model"], dict(meta) if isinstance(meta, Mapping) else {}
    else:
        state, form, metadata = obj, "ultralight-state-dict", {}
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{source}: holds no tensors")
    return tensors, form, metadata


def detect_spec(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> GeneratorSpec:
    """Family, revision, mode and widths from tensor names and shapes."""
    return detect(state, source).spec


def _check_finite(state: Mapping[str, torch.Tensor], source: str) -> None:
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{source}: {bad} non-finite value(s) (NaN/Inf) in {key!r}")


def model_from_state(
    state: Mapping[str, torch.Tensor], spec: GeneratorSpec, source: str = "checkpoint", reparameterized: bool = False
) -> torch.nn.Module:
    """Build the generator for `spec` and load `state` strictly, explaining mismatches."""
    from dhm.models.build import build_model

    model = build_model(spec, reparameterized=reparameterized)
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
        problems.append(
            f"missing key {missing[0]!r} {list(expected[missing[0]].shape)}"
            + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    if unexpected:
        problems.append(
            f"unexpected key {unexpected[0]!r}" + (f" (+{len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
        )
    if mismatched:
        problems.append(
            f"shape mismatch {mismatched[0]}" + (f" (+{len(mismatched) - 1} more)" if len(mismatched) > 1 else "")
        )
    if problems:
        raise CheckpointError(
            f"{source}: does not fit {spec.describe()} "
            f"({spec.rev.label if spec.arch == 'ultralight' else 'FeatherTalk MobileOne'}): " + "; ".join(problems)
        )
    model.load_state_dict(dict(state), strict=True)
    return model.eval()


def _declared_spec(metadata: Mapping[str, Any], detected: GeneratorSpec, source: str) -> GeneratorSpec | None:
    declared = metadata.get("spec")
    if not isinstance(declared, Mapping):
        return None
    try:
        spec = GeneratorSpec.from_dict(dict(declared))
    except SpecError as exc:
        raise CheckpointError(f"{source}: unreadable dhm metadata ({exc})") from None
    same = all(getattr(spec, a) == getattr(detected, a) for a in ("arch", "stem", "mode", "widths"))
    if not same or spec.revision not in equivalent_revisions(detected):
        raise CheckpointError(
            f"{source}: metadata says {spec.describe()} ({spec.describe_conventions()}) "
            f"but the tensors are {detected.describe()} ({detected.describe_conventions()})"
        )
    return spec


def load_checkpoint(path: str | os.PathLike[str], crop_interpolation: str | None = None) -> LoadedCheckpoint:
    """Load any accepted checkpoint file as an eval-mode generator on the CPU.

    `crop_interpolation` overrides the revision's default crop filter for upstream files
    (a user who knows their model was trained otherwise); a dhm checkpoint records the
    filter it was trained with, and an override that contradicts it is refused.
    """
    path = Path(path)
    source = str(path)
    state, form, metadata = split_checkpoint(_read(path), source)
    found = detect(state, source)
    spec = found.spec
    crop_source = "revision default"
    declared = _declared_spec(metadata, spec, source)
    if declared is not None:
        spec = declared
        if "crop_interpolation" in dict(metadata.get("spec") or {}) or metadata.get("format", 1) == 1:
            crop_source = "recorded by dhm"
    if crop_interpolation is not None and crop_interpolation != spec.crop_interpolation:
        if crop_source == "recorded by dhm":
            raise CheckpointError(
                f"{source}: was trained on {spec.crop_interpolation} crops (recorded in the dhm checkpoint); "
                f"--crop-interpolation {crop_interpolation} contradicts it"
            )
        try:
            spec = replace(spec, crop_interpolation=crop_interpolation)
        except SpecError as exc:
            raise CheckpointError(f"--crop-interpolation: {exc}") from None
        crop_source = "--crop-interpolation"
    _check_finite(state, source)
    model = model_from_state(state, spec, source, reparameterized=found.reparameterized)
    return LoadedCheckpoint(
        model=model,
        spec=spec,
        path=path,
        form=form,
        metadata=metadata,
        detected=replace(found, spec=spec),
        crop_source=crop_source,
    )


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
        write_torch(payload, tmp, path)
    return path


def write_torch(payload: Any, tmp: Path, final: Path) -> None:
    """torch.save, with a failed write (a full disk: torch raises RuntimeError 'iostream
    error' or 'PytorchStreamWriter failed …') reported as one line."""
    try:
        torch.save(payload, tmp)
    except OSError:
        raise
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OutputError(f"{final}: could not write it ({reason}); is the disk full?") from None
