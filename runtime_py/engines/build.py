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

from pathlib import Path
from typing import Any

import numpy as np

from dhm.data.inputs import InputSet
from dhm.errors import ParityError
from dhm.runtime_py.engines.configs import Artifact, BuildConfig, Tolerance
from dhm.runtime_py.engines.registry import get, mirror_of


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
    on_phone_kernels: bool = True,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Run `path` on `check` and score it; with a tolerance, a miss raises ParityError.
    `on_phone_kernels`: also run it where phones compute it (False for a file that never ships)."""
    from dhm.manifest import from_json_number

    engine = get(engine_name).load(path, threads=2, precision=precision)
    quality = score(run_on(engine, check), reference, check)
    arm = None
    if on_phone_kernels:
        arm = arm_quality(engine_name, path, engine.outputs[0].name, check, reference, precision)
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
    engine_name: str, path: Path, output: str, check: InputSet, reference: list[np.ndarray], precision: str
) -> dict[str, Any] | None:
    """The same file where phones compute it (the backend's registered mirror: MNN's aarch64
    kernels under qemu-user), scored like the x86 run; None where the backend has no mirror
    or this machine cannot run it (`make arm-env`)."""
    mirror = mirror_of(engine_name)
    if mirror is None or mirror.unavailable() is not None:
        return None
    outputs = mirror.run(path, check.inputs, [output], precision)
    return {"kernels": mirror.kernels, **score([o[output] for o in outputs], reference, check)}


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
    on_phone_kernels: bool = True,
) -> Artifact:
    """Build `config` with `backend` from the FP32 ONNX graph into `dst`, require INT8
    structure for INT8 configs (unless `verify` is False: a trial build), run it with its
    own engine on `check` and score it against `reference`; with `tolerance` a miss stops
    here (ParityError)."""
    from dhm.models.checkpoint import file_sha256

    structure = backend.build(config, onnx_fp32, dst, calib=calib, header=header, verify=verify, cache=cache)
    if precision is None:  # fp16 files run as a phone runs them: MNN with low precision
        precision = backend.run_precision(config.variant)
    quality, parity = validate(
        dst, backend.name, config.variant, check, reference, tolerance, precision, on_phone_kernels=on_phone_kernels
    )
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
