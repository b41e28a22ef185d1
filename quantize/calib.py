"""Calibration and evaluation sets for quantization.

Both come from the dataset's held-out frames, built exactly as inference builds them
(reference = current frame, same crop, mask and audio window). Calibration frames come
from the held-out *calibration* blocks and evaluation frames from the *evaluation*
blocks, so a variant is never judged on the frames it was calibrated on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dhm.data.inputs import InputSet, heldout_inputs
from dhm.errors import DatasetError, SpecError
from dhm.spec import AUDIO_INPUT, FACE_INPUT, GeneratorSpec

MIN_CALIB_FRAMES = 8


@dataclass
class QuantSets:
    calib: InputSet
    eval: InputSet


def build_sets(
    data: str | Path, spec: GeneratorSpec, calib_frames: int, eval_frames: int, calib: InputSet | None = None
) -> QuantSets:
    """Held-out calibration and evaluation inputs; `calib` (a saved set) replaces the
    dataset's calibration frames."""
    from dhm.data import open_dataset, split_frames

    if calib is not None:
        if len(calib) < MIN_CALIB_FRAMES:
            raise SpecError(f"the calibration set holds {len(calib)} frames; at least {MIN_CALIB_FRAMES} are needed")
        return QuantSets(calib=calib, eval=heldout_inputs(data, spec, "eval", eval_frames))
    if calib_frames < MIN_CALIB_FRAMES:
        raise SpecError(f"--calib-frames {calib_frames}: at least {MIN_CALIB_FRAMES} calibration frames are needed")
    ds = open_dataset(data, mode=spec.mode)
    split = split_frames(ds.n_frames)
    if len(split.calib) < calib_frames:
        raise DatasetError(
            f"{data}: too few calibration frames: {calib_frames} needed, the held-out calibration blocks hold "
            f"{len(split.calib)} (of {ds.n_frames} frames); pass --calib-frames "
            f"{max(len(split.calib), MIN_CALIB_FRAMES)} "
            f"or use a clip of at least {_frames_needed(calib_frames)} frames"
        )
    calib = heldout_inputs(data, spec, "calib", calib_frames)
    evaluation = heldout_inputs(data, spec, "eval", eval_frames)
    assert not set(calib.frames) & set(evaluation.frames)
    return QuantSets(calib=calib, eval=evaluation)


def _frames_needed(calib_frames: int) -> int:
    """Smallest clip whose split holds `calib_frames` calibration frames (blocks of 25,
    every 6th held out, alternating eval/calib)."""
    from dhm.data.split import DEFAULT_BLOCK, DEFAULT_EVERY

    blocks = -(-calib_frames // DEFAULT_BLOCK)  # calibration blocks needed
    held_blocks = 2 * blocks
    return (DEFAULT_EVERY * (held_blocks - 1) + DEFAULT_EVERY // 2 + 1) * DEFAULT_BLOCK


def check_shapes(inputs: InputSet, spec: GeneratorSpec, what: str) -> None:
    expected = spec.input_shapes(1)
    for k, x in enumerate(inputs.inputs):
        for name, shape in expected.items():
            if name not in x:
                raise SpecError(f"{what}: sample {inputs.frames[k]} has no {name!r} input")
            if tuple(x[name].shape) != tuple(shape):
                raise SpecError(
                    f"{what}: {name!r} of frame {inputs.frames[k]} is {list(x[name].shape)}, "
                    f"the model ({spec.describe()}) takes {list(shape)}"
                )


def check_finite_activations(model, inputs: InputSet, what: str = "calibration set") -> None:
    """Run the FP32 model with hooks on every layer; name the first frame whose
    activations overflow (a calibrator would silently learn infinite ranges)."""
    import torch

    bad: list[str] = []

    def hook(module, _inp, out) -> None:
        if not bad and isinstance(out, torch.Tensor) and not torch.isfinite(out).all():
            bad.append(module._dhm_name)

    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.BatchNorm2d)):
            module._dhm_name = name
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            for frame, x in zip(inputs.frames, inputs.inputs, strict=True):
                for name, arr in x.items():
                    if not np.isfinite(arr).all():
                        raise SpecError(f"{what}: input {name!r} of frame {frame} holds non-finite values")
                model(torch.from_numpy(x[FACE_INPUT]), torch.from_numpy(x[AUDIO_INPUT]))
                if bad:
                    raise SpecError(f"{what}: activations become non-finite on frame {frame} (first at layer {bad[0]})")
    finally:
        for h in handles:
            h.remove()
