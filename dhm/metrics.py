"""Image-quality and model-cost metrics.

Image metrics take arrays of the same shape, either float in [0, 1] (data_range=1) or
uint8 (data_range=255), laid out HWC, CHW, or with a leading batch axis. Channel-first
inputs are detected by a leading axis of 3 when the last axis is not.
"""

from __future__ import annotations

import os
from functools import lru_cache
from dataclasses import dataclass
from typing import TYPE_CHECKING

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
class ImageQuality:
    psnr: float
    ssim: float
    mouth_psnr: float
    max_abs: float

    def to_dict(self) -> dict[str, float]:
        return {"psnr": self.psnr, "ssim": self.ssim, "mouth_psnr": self.mouth_psnr, "max_abs": self.max_abs}


def image_quality(pred: np.ndarray, ref: np.ndarray, data_range: float = 1.0) -> ImageQuality:
    return ImageQuality(
        psnr=psnr(pred, ref, data_range),
        ssim=ssim(pred, ref, data_range),
        mouth_psnr=mouth_psnr(pred, ref, data_range),
        max_abs=max_abs_diff(pred, ref),
    )


# ------------------------------------------------------------------------ model cost


def count_macs(model: "torch.nn.Module", *inputs: "torch.Tensor") -> int:
    """Multiply-accumulates of one forward pass over convolutions and linear layers.

    Normalisation, activations, resampling and additions are not counted (the usual
    convention, and what thop reports for these layers).
    """
    import torch
    from torch import nn

    total = 0

    def conv_hook(module: nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        per_output = (module.in_channels // module.groups) * kh * kw
        total += int(out.numel() // out.shape[0]) * per_output

    def linear_hook(module: nn.Linear, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += int(out.numel() // out.shape[0]) * module.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
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


@lru_cache(maxsize=64)
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
