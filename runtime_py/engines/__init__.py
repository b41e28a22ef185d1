"""The one engine layer: every backend dhm runs or builds, behind one registry.

    engine = load("student.mnn", threads=2)          # torch / onnxruntime / MNN by file type,
    out = engine.run({"face": f, "audio": a})["out"]  # checked against the manifest beside it
    backend = get("mnn")                              # name, format, version, build, structure
    art = build_and_validate(backend, MnnInt8(method="KL"), onnx_fp32, dst, check, reference)

Quantize, export and bench build and validate every file through `build_and_validate`;
`dhm.runtime_py` and the demos run them through `load`.
"""

from dhm.lazy import lazy_attributes

# loaded on first use, so importing the registry for its names costs no numpy and no engine
_LAZY = {
    "Artifact": "dhm.runtime_py.engines.configs",
    "BACKENDS": "dhm.runtime_py.engines.registry",
    "Backend": "dhm.runtime_py.engines.registry",
    "BuildConfig": "dhm.runtime_py.engines.configs",
    "Engine": "dhm.runtime_py.engines.runtime",
    "Fp16": "dhm.runtime_py.engines.configs",
    "Fp32": "dhm.runtime_py.engines.configs",
    "MIRRORS": "dhm.runtime_py.engines.registry",
    "MnnEngine": "dhm.runtime_py.engines.runtime",
    "MnnInt8": "dhm.runtime_py.engines.configs",
    "OnnxInt8": "dhm.runtime_py.engines.configs",
    "OrtEngine": "dhm.runtime_py.engines.runtime",
    "PRECISIONS": "dhm.runtime_py.engines.runtime",
    "TARGETS": "dhm.runtime_py.engines.registry",
    "TOLERANCES": "dhm.runtime_py.engines.configs",
    "TensorSpec": "dhm.runtime_py.engines.runtime",
    "Tolerance": "dhm.runtime_py.engines.configs",
    "TorchEngine": "dhm.runtime_py.engines.runtime",
    "audio_of": "dhm.runtime_py.engines.runtime",
    "build_and_validate": "dhm.runtime_py.engines.build",
    "config_from_dict": "dhm.runtime_py.engines.configs",
    "conventions_of": "dhm.runtime_py.engines.runtime",
    "for_file": "dhm.runtime_py.engines.registry",
    "for_format": "dhm.runtime_py.engines.registry",
    "get": "dhm.runtime_py.engines.registry",
    "load": "dhm.runtime_py.engines.registry",
    "mirror_of": "dhm.runtime_py.engines.registry",
    "native_stdout_to_stderr": "dhm.runtime_py.engines.runtime",
    "run_checked": "dhm.runtime_py.engines.runtime",
    "run_on": "dhm.runtime_py.engines.build",
    "score": "dhm.runtime_py.engines.build",
    "validate": "dhm.runtime_py.engines.build",
    "versions": "dhm.runtime_py.engines.registry",
}
__all__ = sorted(_LAZY)

__getattr__ = lazy_attributes(_LAZY)
