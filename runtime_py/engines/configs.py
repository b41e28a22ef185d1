"""What a variant is: the build configs (torchao's config-to-handler: `Fp32`, `Fp16`,
`OnnxInt8`, `MnnInt8`), the tolerances a build is validated against, and the artifact a
validated build is. Configs serialize to plain dicts: a quantize recipe stores them, and export
rebuilds each INT8 file through the same handler (`dhm.runtime_py.engines.build`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from dhm.errors import SpecError

# ------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class BuildConfig:
    kind: ClassVar[str]
    variant: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}}


@dataclass(frozen=True)
class Fp32(BuildConfig):
    kind: ClassVar[str] = "fp32"
    variant: ClassVar[str] = "fp32"


@dataclass(frozen=True)
class Fp16(BuildConfig):
    """float16 weights (ONNX: activations too, float32 I/O; MNN: weights, fp16 compute
    where the phone's runtime precision is low)."""

    kind: ClassVar[str] = "fp16"
    variant: ClassVar[str] = "fp16"


@dataclass(frozen=True)
class OnnxInt8(BuildConfig):
    """onnxruntime static QDQ: per-channel symmetric weights, calibrated activations."""

    kind: ClassVar[str] = "onnx-int8"
    variant: ClassVar[str] = "int8"
    method: str = "minmax"
    exclude: tuple[str, ...] = ()  # Conv nodes kept in float
    act_symmetric: bool = False
    weight_type: str = "int8"


@dataclass(frozen=True)
class MnnInt8(BuildConfig):
    """MNN's offline quantizer: full INT8 (int8 weights and feature scales)."""

    kind: ClassVar[str] = "mnn-int8"
    variant: ClassVar[str] = "int8"
    method: str = "KL"
    skip: tuple[str, ...] = ()  # op names kept in float


CONFIGS: dict[str, type[BuildConfig]] = {c.kind: c for c in (Fp32, Fp16, OnnxInt8, MnnInt8)}


def config_from_dict(data: Mapping[str, Any]) -> BuildConfig:
    """The inverse of `BuildConfig.to_dict` (one clear line for a recipe that is not)."""
    if not isinstance(data, Mapping) or data.get("kind") not in CONFIGS:
        raise SpecError(f"build config {data!r}: expected a kind of {', '.join(CONFIGS)}")
    cls = CONFIGS[data["kind"]]
    fields = {k: v for k, v in data.items() if k != "kind"}
    try:
        config = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    except TypeError as exc:
        raise SpecError(f"build config {data['kind']}: {exc}") from None
    for name, value in asdict(config).items():
        if isinstance(value, tuple) and not all(isinstance(x, str) for x in value):
            raise SpecError(f"build config {data['kind']}: {name} must list names")
    return config


# ------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class Tolerance:
    """What an artefact must meet against the reference on the check inputs."""

    max_abs: float | None = None
    min_psnr: float | None = None

    def check(self, max_abs: float, psnr_db: float) -> bool:
        ok = True
        if self.max_abs is not None:
            ok &= max_abs <= self.max_abs
        if self.min_psnr is not None:
            ok &= psnr_db >= self.min_psnr
        return ok

    def to_dict(self) -> dict[str, float]:
        out = {}
        if self.max_abs is not None:
            out["max_abs"] = self.max_abs
        if self.min_psnr is not None:
            out["min_psnr_db"] = self.min_psnr
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, float]) -> "Tolerance":
        return cls(max_abs=data.get("max_abs"), min_psnr=data.get("min_psnr_db"))

    def describe(self) -> str:
        parts = []
        if self.max_abs is not None:
            parts.append(f"max abs <= {self.max_abs:g}")
        if self.min_psnr is not None:
            parts.append(f"PSNR >= {self.min_psnr:.1f} dB")
        return " and ".join(parts)


TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_abs=1e-4),
    # FP16 weights round each weight to 11 significant bits; 45 dB is far below what a
    # correct conversion gives (about 60 dB here) and far above a broken one. The max abs
    # bound only catches a single wild pixel: 2e-2 refused the demo's x10 student in MNN
    # FP16 at 62.1 dB (max abs 2.48e-2, ~6 levels on one pixel of export's check frames,
    # after quantize had passed it on its own), so it is 5e-2 (~13 levels).
    "fp16": Tolerance(max_abs=5e-2, min_psnr=45.0),
}


@dataclass
class Artifact:
    """A built file and what its validation measured."""

    path: Path
    format: str
    engine: str
    variant: str
    size_bytes: int
    sha256: str
    quality: dict[str, Any]  # PSNR, SSIM, mouth-PSNR, max abs (and lips) against the reference
    parity: dict[str, Any] | None = None  # the manifest's parity record, when a tolerance was given
    structure: dict[str, Any] = field(default_factory=dict)
    config: BuildConfig | None = None

    @property
    def file(self) -> str:
        return self.path.name
