"""Network samples built from a dataset, exactly as the model's upstream revision built them.

* Training sample (frame i, reference j): the target is frame i's inner crop; the
  reference is frame j cropped with its own box (upstream from 2024-11-04) or with frame
  i's box (the first revisions), as the spec's revision says; the masked input is the
  target with the mouth rectangle blacked out.
* Inference sample (frame i): the reference is frame i itself. Evaluation and
  calibration use this form, because that is what the deployed model sees.

The crop filter and the audio window come from the model's spec (`GeneratorSpec`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from dhm.data.dataset import Dataset
from dhm.data.preprocess import CropBox, audio_window, crop_face, face_input, inner, to_chw_float
from dhm.errors import DatasetError
from dhm.spec import GeneratorSpec


@dataclass(frozen=True)
class Sample:
    index: int
    reference: int
    face: np.ndarray  # float32 [6,160,160]
    audio: np.ndarray  # float32, the model's audio input shape
    target: np.ndarray  # float32 [3,160,160], the ground-truth inner crop


class SampleBuilder:
    """Builds samples for one model's conventions, caching decoded frames (LRU)."""

    def __init__(self, dataset: Dataset, spec: GeneratorSpec, cache_frames: int = 256) -> None:
        self.dataset = dataset
        self.spec = spec
        self.conventions = spec.conventions
        self.features = dataset.audio(spec.mode)
        if len(self.features) < spec.window:
            raise DatasetError(
                f"{dataset.root}: {len(self.features)} {spec.mode} feature frames cannot fill the model's "
                f"{spec.window}-frame audio window ({spec.describe_conventions()})"
            )
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = cache_frames
        self._lips: dict[int, np.ndarray | None] = {}

    def __len__(self) -> int:
        return self.dataset.n_frames

    def frame(self, i: int) -> np.ndarray:
        img = self._cache.get(i)
        if img is None:
            img = self.dataset.frame(i)
            if self._cache_size:
                self._cache[i] = img
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(i)
        return img

    def inner_crop(self, frame_index: int, box: CropBox) -> np.ndarray:
        pre = self.conventions.preprocess
        return inner(crop_face(self.frame(frame_index), box, pre), pre)

    def sample(self, i: int, reference: int | None = None) -> Sample:
        ref = i if reference is None else reference
        box = self.dataset.boxes[i]
        target = self.inner_crop(i, box)
        if ref == i:
            ref_inner = target
        else:
            ref_box = self.dataset.boxes[ref] if self.spec.reference_crop == "own" else box
            ref_inner = self.inner_crop(ref, ref_box)
        return Sample(
            index=i,
            reference=ref,
            face=face_input(ref_inner, target, self.conventions.preprocess),
            audio=audio_window(self.features, i, self.conventions),
            target=to_chw_float(target, self.conventions.preprocess),
        )

    def inference_sample(self, i: int) -> Sample:
        return self.sample(i, None)

    def lip_mask(self, i: int) -> np.ndarray | None:
        """Frame i's mouth (inside the outer lip contour, grown by 2 px) as a float mask of
        the inner crop, or None where the landmarks have no lips (`dhm.data.lips`)."""
        if i not in self._lips:
            import cv2

            from dhm.data.lips import lip_region

            region = lip_region(
                self.dataset.landmarks[i], self.dataset.boxes[i], self.dataset.frame_hw, self.conventions.preprocess
            )
            mask = None
            if region is not None:
                mask = cv2.dilate(region.mouth.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(np.float32)
            self._lips[i] = mask
        return self._lips[i]

    def batch(self, indices: list[int] | tuple[int, ...], references: list[int] | None = None) -> dict[str, np.ndarray]:
        """Stacked inference-style (or given-reference) samples as named arrays; "lips"
        holds each target's mouth mask [B,1,H,W] (zeros where a frame has no lip points)."""
        refs = references if references is not None else [None] * len(indices)
        samples = [self.sample(i, r) for i, r in zip(indices, refs, strict=True)]
        size = samples[0].target.shape[-1]
        lips = [self.lip_mask(i) for i in indices]
        return {
            "face": np.stack([s.face for s in samples]),
            "audio": np.stack([s.audio for s in samples]),
            "target": np.stack([s.target for s in samples]),
            "lips": np.stack([m if m is not None else np.zeros((size, size), np.float32) for m in lips])[:, None],
        }
