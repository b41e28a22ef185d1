"""MNN full INT8 through MNN's offline quantizer, and the structural check of MNN files.

The quantizer is fed raw multi-input samples with its "sequence" input type: one folder
per sample, holding a whitespace-separated `<input>.txt` per input and an `input.json`
naming the inputs and their shapes.

Calibration method: by default ("auto") dhm quantizes with EMA, then KL, then ADMM, stopping
at the first that meets the target, keeps the one with the best held-out PSNR, and records the
figures as the reason (on a small trained generator here: KL 24.7 dB, ADMM 44.6 dB, EMA
53.0 dB, because KL's thresholds clipped the output layer's narrow range). The exported graphs
have BatchNorm folded into the convolutions, so MNN does not force EMA; if a graph still holds
BatchNorm ops, MNN switches to EMA itself and dhm records that as the method actually used.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dhm.data.inputs import InputSet
from dhm.errors import ConversionError
from dhm.runtime_py.engines.mnn_tools import quantize_mnn, run_tool

# In the order `--mnn-method auto` tries them, cheapest first, until one meets the target. MNN's
# ADMM iterates 300 times over every activation of one calibration frame (its sequence input
# path keeps only the last), which costs minutes on a full-size model.
MNN_METHODS = ("EMA", "KL", "ADMM")
# Methods whose quantizer honours skip_quant_op_names (MNN 3.6.1's EMA path ignores it).
SKIP_HONOURING = ("KL", "ADMM")


def write_calibration_folder(inputs: InputSet, folder: Path, output_names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, x in enumerate(inputs.inputs):
        sample = folder / f"{k:04d}"
        sample.mkdir()
        spec = []
        for name, arr in x.items():
            np.savetxt(sample / f"{name}.txt", arr.reshape(-1, arr.shape[-1]), fmt="%.7g")
            spec.append({"name": name, "shape": list(arr.shape)})
        (sample / "input.json").write_text(json.dumps({"inputs": spec, "outputs": output_names}))


def dump_json(mnn_path: Path) -> dict:
    """The MNN file as JSON, through MNN's own converter (in a child process)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.json"
        run_tool(
            "mnnconvert",
            ["mnnconvert", "-f", "MNN", "--modelFile", str(mnn_path), "--JsonFile", str(out)],
            f"reading {mnn_path.name}",
        )
        if not out.is_file():
            raise ConversionError(f"MNN converter could not dump {mnn_path.name}")
        return loads_mnn_json(out.read_text())


def loads_mnn_json(text: str) -> dict:
    """MNN's JSON dump writes a non-finite float bare (`nan`, `inf`, `-inf`: a quantization
    scale of a channel that never fired); JSON has no such tokens, Python's parser takes
    NaN and Infinity."""
    fixed = re.sub(
        r"(?<=[\[,:\s])(-?)(nan|inf)(?=[\s,\]}])", lambda m: "NaN" if m[2] == "nan" else f"{m[1]}Infinity", text
    )
    return json.loads(fixed)


def has_batchnorm(mnn_json: dict) -> bool:
    return any(op.get("type") == "BatchNorm" for op in mnn_json.get("oplists", []))


# A quantize's fallback rounds re-quantize one source file; its JSON dump costs a second or more.
_BATCHNORM: dict[str, bool] = {}


def _source_has_batchnorm(mnn_path: Path) -> bool:
    key = hashlib.sha256(mnn_path.read_bytes()).hexdigest()
    if key not in _BATCHNORM:
        _BATCHNORM[key] = has_batchnorm(dump_json(mnn_path))
    return _BATCHNORM[key]


@dataclass
class MnnStructure:
    convs: int
    int8_convs: int  # int8 weights and int8 feature scales: integer kernels
    weight_only_convs: int  # int8 weights, float features
    int8_tensors: int  # tensors with DT_INT8 quant info
    label: str

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def structure(mnn_path: Path) -> MnnStructure:
    data = dump_json(mnn_path)
    convs = [op for op in data.get("oplists", []) if op.get("type") in ("Convolution", "ConvolutionDepthwise")]
    full = weight_only = 0
    for op in convs:
        qp = (op.get("main") or {}).get("quanParameter")
        if not qp:
            continue
        sym = (op.get("main") or {}).get("symmetricQuan") or {}
        if qp.get("scaleIn", 0) and qp.get("scaleOut", 0) and sym.get("outputDataType") == "DT_INT8":
            full += 1
        else:
            weight_only += 1
    int8_tensors = sum(
        1 for t in data.get("extraTensorDescribe", []) or [] if (t.get("quantInfo") or {}).get("type") == "DT_INT8"
    )
    if full and int8_tensors:
        label = "int8"
    elif full or weight_only:
        label = "int8-weight-only"
    else:
        label = "float"
    return MnnStructure(len(convs), full, weight_only, int8_tensors, label)


def quantize(
    fp32_mnn: Path,
    dst: Path,
    calib_folder: Path,
    n_samples: int,
    method: str = "KL",
    skip_ops: list[str] | None = None,
    biz_code: str = "",
) -> str:
    """Run MNN's quantizer, then keep the Resize -> Concat joins in float and write
    `biz_code` (MNN's quantizer drops the source's); returns the feature method used."""
    if method not in MNN_METHODS:
        raise ConversionError(f"unknown MNN method {method!r}; expected one of {list(MNN_METHODS)}")
    used = "EMA" if _source_has_batchnorm(fp32_mnn) else method
    config = {
        "path": str(calib_folder),
        "used_sample_num": n_samples,
        "feature_quantize_method": used,
        "weight_quantize_method": "MAX_ABS",
        "feature_clamp_value": 127,
        "weight_clamp_value": 127,
        "batch_size": 1,
        "quant_bits": 8,
        "skip_quant_op_names": list(skip_ops or []),
        "input_type": "sequence",
        "debug": False,
    }
    cfg = dst.with_suffix(".quant-config.json")
    cfg.write_text(json.dumps(config, indent=1))
    try:
        quantize_mnn(fp32_mnn, dst, cfg)
    finally:
        cfg.unlink(missing_ok=True)
        # the quantizer leaves its computed scales beside the output
        Path(str(dst) + ".json").unlink(missing_ok=True)
    float_resize_concats(dst, biz_code)
    return used


def float_resize_concats(mnn_path: Path, biz_code: str = "") -> list[str]:
    """Keep every Concat fed by a Resize (the U-Net decoder's upsample + skip joins) in float.

    MNN's quantizer gives those Concat outputs int8 scales; the Resize feeding one then runs
    in int8, and on MNN's aarch64 kernels (what phones run) that bilinear resize is wrong in
    the leftmost and rightmost columns: the demo's x10 student scored 32.7 dB against its
    FP32 model on ARM (x86: 41.9 dB), with a mean error of 0.06-0.10 in the edge columns and
    0.005 in the middle. Bisecting the quantized tensors under qemu-aarch64 (every other op
    and tensor in float) pinned it to exactly these four tensors; with them in float the same
    file scores 43.2 dB on ARM and 43.3 dB on x86, and every convolution stays INT8.
    The file is rewritten (through MNN's JSON form) with `biz_code`. Returns the tensors changed."""
    data = dump_json(mnn_path)
    names = data.get("tensorName", [])
    broken = [
        names[t["index"]]
        for t in data.get("extraTensorDescribe", []) or []
        if not math.isfinite((t.get("quantInfo") or {}).get("scale", 0.0))
    ]
    if broken:  # a tensor constant over the calibration set: the file would compute NaN
        raise ConversionError(
            f"MNN's INT8 calibration gave {len(broken)} tensor(s) a non-finite scale (first: {broken[0]})"
        )
    producer = {o: op for op in data.get("oplists", []) for o in op.get("outputIndexes", [])}
    joins = {
        o
        for op in data.get("oplists", [])
        if op.get("type") == "Concat"
        and any(producer.get(i, {}).get("type") == "Interp" for i in op.get("inputIndexes", []))
        for o in op.get("outputIndexes", [])
    }
    changed = []
    for t in data.get("extraTensorDescribe", []) or []:
        if t.get("index") in joins and (t.get("quantInfo") or {}).get("type") == "DT_INT8":
            del t["quantInfo"]
            changed.append(names[t["index"]])
    if changed or biz_code:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "model.json"
            src.write_text(json.dumps(data))
            plain, out = Path(tmp) / "plain.mnn", Path(tmp) / "model.mnn"
            run_tool(
                "mnnconvert",
                ["mnnconvert", "-f", "JSON", "--modelFile", str(src), "--MNNModel", str(plain)],
                f"writing {mnn_path.name}",
            )
            # the JSON route drops the bizCode; MNN -> MNN sets it (outputs unchanged: checked)
            run_tool(
                "mnnconvert",
                ["mnnconvert", "-f", "MNN", "--modelFile", str(plain), "--MNNModel", str(out), "--bizCode", biz_code],
                f"writing {mnn_path.name}",
            )
            if not out.is_file() or out.stat().st_size == 0:
                raise ConversionError(f"MNN converter could not rewrite {mnn_path.name}")
            out.replace(mnn_path)
    return changed


def weight_only(onnx_path: Path, dst: Path) -> None:
    """The converter's int8 weight storage (float compute): labelled weight-only."""
    from dhm.runtime_py.engines.mnn_tools import convert_onnx

    convert_onnx(onnx_path, dst, extra_args=["--weightQuantBits", "8"])


__all__ = ["MNN_METHODS", "MnnStructure", "quantize", "structure", "weight_only", "write_calibration_folder"]
