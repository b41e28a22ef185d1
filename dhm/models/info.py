"""`dhm info`: the facts about a checkpoint."""

from __future__ import annotations

import os
from typing import Any

from dhm.io import human_size
from dhm.metrics import file_size, format_count, generator_cost


def checkpoint_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    from dhm.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    spec = ckpt.spec
    shapes = spec.input_shapes(1)
    macs, params = generator_cost(spec)
    size = file_size(path)
    out_shape = spec.output_shapes(1)
    return {
        "path": str(path),
        "arch": spec.arch,
        "mode": spec.mode,
        "widths": list(spec.widths),
        "widths_text": ",".join(map(str, spec.widths)) + (f" ({spec.preset})" if spec.preset else ""),
        "preset": spec.preset,
        "params": params,
        "params_text": f"{params:,} ({format_count(params)})",
        "macs": macs,
        "macs_text": f"{macs:,} ({format_count(macs)})",
        "file_size": size,
        "file_size_text": f"{size:,} B ({human_size(size)})",
        "form": ckpt.form,
        "inputs": {k: list(v) for k, v in shapes.items()},
        "inputs_text": ", ".join(f"{k} {list(v)}" for k, v in shapes.items()),
        "output": {k: list(v) for k, v in out_shape.items()},
        "output_text": ", ".join(f"{k} {list(v)}" for k, v in out_shape.items()),
        "metadata": {k: v for k, v in ckpt.metadata.items() if isinstance(v, (str, int, float, bool, list, dict))},
    }
