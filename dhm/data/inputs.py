"""Network inputs for validation, calibration and benchmarking.

Real inputs are inference-style samples (reference = current frame) from a dataset's
held-out frames; without a dataset, seeded random inputs of the right shapes stand in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dhm.spec import AUDIO_INPUT, FACE_INPUT, GeneratorSpec


@dataclass
class InputSet:
    """A list of single-frame network inputs and where they came from."""

    inputs: list[dict[str, np.ndarray]]
    source: str  # "dataset:<part>" or "random:<seed>"
    frames: list[int]

    def __len__(self) -> int:
        return len(self.inputs)


def evenly_spaced(indices: list[int] | tuple[int, ...], n: int) -> list[int]:
    if n >= len(indices):
        return list(indices)
    pos = np.linspace(0, len(indices) - 1, n).round().astype(int)
    return [indices[i] for i in pos]


def heldout_inputs(data_dir: str | Path, spec: GeneratorSpec, part: str = "eval", max_frames: int = 8) -> InputSet:
    """Inference-style inputs from the dataset's held-out `part` ("eval" or "calib")."""
    from dhm.data.dataset import open_dataset
    from dhm.data.samples import SampleBuilder
    from dhm.data.split import split_frames

    ds = open_dataset(data_dir, mode=spec.mode)
    split = split_frames(ds.n_frames)
    frames = evenly_spaced(getattr(split, part), max_frames)
    builder = SampleBuilder(ds, spec)
    inputs = []
    for i in frames:
        s = builder.inference_sample(i)
        inputs.append({FACE_INPUT: s.face[None], AUDIO_INPUT: s.audio[None]})
    return InputSet(inputs=inputs, source=f"dataset:{part}", frames=frames)


def random_inputs(spec: GeneratorSpec, n: int = 4, seed: int = 0) -> InputSet:
    rng = np.random.default_rng(seed)
    shapes = spec.input_shapes(1)
    inputs = [
        {
            FACE_INPUT: rng.uniform(0.0, 1.0, shapes[FACE_INPUT]).astype(np.float32),
            AUDIO_INPUT: rng.normal(0.0, 1.0, shapes[AUDIO_INPUT]).astype(np.float32),
        }
        for _ in range(n)
    ]
    return InputSet(inputs=inputs, source=f"random:{seed}", frames=list(range(n)))
