"""The audio model's smaller variants: which FP16 and INT8 builds to try, and the one kept.

An audio student (`dhm distill-audio`) ships beside the generator; its FP16 and INT8 files
are quantize decisions made like the generator's: candidate configs per format, each built by
the format's backend from the FP32 graph, and where there is more than one, the one whose
features agree best with the FP32 student on calibration windows is kept. `dhm export`
validates what is kept and gates it (`dhm.export.audio`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dhm.audio.geometry import PCM_INPUT
from dhm.errors import SpecError

# The front end's log is evaluated in float32 on every engine: fp16 arithmetic (MNN
# "low" precision on ARM) would round the power spectrum, so the audio model runs at fp32.
AUDIO_PRECISION = "fp32"


def pcm_conv(onnx_path: Path) -> str:
    """The name of the convolution that reads PCM (the filterbank INT8 must keep in float)."""
    import onnx

    for node in onnx.load(str(onnx_path)).graph.node:
        if node.op_type == "Conv" and PCM_INPUT in node.input:
            return node.name
    raise SpecError(f"{onnx_path.name}: no Conv reads {PCM_INPUT}; the audio model is not a student dhm can quantize")


def audio_candidates(onnx_fp32: Path) -> dict[str, dict[str, list[Any]]]:
    """variant -> format -> the build configs to try, in order."""
    from dhm.runtime_py.engines.configs import Fp16, MnnInt8, OnnxInt8
    from dhm.runtime_py.engines.onnx_int8 import conv_output_names

    # KL keeps the PCM-facing filterbank in float (8-bit PCM is ~48 dB SNR at full scale and
    # far less for speech at -30 dBFS); MNN 3.6.1's EMA ignores skip lists but measured
    # better on the demo's student, so MNN tries both on the calibration windows.
    first = pcm_conv(onnx_fp32)
    return {
        "fp16": {"onnx": [Fp16()], "mnn": [Fp16()]},
        "int8": {
            "onnx": [OnnxInt8(method="minmax", exclude=(first,))],
            "mnn": [MnnInt8(method="EMA"), MnnInt8(method="KL", skip=(conv_output_names(onnx_fp32)[first],))],
        },
    }


def build_audio_variant(
    backend: Any,
    configs: list[Any],
    onnx_fp32: Path,
    dst: Path,
    calib: Any,
    calib_windows: list[np.ndarray] | None,
    reference: Callable[[np.ndarray], np.ndarray],
    header: dict[str, Any],
) -> dict[str, Any]:
    """Build every config into `dst`'s folder and keep, as `dst`, the one whose features on the
    calibration windows have the highest cosine with `reference` (the FP32 student); returns
    its structure record, with every trial's cosine where there was a choice."""
    from dhm.metrics import feature_agreement
    from dhm.runtime_py.streaming import engine_rows

    tried: list[dict[str, Any]] = []
    kept: tuple[float, Path, dict[str, Any]] | None = None
    for k, config in enumerate(configs):
        path = dst if len(configs) == 1 else dst.with_name(f".{dst.stem}_{k}{dst.suffix}")
        structure = backend.build(config, onnx_fp32, path, calib=calib, header=header)
        if calib_windows is not None and len(configs) > 1:
            rows = engine_rows(backend.load(path, threads=1, precision=AUDIO_PRECISION))
            cos = feature_agreement(
                np.concatenate([rows(w) for w in calib_windows]), np.concatenate([reference(w) for w in calib_windows])
            )["cosine"]
            tried.append({**config.to_dict(), "calibration_cosine": cos})
            if kept is not None and kept[0] >= cos:
                path.unlink()
                continue
            if kept is not None:
                kept[1].unlink()
            kept = (cos, path, {**structure, "build": config.to_dict()})
        else:
            kept = (0.0, path, {**structure, "build": config.to_dict()})
    assert kept is not None
    kept[1].replace(dst)
    return kept[2] | ({"tried": tried} if tried else {})
