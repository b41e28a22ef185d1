"""Training and distillation objectives (torch)."""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from dhm.distill.weights import LossWeights  # noqa: F401 (the objective's weights, with the terms below)
from dhm.spec import MOUTH_SLICE

FEATURES = ("fuse", "up1", "up2", "up3", "up4")


def mouth_weight_map(size: int, mouth: float, device: torch.device | str = "cpu") -> torch.Tensor:
    y0, y1, x0, x1 = MOUTH_SLICE
    w = torch.ones(1, 1, size, size, device=device)
    w[..., y0:y1, x0:x1] += mouth
    return w / w.mean()


def border_mask(size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[1,1,H,W]: 1 on the crop's frame outside the mask rectangle (the pixels the generator
    copies from its masked input, pasted at the face box's edge), 0 inside."""
    y0, y1, x0, x1 = MOUTH_SLICE
    m = torch.ones(1, 1, size, size, device=device)
    m[..., y0:y1, x0:x1] = 0.0
    return m


def weighted_l1(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return ((a - b).abs() * weight).mean()


def masked_l1(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference over the masked pixels only ([B,1,H,W] mask); 0 if none."""
    area = mask.sum() * a.shape[1]
    return ((a - b).abs() * mask).sum() / area.clamp_min(1.0)


def _gaussian_taps(device: torch.device, dtype: torch.dtype, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32, device=device) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype)


def _gaussian_filter(maps: torch.Tensor) -> torch.Tensor:
    """The 11x11 Gaussian as a row pass then a column pass ('valid' region): 22 taps a pixel
    instead of 121, and one call for every map (docs/measurements.md)."""
    n, g = maps.shape[1], _gaussian_taps(maps.device, maps.dtype)
    rows = F.conv2d(maps, g.view(1, 1, 1, -1).expand(n, 1, 1, g.numel()), groups=n)
    return F.conv2d(rows, g.view(1, 1, -1, 1).expand(n, 1, g.numel(), 1), groups=n)


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM over a batch in [0,1] (same window and constants as dhm.metrics.ssim)."""
    c = a.shape[1]
    filtered = _gaussian_filter(torch.cat([a, b, a * a, b * b, a * b], dim=1))
    mu_a, mu_b, e_aa, e_bb, e_ab = filtered.split(c, dim=1)
    saa, sbb, sab = e_aa - mu_a**2, e_bb - mu_b**2, e_ab - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    num = (2 * mu_a * mu_b + c1) * (2 * sab + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2)
    return (num / den).mean()


class FeatureAdapters(nn.Module):
    """1x1 convs mapping student feature maps to the teacher's channel counts, for the maps
    both have (an s2d stem has no 160x160 `up4`)."""

    def __init__(self, student_channels: dict[str, int], teacher_channels: dict[str, int]) -> None:
        super().__init__()
        shared = [k for k in FEATURES if k in student_channels and k in teacher_channels]
        self.maps = nn.ModuleDict(
            {k: nn.Conv2d(student_channels[k], teacher_channels[k], 1, bias=False) for k in shared}
        )

    def loss(self, student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor]) -> torch.Tensor:
        terms = [F.mse_loss(self.maps[k](student[k]), teacher[k]) for k in self.maps]
        return torch.stack(terms).mean()


def feature_channels(model: nn.Module, spec) -> dict[str, int]:
    shapes = spec.input_shapes(1)
    with torch.no_grad():
        _, feats = model.features(*(torch.zeros(s) for s in shapes.values()))
    return {k: int(v.shape[1]) for k, v in feats.items()}
