"""`dhm quantize`'s settings (light to import: `dhm --help` builds its options from them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dhm.settings import setting

DEFAULT_TARGET_PSNR = 35.0


@dataclass(frozen=True)
class QuantizeConfig:
    """What `dhm quantize` makes and how (each field's help, default and range, once)."""

    fp16: bool = setting(True, "ONNX FP16 (float32 I/O) and MNN FP16 weights.", option="--fp16/--no-fp16")
    int8: bool = setting(True, "ONNX QDQ INT8 and MNN full INT8.", option="--int8/--no-int8")
    calib_frames: int = setting(24, "Calibration frames (held-out calibration blocks).", lo=8, hi=10_000)
    eval_frames: int = setting(16, "Evaluation frames (other held-out blocks).", lo=1, hi=10_000)
    ort_method: str = setting(
        "minmax", "onnxruntime calibration method.", option="--method", choices=("minmax", "entropy", "percentile")
    )
    mnn_method: str = setting(
        "auto",
        "MNN feature calibration; auto tries EMA, then KL, then ADMM (slow), stopping at the first that meets "
        "--target-psnr, and keeps the best held-out PSNR of those it tried.",
        choices=("auto", "KL", "ADMM", "EMA"),
    )
    target_psnr: float = setting(
        DEFAULT_TARGET_PSNR, "INT8 target, dB against FP32; layers are kept in float until it holds.", lo=0.0, hi=200.0
    )
    calib_file: Path | None = setting(
        None, "A calib.npz from an earlier run to calibrate on instead.", option="--calib", path=True
    )
    use_inc: bool = setting(
        False,
        "Let neural-compressor autotune choose the ONNX activation calibration and symmetry (by held-out PSNR).",
        option="--inc",
        flag=True,
    )
