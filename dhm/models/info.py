"""`dhm info`: the facts about a checkpoint."""

from __future__ import annotations

import os
from typing import Any

from dhm.io import human_size
from dhm.metrics import file_size, format_count, generator_cost
from dhm.spec import ARCH_NAMES, INTERPOLATION_NAMES, STEM_NAMES, describe_window


def checkpoint_info(path: str | os.PathLike[str], crop_interpolation: str | None = None) -> dict[str, Any]:
    from dhm.models import count_trained_params
    from dhm.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, crop_interpolation=crop_interpolation)
    spec = ckpt.spec
    shapes = spec.input_shapes(1)
    macs, params = generator_cost(spec)
    size = file_size(path)
    out_shape = spec.output_shapes(1)
    detected = ckpt.detected
    assert detected is not None
    rev = spec.rev
    facts: dict[str, Any] = {
        "path": str(path),
        "arch": spec.arch,
        "stem": spec.stem,
        "arch_text": ARCH_NAMES[spec.arch] + (f", {STEM_NAMES[spec.stem]}" if spec.folded else ""),
        "revision": spec.revision,
        "revision_text": (
            f"{rev.label}, upstream {rev.commits} ({rev.period})"
            if spec.arch == "ultralight"
            else f"FeatherTalk (2026-07), {rev.id} conventions"
        ),
        "equivalent_revisions": list(detected.equivalent),
        "detected": detected.describe(),
        "mode": spec.mode,
        "window": spec.window,
        "window_text": describe_window(spec.window),
        "crop_interpolation": spec.crop_interpolation,
        "crop_text": f"{INTERPOLATION_NAMES[spec.crop_interpolation]} ({ckpt.crop_source}"
        + ("; --crop-interpolation overrides it)" if ckpt.crop_source == "revision default" else ")"),
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
    if spec.arch == "mobileone":
        trained = count_trained_params(spec)
        facts["mobileone_form"] = "reparameterized" if ckpt.reparameterized else "trained"
        facts["params_trained"] = trained
        facts["params_text"] = (
            f"{params:,} ({format_count(params)}) reparameterized, "
            f"{trained:,} ({format_count(trained)}) in the trained multi-branch form; "
            f"this file holds the {facts['mobileone_form']} form"
        )
    return facts
