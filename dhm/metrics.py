"""Image-quality and model-cost metrics.

Image metrics take arrays of the same shape, either float in [0, 1] (data_range=1) or
uint8 (data_range=255), laid out HWC, CHW, or with a leading batch axis. Channel-first
inputs are detected by a leading axis of 3 when the last axis is not.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from dhm.spec import MOUTH_SLICE

if TYPE_CHECKING:  # torch stays out of `import dhm.metrics`
    import torch

    from dhm.spec import GeneratorSpec


def _as_float(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def mse(a: np.ndarray, b: np.ndarray) -> float:
    a, b = _as_float(a), _as_float(b)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    return float(np.mean((a - b) ** 2))


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB; +inf for identical inputs."""
    err = mse(a, b)
    if err == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / err))


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(_as_float(a) - _as_float(b))))


def _to_nhwc(a: np.ndarray) -> np.ndarray:
    a = _as_float(a)
    if a.ndim == 2:
        return a[None, :, :, None]
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise ValueError(f"expected an image or a batch of images, got shape {a.shape}")
    if a.shape[-1] not in (1, 3) and a.shape[1] in (1, 3):
        a = a.transpose(0, 2, 3, 1)
    return a


def _gaussian_filter(img: np.ndarray, sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    """Separable 11-tap Gaussian, 'valid' region only (no border effects)."""
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-(x**2) / (2 * sigma**2))
    k /= k.sum()
    n = 2 * radius + 1
    h = img.shape[0] - n + 1
    w = img.shape[1] - n + 1
    rows = sum(k[i] * img[i : i + h] for i in range(n))
    return sum(k[j] * rows[:, j : j + w] for j in range(n))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Mean SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1=0.01, K2=0.03),
    averaged over channels and batch, computed on the valid (unpadded) region."""
    x, y = _to_nhwc(a), _to_nhwc(b)
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch {x.shape} vs {y.shape}")
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    values = []
    for n in range(x.shape[0]):
        for c in range(x.shape[3]):
            xi, yi = x[n, :, :, c], y[n, :, :, c]
            mx, my = _gaussian_filter(xi), _gaussian_filter(yi)
            sxx = _gaussian_filter(xi * xi) - mx * mx
            syy = _gaussian_filter(yi * yi) - my * my
            sxy = _gaussian_filter(xi * yi) - mx * my
            num = (2 * mx * my + c1) * (2 * sxy + c2)
            den = (mx * mx + my * my + c1) * (sxx + syy + c2)
            values.append(np.mean(num / den))
    return float(np.mean(values))


def mouth_region(a: np.ndarray) -> np.ndarray:
    """The masked (mouth) rectangle of 160x160 inner crops, any supported layout."""
    y0, y1, x0, x1 = MOUTH_SLICE
    x = _to_nhwc(a)
    return x[:, y0:y1, x0:x1, :]


def mouth_psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    return psnr(mouth_region(a), mouth_region(b), data_range)


@dataclass(frozen=True)
class LipQuality:
    """The lips, which are ~2% of the crop and invisible in a whole-crop PSNR."""

    psnr: float  # over the lip boxes (outer contour plus a margin)
    bgr: tuple[float, float, float]  # mean colour inside the lip contours, 0-255
    bgr_ref: tuple[float, float, float]
    color_diff: float  # the largest channel difference of the two means, in levels

    def to_dict(self) -> dict[str, Any]:
        return {
            "lip_psnr": self.psnr,
            "lip_bgr": [round(v, 1) for v in self.bgr],
            "lip_bgr_ref": [round(v, 1) for v in self.bgr_ref],
            "lip_color_diff": round(self.color_diff, 2),
        }


def lip_quality(pred: np.ndarray, ref: np.ndarray, lips: Sequence[Any], data_range: float = 1.0) -> LipQuality | None:
    """Lip-box PSNR and the lips' mean colour of `pred` against `ref` (NCHW in [0, 1]),
    with one `dhm.data.lips.LipRegion` (or None) per frame."""
    x, y = _to_nhwc(pred), _to_nhwc(ref)
    boxes_a, boxes_b, ring_a, ring_b = [], [], [], []
    for n, region in enumerate(lips):
        if region is None:
            continue
        y0, y1, x0, x1 = region.box
        boxes_a.append(x[n, y0:y1, x0:x1].reshape(-1, x.shape[-1]))
        boxes_b.append(y[n, y0:y1, x0:x1].reshape(-1, y.shape[-1]))
        ring_a.append(x[n][region.ring])
        ring_b.append(y[n][region.ring])
    if not boxes_a:
        return None
    scale = 255.0 / data_range
    mean_a = np.concatenate(ring_a).mean(axis=0) * scale
    mean_b = np.concatenate(ring_b).mean(axis=0) * scale
    return LipQuality(
        psnr=psnr(np.concatenate(boxes_a), np.concatenate(boxes_b), data_range),
        bgr=tuple(float(v) for v in mean_a),
        bgr_ref=tuple(float(v) for v in mean_b),  # type: ignore[arg-type]
        color_diff=float(np.abs(mean_a - mean_b).max()),
    )


@dataclass(frozen=True)
class ImageQuality:
    psnr: float
    ssim: float
    mouth_psnr: float
    max_abs: float
    lips: LipQuality | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "psnr": self.psnr,
            "ssim": self.ssim,
            "mouth_psnr": self.mouth_psnr,
            "max_abs": self.max_abs,
        }
        if self.lips is not None:
            out.update(self.lips.to_dict())
        return out


def image_quality(
    pred: np.ndarray, ref: np.ndarray, data_range: float = 1.0, lips: Sequence[Any] | None = None
) -> ImageQuality:
    return ImageQuality(
        psnr=psnr(pred, ref, data_range),
        ssim=ssim(pred, ref, data_range),
        mouth_psnr=mouth_psnr(pred, ref, data_range),
        max_abs=max_abs_diff(pred, ref),
        lips=lip_quality(pred, ref, lips, data_range) if lips is not None else None,
    )


def mouth_opening(images: np.ndarray, window: tuple[int, int, int, int], threshold: float = 0.25) -> np.ndarray:
    """The fraction of dark pixels (luma below `threshold`) in a fixed mouth window, per
    image: the open mouth's dark interior. The window is the same for every frame (the
    union of the clip's lip boxes), so it carries no per-frame truth."""
    y0, y1, x0, x1 = window
    x = _to_nhwc(images)[:, y0:y1, x0:x1, :]
    luma = 0.114 * x[..., 0] + 0.587 * x[..., 1] + 0.299 * x[..., 2]  # BGR
    return (luma < threshold).mean(axis=(1, 2))


def lip_sync(images: np.ndarray, openness: Sequence[float], window: tuple[int, int, int, int]) -> float:
    """Pearson correlation between the true mouth opening of each frame and the opening
    measured in the generated images (1: the mouth follows the audio; ~0: it does not)."""
    measured = mouth_opening(images, window)
    truth = np.asarray(openness, dtype=np.float64)
    if measured.std() < 1e-9 or truth.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(truth, measured)[0, 1])


# ------------------------------------------------------------------------ model cost


def feature_agreement(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Audio features against a reference (the last axis is a feature vector): mean cosine
    per vector and the relative error over all of them."""
    p = pred.reshape(-1, pred.shape[-1]).astype(np.float64)
    r = ref.reshape(-1, ref.shape[-1]).astype(np.float64)
    cos = (p * r).sum(1) / (np.linalg.norm(p, axis=1) * np.linalg.norm(r, axis=1) + 1e-12)
    rel = np.linalg.norm(p - r) / (np.linalg.norm(r) + 1e-12)
    return {"cosine": round(float(cos.mean()), 4), "rel_error": round(float(rel), 4)}


def count_macs(model: "torch.nn.Module", *inputs: "torch.Tensor") -> int:
    """Multiply-accumulates of one forward pass over convolutions and linear layers.

    Normalisation, activations, resampling and additions are not counted (the usual
    convention, and what thop reports for these layers).
    """
    import torch
    from torch import nn

    total = 0

    def conv_hook(module: nn.Conv1d | nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
        total += int(out.numel() // out.shape[0]) * per_output

    def linear_hook(module: nn.Linear, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += int(out.numel() // out.shape[0]) * module.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return total


def count_params(model: "torch.nn.Module") -> int:
    return sum(p.numel() for p in model.parameters())


# a budget search asks for a few hundred specs, several times over: keep them all
@lru_cache(maxsize=4096)
def generator_cost(spec: "GeneratorSpec") -> tuple[int, int]:
    """(MACs per frame, parameters) of a generator spec as it runs after export (MobileOne
    models reparameterized), measured on a batch of one."""
    import torch

    from dhm.models import build_model

    model = build_model(spec, reparameterized=True).eval()
    shapes = spec.input_shapes(1)
    inputs = [torch.zeros(s) for s in shapes.values()]
    return count_macs(model, *inputs), count_params(model)


def file_size(path: str | os.PathLike[str]) -> int:
    return os.path.getsize(path)


def format_count(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3f}{unit}"
    return f"{n:.0f}"
