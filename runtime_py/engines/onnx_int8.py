"""ONNX INT8 (QDQ) through onnxruntime's static quantization, its structural check, and
per-layer sensitivity for the accuracy-aware fallback."""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path


import numpy as np

from dhm.data.inputs import InputSet
from dhm.errors import ConversionError
from dhm.spec import FACE_INPUT

ORT_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
# Weight types tried by `dhm quantize`, best held-out PSNR wins. On x86 CPUs with AVX2 but
# no VNNI, onnxruntime's uint8 x int8 kernels add pairs of products in int16 and saturate
# (measured here: 37.5 dB against 47.3 dB for uint8 weights on one model); ARM and VNNI
# CPUs do not. The file records which one it holds and why.
WEIGHT_TYPES = ("int8", "uint8")


def quantize_qdq(
    fp32: Path,
    dst: Path,
    calib: InputSet,
    method: str = "minmax",
    exclude: list[str] | None = None,
    act_symmetric: bool = False,
    weight_type: str = "int8",
) -> None:
    """Static QDQ quantization: per-channel symmetric int8 (or uint8) weights; activations
    uint8 asymmetric (default) or int8 symmetric."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calib.inputs)

        def get_next(self):  # type: ignore[override]
            return next(self._it, None)

    if method not in ORT_METHODS:
        raise ConversionError(f"unknown ONNX calibration method {method!r}; expected one of {sorted(ORT_METHODS)}")
    if weight_type not in WEIGHT_TYPES:
        raise ConversionError(f"unknown ONNX weight type {weight_type!r}; expected one of {list(WEIGHT_TYPES)}")
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    import onnx

    graph_inputs = {i.name for i in onnx.load(str(fp32), load_external_data=False).graph.input}
    # The face input is uint8 / 255 by definition: its range is [0, 1], not what a few
    # calibration frames happen to reach (a calibration set without teeth or eye whites
    # would clip every brighter pixel). Other models (the audio model) have no face input.
    overrides = {FACE_INPUT: [{"rmin": np.float32(0.0), "rmax": np.float32(1.0)}]} if FACE_INPUT in graph_inputs else {}
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            quantize_static(
                model_input=str(fp32),
                model_output=str(dst),
                calibration_data_reader=Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8 if act_symmetric else QuantType.QUInt8,
                weight_type=QuantType.QInt8 if weight_type == "int8" else QuantType.QUInt8,
                calibrate_method=getattr(CalibrationMethod, ORT_METHODS[method]),
                nodes_to_exclude=list(exclude or []),
                extra_options={
                    "ActivationSymmetric": act_symmetric,
                    "WeightSymmetric": True,
                    "TensorQuantOverrides": overrides,
                },
            )
    except Exception as exc:
        raise ConversionError(
            f"onnxruntime static quantization failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from None
    for leftover in dst.parent.glob("augmented_model*.onnx"):
        leftover.unlink()


@dataclass
class OrtStructure:
    convs: int
    int8_weight_convs: int  # convs whose weight is an int8 initializer behind DequantizeLinear
    quantized_activations: int  # QuantizeLinear nodes on activations
    qlinear_convs: int  # convs onnxruntime runs with integer kernels after fusing QDQ
    label: str  # "int8", "int8-weight-only" or "float"

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def structure(path: Path) -> OrtStructure:
    """What the file really is: int8 weights stored? activations quantized? and which
    kernels onnxruntime actually runs (the graph after its QDQ fusion)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto

    model = onnx.load(str(path))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    convs = [n for n in g.node if n.op_type == "Conv"]
    int8_w = 0
    for conv in convs:
        dq = producers.get(conv.input[1])
        if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in inits:
            if inits[dq.input[0]].data_type in (TensorProto.INT8, TensorProto.UINT8):
                int8_w += 1
    q_acts = sum(1 for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits)

    optimized = path.with_suffix(".ort-optimized.onnx")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(optimized)
    opts.log_severity_level = 3
    try:
        ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        fused = onnx.load(str(optimized))
        qlinear = sum(1 for n in fused.graph.node if n.op_type in ("QLinearConv", "ConvInteger"))
    finally:
        optimized.unlink(missing_ok=True)
    if int8_w and q_acts and qlinear:
        label = "int8"
    elif int8_w:
        label = "int8-weight-only"
    else:
        label = "float"
    return OrtStructure(len(convs), int8_w, q_acts, qlinear, label)


def conv_output_names(fp32: Path) -> dict[str, str]:
    """ONNX Conv node name -> its output tensor name (MNN names its ops by the latter)."""
    import onnx

    return {n.name: n.output[0] for n in onnx.load(str(fp32)).graph.node if n.op_type == "Conv"}
