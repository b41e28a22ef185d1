"""Where the lips are in a generated crop, from the frame's landmarks.

Ultralight's landmarks come from its PFLD model (110 points, `data_utils/get_landmark.py`
and `mean_face.txt`): 0-32 the jaw, 52 the nose bridge (the crop's top), 90-101 the outer
lip contour, 102-109 the inner one. dhm's built-in set draws its speaker with the same
layout. The lips are about 2% of the 160x160 crop, so a whole-crop PSNR can hide a student
that paints them the wrong colour; these regions make the lips a figure of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dhm.data.preprocess import CropBox
from dhm.spec import PreprocessSpec

LIP_OUTER = tuple(range(90, 102))
LIP_INNER = tuple(range(102, 110))
LIP_MARGIN = 3  # pixels around the outer contour in the lip box


@dataclass(frozen=True)
class LipRegion:
    """One frame's lips in inner-crop pixels."""

    box: tuple[int, int, int, int]  # y0, y1, x0, x1 slice bounds around the outer contour
    ring: np.ndarray  # bool [inner, inner]: inside the outer contour, outside the inner one (the lips)
    mouth: np.ndarray  # bool [inner, inner]: inside the outer contour (lips and opening)


def to_inner(points: np.ndarray, box: CropBox, frame_hw: tuple[int, int], pre: PreprocessSpec) -> np.ndarray:
    """Frame pixel coordinates -> inner-crop coordinates (float), as the crop resize maps
    the (possibly clipped) box region onto crop_size x crop_size."""
    h = min(box.y1, frame_hw[0]) - box.y0
    w = min(box.x1, frame_hw[1]) - box.x0
    x = (points[:, 0].astype(np.float64) - box.x0 + 0.5) * pre.crop_size / w - 0.5 - pre.border
    y = (points[:, 1].astype(np.float64) - box.y0 + 0.5) * pre.crop_size / h - 0.5 - pre.border
    return np.stack([x, y], axis=1)


def lip_region(landmarks: np.ndarray, box: CropBox, frame_hw: tuple[int, int], pre: PreprocessSpec) -> LipRegion | None:
    """The lips of one frame, or None where the landmarks have no lip points."""
    if landmarks.shape[0] <= max(LIP_INNER):
        return None
    n = pre.inner_size
    outer = np.round(to_inner(landmarks[list(LIP_OUTER)], box, frame_hw, pre)).astype(np.int32)
    inner = np.round(to_inner(landmarks[list(LIP_INNER)], box, frame_hw, pre)).astype(np.int32)
    mouth = np.zeros((n, n), np.uint8)
    cv2.fillPoly(mouth, [outer], 1)
    hole = np.zeros((n, n), np.uint8)
    cv2.fillPoly(hole, [inner], 1)
    ring = (mouth > 0) & (hole == 0)
    if not ring.any():
        return None
    x0, y0 = outer.min(axis=0) - LIP_MARGIN
    x1, y1 = outer.max(axis=0) + LIP_MARGIN + 1
    y0, y1, x0, x1 = (int(np.clip(v, 0, n)) for v in (y0, y1, x0, x1))
    if y1 <= y0 or x1 <= x0:
        return None
    return LipRegion(box=(y0, y1, x0, x1), ring=ring, mouth=mouth > 0)


def union_box(regions: list[LipRegion | None]) -> tuple[int, int, int, int] | None:
    """One box holding every frame's lips: a fixed window in which to measure the mouth
    opening (a per-frame box would leak the true opening into the measurement)."""
    boxes = [r.box for r in regions if r is not None]
    if not boxes:
        return None
    return (min(b[0] for b in boxes), max(b[1] for b in boxes), min(b[2] for b in boxes), max(b[3] for b in boxes))
