"""Image pairs for the PSNR/SSIM cross-check (numpy only, so they are the same on every
machine): smooth faces-like images and distorted copies, NCHW in [0, 1]."""

from __future__ import annotations

import numpy as np


def _smooth(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    out = np.zeros((n, 3, size, size))
    for i in range(n):
        for c in range(3):
            for _ in range(6):
                fx, fy, ph = rng.uniform(0.5, 6.0), rng.uniform(0.5, 6.0), rng.uniform(0, 2 * np.pi)
                out[i, c] += rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * (fx * x + fy * y) + ph)
    return np.clip(out + 0.5, 0.0, 1.0)


def metric_pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(2024)
    a = _smooth(rng, 2, 64)
    noisy = np.clip(a + rng.normal(0.0, 0.05, a.shape), 0.0, 1.0)
    shifted = np.clip(np.roll(a, 2, axis=3) * 0.9 + 0.03, 0.0, 1.0)
    faint = np.clip(a + rng.normal(0.0, 0.005, a.shape), 0.0, 1.0)
    return [("noise 0.05", a, noisy), ("shift and gain", a, shifted), ("noise 0.005", a, faint)]
