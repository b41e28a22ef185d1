"""Per-frame preprocessing, exactly as Ultralight's training and inference do it.

crop box from landmarks -> crop -> resize to 168 (the model's filter) -> inner 160 at [4:164] ->
mask rectangle -> concat(reference, masked) / 255 -> network -> paste back.

This module is the executable specification the native core mirrors; keep every
operation here explicit (dtype, rounding, interpolation) so it can be ported bit-exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dhm.errors import DatasetError, SpecError
from dhm.spec import PREPROCESS, Conventions, PreprocessSpec

# The filters of dhm.spec.INTERPOLATIONS. Since upstream's 2026-05-23 revision the crop is a
# real INTER_AREA resize (averaging for boxes larger than 168 px, OpenCV's area-upscale
# weights for smaller ones); earlier revisions' crops were bilinear (see dhm.spec.Revision).
_INTERPOLATION = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}


@dataclass(frozen=True)
class CropBox:
    """Face box in frame pixels; [y0:y1, x0:x1] may be clipped by the frame's bottom/right."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def side(self) -> int:
        return self.x1 - self.x0


def parse_landmarks(text: str, source: str = "landmarks") -> np.ndarray:
    """Parse a `.lms` file body: one `x y` pair per line -> int32 [P, 2].

    Values are read as float32 and truncated to int32, as Ultralight does.
    """
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DatasetError(f"{source}:{lineno}: expected 'x y', got {line.strip()!r}")
        try:
            rows.append((float(parts[0]), float(parts[1])))
        except ValueError:
            raise DatasetError(f"{source}:{lineno}: not a number pair: {line.strip()!r}") from None
    if not rows:
        raise DatasetError(f"{source}: no landmarks")
    pts = np.asarray(rows, dtype=np.float32)
    if not np.isfinite(pts).all():
        raise DatasetError(f"{source}: non-finite landmark values")
    return pts.astype(np.int32)


def crop_box(lms: np.ndarray, spec: PreprocessSpec = PREPROCESS) -> CropBox:
    need = max(spec.lm_left, spec.lm_right, spec.lm_top) + 1
    if lms.shape[0] < need:
        raise DatasetError(f"landmarks have {lms.shape[0]} points; the crop needs at least {need}")
    x0 = int(lms[spec.lm_left][0])
    x1 = int(lms[spec.lm_right][0])
    y0 = int(lms[spec.lm_top][1])
    return CropBox(x0=x0, y0=y0, x1=x1, y1=y0 + (x1 - x0))


def check_box(box: CropBox, frame_hw: tuple[int, int], source: str) -> None:
    h, w = frame_hw
    if box.side <= 0:
        raise DatasetError(f"{source}: empty crop box (x {box.x0}..{box.x1}); landmarks out of order")
    if box.x0 < 0 or box.y0 < 0 or box.x1 > w or box.y0 >= h:
        raise DatasetError(f"{source}: crop box {box.x0},{box.y0}..{box.x1},{box.y1} lies outside the {w}x{h} frame")


def crop_face(frame: np.ndarray, box: CropBox, spec: PreprocessSpec) -> np.ndarray:
    """Crop the box and resize to crop_size with the model's filter (uint8 BGR [168,168,3]).

    Numpy slicing clips a box that runs past the bottom or right edge, as in Ultralight.
    """
    region = frame[box.y0 : box.y1, box.x0 : box.x1]
    size = spec.crop_size
    return cv2.resize(region, (size, size), interpolation=_INTERPOLATION[spec.crop_interpolation])


def inner(crop: np.ndarray, spec: PreprocessSpec = PREPROCESS) -> np.ndarray:
    b = spec.border
    return crop[b : b + spec.inner_size, b : b + spec.inner_size].copy()


def mask(inner_img: np.ndarray, spec: PreprocessSpec = PREPROCESS) -> np.ndarray:
    out = inner_img.copy()
    cv2.rectangle(out, spec.mask_rect, (0, 0, 0), -1)
    return out


def _divisor(spec: PreprocessSpec) -> np.float32:
    """1 / scale in float32: dividing by it is Ultralight's x / 255 bit for bit (multiplying
    by a rounded 1/255 is not)."""
    if spec.layout != "NCHW":
        raise SpecError(f"preprocess layout {spec.layout!r}: dhm's runtimes pack NCHW")
    return np.float32(1.0 / spec.scale)


def _planes(img: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """OpenCV's BGR channel order -> the network's (`color_order`), and back (a swap)."""
    if spec.color_order == "RGB":
        return img[..., ::-1]
    if spec.color_order != "BGR":
        raise SpecError(f"preprocess color_order {spec.color_order!r}: expected BGR or RGB")
    return img


def to_chw_float(img: np.ndarray, spec: PreprocessSpec = PREPROCESS, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 HWC BGR -> float32 CHW in the model's colour order, x * scale (x / 255 in
    float32, like Ultralight). One pass from the uint8 planes (into `out` where given): the
    same bits as casting first and dividing after, at a fifth of the time."""
    return np.divide(_planes(img, spec).transpose(2, 0, 1), _divisor(spec), out=out, dtype=np.float32)


def face_input(reference_inner: np.ndarray, target_inner: np.ndarray, spec: PreprocessSpec = PREPROCESS) -> np.ndarray:
    """The network's face input: concat(reference, masked target) * scale, [2C,H,W]."""
    c = reference_inner.shape[2]
    packed = np.empty((2 * c, *reference_inner.shape[:2]), np.float32)
    to_chw_float(reference_inner, spec, packed[:c])
    to_chw_float(mask(target_inner, spec), spec, packed[c:])
    return packed


def audio_window(features: np.ndarray, index: int, conv: Conventions) -> np.ndarray:
    """Frames index-W/2 … index+W/2-1 of `features` for the model's window W (i-4 … i+3 or
    i-8 … i+7), zero-padded past either end, reshaped to its audio input shape (float32)."""
    n = features.shape[0]
    lo, hi = index - conv.window_before, index + conv.window_after
    window = np.zeros((hi - lo, *features.shape[1:]), dtype=np.float32)
    src_lo, src_hi = max(lo, 0), min(hi, n)
    if src_hi > src_lo:
        window[src_lo - lo : src_hi - lo] = features[src_lo:src_hi]
    return window.reshape(conv.audio_shape)


def to_uint8_image(pred_chw: np.ndarray, spec: PreprocessSpec = PREPROCESS) -> np.ndarray:
    """Network output [C,H,W] in [0,1] -> uint8 HWC BGR, truncating like np.uint8(x*255)."""
    c, h, w = pred_chw.shape
    image = np.empty((h, w, c), np.uint8)
    # computed in the dtype `pred * divisor` had and cast on the way out: `.astype(np.uint8)`'s bits
    product = np.result_type(pred_chw.dtype, np.float32)
    np.multiply(pred_chw.transpose(1, 2, 0), _divisor(spec), out=_planes(image, spec), dtype=product, casting="unsafe")
    return image


def paste_back(
    frame: np.ndarray,
    crop: np.ndarray,
    pred_chw: np.ndarray,
    box: CropBox,
    spec: PreprocessSpec = PREPROCESS,
) -> np.ndarray:
    """Put the prediction into crop[4:164,4:164], resize the crop back to the box, and
    write it into a copy of the frame."""
    out_frame = frame.copy()
    region = out_frame[box.y0 : box.y1, box.x0 : box.x1]
    h, w = region.shape[:2]
    patched = crop.copy()
    b = spec.border
    patched[b : b + spec.inner_size, b : b + spec.inner_size] = to_uint8_image(pred_chw, spec)
    region[...] = cv2.resize(patched, (w, h), interpolation=_INTERPOLATION[spec.paste_interpolation])
    return out_frame
