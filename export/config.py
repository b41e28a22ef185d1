"""`dhm export`'s settings (light to import: `dhm --help` builds its options from them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dhm.settings import setting


@dataclass(frozen=True)
class ExportConfig:
    """What `dhm export` writes and what it validates on (each field's help, default and range, once)."""

    targets: str | Sequence[str] = setting("all", "onnx, mnn or all (comma-separated).", option="--target")
    variants: str | Sequence[str] = setting(
        "fp32", "Comma-separated: fp32, fp16, int8 (int8 needs a quantize output as MODEL)."
    )
    data: Path | None = setting(
        None, "Dataset folder: validate on its held-out frames instead of random inputs.", path=True
    )
    frames: int = setting(8, "Validation frames.", lo=1, hi=1000)
    opset: int | None = setting(None, "ONNX opset (default 17).", lo=7, hi=21)
    audio_model: Path | None = setting(
        None,
        "An audio student (`dhm distill-audio` OUT/audio_student.pt) to ship as the phone's PCM -> features model.",
        path=True,
    )
