"""Building a variant and validating it: one function quantize, export and bench all call.

A variant is described by a config dataclass (torchao's config-to-handler): `Fp32`,
`Fp16`, `OnnxInt8`, `MnnInt8`. The backend that owns the file format builds it from the
FP32 ONNX graph (`Backend.build`); `build_and_validate` then runs the built file with its
own engine on the check inputs and scores it against the reference outputs (optimum's
export-then-validate), failing the build where a tolerance is given and missed. Configs
serialize to plain dicts: a quantize recipe stores them, and export rebuilds each INT8
file through the same handler.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from dhm.data.inputs import InputSet
from dhm.errors import ParityError, SpecError

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


def run_on(engine: Any, inputs: InputSet) -> list[np.ndarray]:
    """The engine's first output for every input of the set."""
    name = engine.outputs[0].name
    return [engine.run(x)[name] for x in inputs.inputs]


def score(outputs: list[np.ndarray], reference: list[np.ndarray], inputs: InputSet) -> dict[str, Any]:
    """Image quality of `outputs` against `reference` (JSON-ready: "inf" for identical)."""
    from dhm.manifest import json_number
    from dhm.metrics import image_quality

    out = np.concatenate(outputs)
    if not np.isfinite(out).all():
        return {"psnr": "-inf", "ssim": 0.0, "mouth_psnr": "-inf", "max_abs": "inf", "finite": False}
    q = image_quality(out, np.concatenate(reference), lips=inputs.lips)
    return {k: json_number(v) if isinstance(v, float) else v for k, v in q.to_dict().items()}


def validate(
    path: Path,
    engine_name: str,
    variant: str,
    check: InputSet,
    reference: list[np.ndarray],
    tolerance: Tolerance | None = None,
    precision: str = "fp32",
    label: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Run `path` on `check` and score it; with a tolerance, a miss raises ParityError."""
    from dhm.engines.registry import get
    from dhm.manifest import from_json_number

    engine = get(engine_name).load(path, threads=2, precision=precision)
    quality = score(run_on(engine, check), reference, check)
    if engine_name == "mnn":
        arm = arm_quality(path, engine.outputs[0].name, check, reference, precision)
        if arm is not None:
            quality["arm"] = arm
    if tolerance is None:
        return quality, None
    label = label or f"{path.name} ({engine_name} {variant})"
    if quality.get("finite") is False:
        raise ParityError(f"{label}: produced non-finite outputs")
    max_abs, db = float(quality["max_abs"]), from_json_number(quality["psnr"])
    if not tolerance.check(max_abs, db):
        raise ParityError(
            f"{label}: does not match the reference (max abs {max_abs:.2e}, PSNR {db:.1f} dB; "
            f"needs {tolerance.describe()})"
        )
    # INT8 is judged where phones run it too: MNN's aarch64 kernels compute it differently
    if variant == "int8" and "arm" in quality:
        arm_db = from_json_number(quality["arm"]["psnr"])
        if quality["arm"].get("finite") is False or not tolerance.check(0.0, arm_db):
            raise ParityError(
                f"{label}: on MNN's aarch64 kernels PSNR {arm_db:.1f} dB (x86 {db:.1f} dB); needs "
                f"{tolerance.describe()}"
            )
    parity = {
        "reference": "torch-fp32",
        "inputs": check.source,
        "frames": len(check),
        "max_abs": max_abs,
        "psnr": quality["psnr"],
        "tolerance": tolerance.to_dict(),
        "passed": True,
    }
    if "arm" in quality:
        parity["arm"] = {
            k: quality["arm"][k] for k in ("kernels", "max_abs", "psnr", "lip_psnr") if k in quality["arm"]
        }
    return quality, parity


def arm_quality(
    path: Path, output: str, check: InputSet, reference: list[np.ndarray], precision: str
) -> dict[str, Any] | None:
    """The same file on MNN's aarch64 kernels (qemu-user), scored like the x86 run; None
    where this machine has no arm64 environment (`make arm-env`)."""
    from dhm.engines.arm import KERNELS, run_mnn, unavailable

    if unavailable() is not None:
        return None
    outputs = run_mnn(path, check.inputs, [output], precision)
    return {"kernels": KERNELS, **score([o[output] for o in outputs], reference, check)}


def build_and_validate(
    backend: Any,
    config: BuildConfig,
    onnx_fp32: Path,
    dst: Path,
    check: InputSet,
    reference: list[np.ndarray],
    tolerance: Tolerance | None = None,
    calib: InputSet | None = None,
    header: dict[str, Any] | None = None,
    precision: str | None = None,
    verify: bool = True,
    cache: dict[str, Any] | None = None,
) -> Artifact:
    """Build `config` with `backend` from the FP32 ONNX graph into `dst`, require INT8
    structure for INT8 configs (unless `verify` is False: a trial build), run it with its
    own engine on `check` and score it against `reference`; with `tolerance` a miss stops
    here (ParityError)."""
    from dhm.models.checkpoint import file_sha256

    structure = backend.build(config, onnx_fp32, dst, calib=calib, header=header, verify=verify, cache=cache)
    if precision is None:  # fp16 files run as a phone runs them: MNN with low precision
        precision = "fp16" if (config.variant == "fp16" and backend.name == "mnn") else "fp32"
    quality, parity = validate(dst, backend.name, config.variant, check, reference, tolerance, precision)
    return Artifact(
        path=dst,
        format=backend.format,
        engine=backend.name,
        variant=config.variant,
        size_bytes=dst.stat().st_size,
        sha256=file_sha256(dst),
        quality=quality,
        parity=parity,
        structure=structure,
        config=config,
    )
