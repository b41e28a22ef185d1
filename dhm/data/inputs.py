"""Network inputs for validation, calibration and benchmarking.

Real inputs come from a dataset's held-out frames, in one of two protocols:

* "inference": the reference is the target frame itself, as the deployed model is fed.
  It measures parity (one model against another on the inputs a phone sees), but not
  generation: the true mouth is in the input, so copying it scores perfectly.
* "generation": the reference is another held-out frame, as in training. The mouth must
  come from the audio, so quality against the ground truth (and lip sync) means something.

Without a dataset, seeded random inputs of the right shapes stand in. Each set carries the
frames' lip regions (`dhm.data.lips`) and, for the built-in data, the true mouth opening.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dhm.errors import SpecError
from dhm.spec import AUDIO_INPUT, FACE_INPUT, GeneratorSpec

if TYPE_CHECKING:
    from dhm.data.lips import LipRegion

PROTOCOLS = ("inference", "generation")


@dataclass
class InputSet:
    """A list of single-frame network inputs and where they came from."""

    inputs: list[dict[str, np.ndarray]]
    source: str  # "dataset:<part>[:generation]" or "random:<seed>"
    frames: list[int]
    references: list[int] = field(default_factory=list)  # the reference frame of each input
    lips: list["LipRegion | None"] | None = None  # per input, from the target frame's landmarks
    openness: list[float] | None = None  # the true mouth opening per input (built-in data only)
    targets: np.ndarray | None = None  # ground-truth inner crops [N,3,H,W] in [0,1]

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def protocol(self) -> str:
        return "generation" if self.source.endswith(":generation") else "inference"

    def quality(self, pred: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
        """Whole-crop, mouth and lip figures of `pred` against `ref` (both [N,3,H,W] in
        [0,1], one image per input), JSON-ready."""
        from dhm.manifest import json_number
        from dhm.metrics import image_quality

        q = image_quality(pred, ref, lips=self.lips).to_dict()
        return {k: json_number(v) if isinstance(v, float) else v for k, v in q.items()} | {"frames": len(self)}

    def lip_sync(self, images: np.ndarray) -> float | None:
        """Correlation of the true mouth opening with the one measured in `images` (the
        built-in data only, and only meaningful in the generation protocol, where the
        reference cannot hand the true mouth to the model)."""
        return lip_sync_score(images, self.openness, self.lips)


def lip_sync_score(
    images: np.ndarray, openness: list[float] | None, lips: list["LipRegion | None"] | None
) -> float | None:
    """The one lip-sync judge (held-out sets here, and every training run's evaluation): the
    true opening against the opening measured in the frames' union lip window; None without
    a true opening (data other than the built-in synth) or without lips."""
    from dhm.data.lips import union_box
    from dhm.metrics import lip_sync

    window = union_box(lips) if lips is not None else None
    if openness is None or window is None:
        return None
    return round(lip_sync(images, openness, window), 4)


def evenly_spaced(indices: list[int] | tuple[int, ...], n: int) -> list[int]:
    if n >= len(indices):
        return list(indices)
    pos = np.linspace(0, len(indices) - 1, n).round().astype(int)
    return [indices[i] for i in pos]


def generation_references(frames: list[int]) -> list[int]:
    """Each frame's reference in the generation protocol: another frame of the same
    held-out set, half the set away (a different mouth, never the frame itself)."""
    n = len(frames)
    return [frames[(k + n // 2) % n] if n > 1 else frames[k] for k in range(n)]


def true_openness(root: Path) -> list[float] | None:
    """The built-in data's per-frame mouth opening (synth.json), or None."""
    from dhm.io import read_json

    meta = root / "synth.json"
    if not meta.is_file():
        return None
    try:
        values = read_json(meta, "synth record").get("mouth_openness")
    except (SpecError, AttributeError):
        return None
    return [float(v) for v in values] if isinstance(values, list) else None


def heldout_inputs(
    data_dir: str | Path, spec: GeneratorSpec, part: str = "eval", max_frames: int = 8, protocol: str = "inference"
) -> InputSet:
    """Inputs from the dataset's held-out `part` ("eval" or "calib") in `protocol`."""
    from dhm.data.dataset import open_dataset
    from dhm.data.lips import lip_region
    from dhm.data.samples import SampleBuilder
    from dhm.data.split import split_frames

    if protocol not in PROTOCOLS:
        raise SpecError(f"protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    ds = open_dataset(data_dir, mode=spec.mode)
    split = split_frames(ds.n_frames)
    frames = evenly_spaced(getattr(split, part), max_frames)
    refs = generation_references(frames) if protocol == "generation" else list(frames)
    builder = SampleBuilder(ds, spec)
    inputs, targets = [], []
    for i, r in zip(frames, refs, strict=True):
        s = builder.sample(i, r)
        inputs.append({FACE_INPUT: s.face[None], AUDIO_INPUT: s.audio[None]})
        targets.append(s.target)
    pre = spec.preprocess
    lips = [lip_region(ds.landmarks[i], ds.boxes[i], ds.frame_hw, pre) for i in frames]
    opening = true_openness(ds.root)
    source = f"dataset:{part}" + (":generation" if protocol == "generation" else "")
    return InputSet(
        inputs=inputs,
        source=source,
        frames=frames,
        references=refs,
        lips=lips if any(r is not None for r in lips) else None,
        openness=[opening[i] for i in frames] if opening and len(opening) >= ds.n_frames else None,
        targets=np.stack(targets),
    )


def save_inputs(path: Path, inputs: InputSet) -> None:
    """An input set as .npz (the quantize recipe's calibration and evaluation sets)."""
    extra = {}
    if inputs.lips is not None and all(r is not None for r in inputs.lips):
        extra["lip_boxes"] = np.asarray([r.box for r in inputs.lips], np.int32)  # type: ignore[union-attr]
        extra["lip_rings"] = np.packbits(np.stack([r.ring for r in inputs.lips]), axis=-1)  # type: ignore[union-attr]
        extra["lip_mouths"] = np.packbits(np.stack([r.mouth for r in inputs.lips]), axis=-1)  # type: ignore[union-attr]
    if inputs.openness is not None:
        extra["openness"] = np.asarray(inputs.openness, np.float32)
    np.savez_compressed(
        path,
        face=np.concatenate([x[FACE_INPUT] for x in inputs.inputs]),
        audio=np.concatenate([x[AUDIO_INPUT] for x in inputs.inputs]),
        frames=np.asarray(inputs.frames),
        references=np.asarray(inputs.references or inputs.frames),
        source=np.asarray(inputs.source),
        **extra,
    )


def load_inputs(path: Path) -> InputSet:
    """An input set saved by `save_inputs` (one clear line for anything else)."""
    from dhm.data.lips import LipRegion

    try:
        data = np.load(path, allow_pickle=False)
        face, audio, frames = data["face"], data["audio"], data["frames"]
        source = str(data["source"])
        refs = data["references"] if "references" in data else frames
        lips = None
        if "lip_boxes" in data:
            n = face.shape[-1]
            rings = np.unpackbits(data["lip_rings"], axis=-1)[..., :n].astype(bool)
            mouths = np.unpackbits(data["lip_mouths"], axis=-1)[..., :n].astype(bool)
            lips = [
                LipRegion(tuple(int(v) for v in b), r, m)
                for b, r, m in zip(data["lip_boxes"], rings, mouths, strict=True)
            ]
        opening = [float(v) for v in data["openness"]] if "openness" in data else None
    except Exception as exc:
        raise SpecError(f"{path}: not a dhm calibration set ({type(exc).__name__}: {exc})") from None
    if (
        any(a.dtype.kind not in "fiu" for a in (face, audio, frames))
        or min(face.ndim, audio.ndim) < 2
        or frames.ndim != 1
    ):
        raise SpecError(
            f"{path}: not a dhm calibration set (arrays of numbers face [N,…], audio [N,…] and frames [N] expected)"
        )
    if len(face) != len(audio) or len(face) != len(frames) or len(face) == 0:
        raise SpecError(f"{path}: face, audio and frames hold different (or no) numbers of samples")
    if not (np.isfinite(face).all() and np.isfinite(audio).all()):
        raise SpecError(f"{path}: holds non-finite values")
    if (lips is not None and len(lips) != len(face)) or (opening is not None and len(opening) != len(face)):
        raise SpecError(f"{path}: lip regions or openings do not match the samples")
    inputs = [
        {FACE_INPUT: face[i : i + 1].astype(np.float32), AUDIO_INPUT: audio[i : i + 1].astype(np.float32)}
        for i in range(len(face))
    ]
    return InputSet(
        inputs=inputs,
        source=source,
        frames=[int(f) for f in frames],
        references=[int(r) for r in refs],
        lips=lips,
        openness=opening,
    )


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
