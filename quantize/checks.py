"""The one structural INT8 gate for both engines, used by quantize and export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dhm.errors import ConversionError


def require_int8(path: Path) -> dict[str, Any]:
    """Return the file's structure if it is really INT8 (int8 weights *and* integer
    kernels); a weight-only or float file stops the run."""
    if path.suffix == ".onnx":
        from dhm.quantize.ort_int8 import structure
    else:
        from dhm.quantize.mnn_int8 import structure
    st = structure(path)
    if st.label != "int8":
        raise ConversionError(f"{path.name}: not really INT8 ({st.label}: {st.to_dict()})")
    return st.to_dict()
