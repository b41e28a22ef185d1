"""The one engine layer: every backend dhm runs or builds, behind one registry.

    engine = load("student.mnn", threads=2)          # torch / onnxruntime / MNN by file type,
    out = engine.run({"face": f, "audio": a})["out"]  # checked against the manifest beside it
    backend = get("mnn")                              # name, format, version, build, structure
    art = build_and_validate(backend, MnnInt8(method="KL"), onnx_fp32, dst, check, reference)

Quantize, export and bench build and validate every file through `build_and_validate`;
`dhm.runtime_py` and the demos run them through `load`.
"""

from dhm.runtime_py.engines.build import build_and_validate, run_on, score, validate
from dhm.runtime_py.engines.configs import (
    TOLERANCES,
    Artifact,
    BuildConfig,
    Fp16,
    Fp32,
    MnnInt8,
    OnnxInt8,
    Tolerance,
    config_from_dict,
)
from dhm.runtime_py.engines.registry import (
    BACKENDS,
    MIRRORS,
    TARGETS,
    Backend,
    for_file,
    for_format,
    get,
    load,
    mirror_of,
    versions,
)
from dhm.runtime_py.engines.runtime import (
    PRECISIONS,
    Engine,
    MnnEngine,
    OrtEngine,
    TensorSpec,
    TorchEngine,
    audio_of,
    conventions_of,
    native_stdout_to_stderr,
    run_checked,
)

__all__ = [
    "Artifact",
    "BACKENDS",
    "MIRRORS",
    "Backend",
    "BuildConfig",
    "Engine",
    "Fp16",
    "Fp32",
    "MnnEngine",
    "MnnInt8",
    "OnnxInt8",
    "OrtEngine",
    "PRECISIONS",
    "TARGETS",
    "TOLERANCES",
    "TensorSpec",
    "Tolerance",
    "TorchEngine",
    "audio_of",
    "build_and_validate",
    "config_from_dict",
    "conventions_of",
    "for_file",
    "for_format",
    "get",
    "mirror_of",
    "load",
    "native_stdout_to_stderr",
    "run_checked",
    "run_on",
    "score",
    "validate",
    "versions",
]
