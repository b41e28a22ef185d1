"""Small PNG charts drawn with OpenCV (no plotting library needed).

Enough for training curves, latency bars and PSNR-vs-MACs scatter plots that a person
can read: axes with ticks, labelled series, a legend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from dhm.io import atomic_path

_COLORS = [
    (180, 119, 31),
    (14, 127, 255),
    (44, 160, 44),
    (40, 39, 214),
    (189, 103, 148),
    (75, 86, 140),
    (194, 119, 227),
]
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= raw), default=mag * 10)
    start = math.ceil(lo / step) * step
    ticks = []
    v = start
    while v <= hi + 1e-9 * step:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000 or abs(v) < 0.01:
        return f"{v:.1e}"
    return f"{v:.3g}"


class _Canvas:
    def __init__(self, title: str, xlabel: str, ylabel: str, w: int = 800, h: int = 480) -> None:
        self.img = np.full((h, w, 3), 255, np.uint8)
        self.left, self.right, self.top, self.bottom = 80, w - 20, 40, h - 60
        cv2.putText(self.img, title, (self.left, 25), _FONT, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(
            self.img,
            xlabel,
            ((self.left + self.right) // 2 - 4 * len(xlabel), h - 15),
            _FONT,
            0.5,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
        cv2.putText(self.img, ylabel, (5, self.top - 10), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)

    def axes(self, xr: tuple[float, float], yr: tuple[float, float], xlog: bool = False, xticks: bool = True) -> None:
        self.xr, self.yr, self.xlog = xr, yr, xlog
        cv2.rectangle(self.img, (self.left, self.top), (self.right, self.bottom), (0, 0, 0), 1)
        for t in _nice_ticks(*yr):
            y = self.y(t)
            cv2.line(self.img, (self.left, y), (self.right, y), (225, 225, 225), 1)
            cv2.putText(self.img, _fmt(t), (5, y + 4), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        ticks = [10**e for e in range(math.floor(xr[0]), math.ceil(xr[1]) + 1)] if xlog else _nice_ticks(*xr)
        for t in ticks if xticks else []:
            x = self.x(t)
            if self.left <= x <= self.right:
                cv2.line(self.img, (x, self.bottom), (x, self.bottom + 5), (0, 0, 0), 1)
                label = _fmt(t)
                # centred under its tick, but kept inside the image (the last one was clipped)
                width = cv2.getTextSize(label, _FONT, 0.4, 1)[0][0]
                tx = min(max(x - width // 2, 0), self.img.shape[1] - width - 2)
                cv2.putText(self.img, label, (tx, self.bottom + 20), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)

    def x(self, v: float) -> int:
        if self.xlog:
            v = math.log10(max(v, 1e-12))
        lo, hi = self.xr
        return int(self.left + (v - lo) / max(hi - lo, 1e-12) * (self.right - self.left))

    def y(self, v: float) -> int:
        lo, hi = self.yr
        return int(self.bottom - (v - lo) / max(hi - lo, 1e-12) * (self.bottom - self.top))

    def legend(self, names: Sequence[str]) -> None:
        for i, name in enumerate(names):
            y = self.top + 15 + 18 * i
            cv2.rectangle(self.img, (self.right - 190, y - 8), (self.right - 180, y + 2), _COLORS[i % len(_COLORS)], -1)
            cv2.putText(self.img, name[:28], (self.right - 175, y + 2), _FONT, 0.42, (0, 0, 0), 1, cv2.LINE_AA)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        with atomic_path(path) as tmp:
            ok, buf = cv2.imencode(".png", self.img)
            if not ok:
                raise RuntimeError("PNG encoding failed")
            tmp.write_bytes(buf.tobytes())
        return path


def _range(values: Sequence[float], pad: float = 0.05) -> tuple[float, float]:
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return (0.0, 1.0)
    lo, hi = min(vals), max(vals)
    span = hi - lo or abs(hi) or 1.0
    return (lo - pad * span, hi + pad * span)


def line_chart(
    path: str | Path, title: str, xlabel: str, ylabel: str, series: dict[str, tuple[Sequence[float], Sequence[float]]]
) -> Path:
    c = _Canvas(title, xlabel, ylabel)
    xs = [x for xv, _ in series.values() for x in xv]
    ys = [y for _, yv in series.values() for y in yv]
    c.axes(_range(xs, 0.0), _range(ys))
    for i, (xv, yv) in enumerate(series.values()):
        pts = [(c.x(x), c.y(y)) for x, y in zip(xv, yv, strict=True) if math.isfinite(y)]
        color = _COLORS[i % len(_COLORS)]
        for p, q in zip(pts, pts[1:], strict=False):
            cv2.line(c.img, p, q, color, 2, cv2.LINE_AA)
        for p in pts if len(pts) < 40 else []:
            cv2.circle(c.img, p, 3, color, -1, cv2.LINE_AA)
    c.legend(list(series))
    return c.save(path)


def bar_chart(
    path: str | Path,
    title: str,
    ylabel: str,
    labels: Sequence[str],
    values: Sequence[float],
    errors: Sequence[float] | None = None,
) -> Path:
    c = _Canvas(title, "", ylabel, w=max(800, 8 * max(14, max(map(len, labels), default=0)) * len(labels) // 2 + 160))
    top = max([v + (e if errors else 0) for v, e in zip(values, errors or [0] * len(values), strict=True)] + [1e-9])
    c.axes((0, len(labels)), (0, top * 1.1), xticks=False)
    slot = (c.right - c.left) / max(1, len(labels))
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        x0 = int(c.left + slot * i + slot * 0.15)
        x1 = int(c.left + slot * (i + 1) - slot * 0.15)
        cv2.rectangle(c.img, (x0, c.y(v)), (x1, c.bottom), _COLORS[i % len(_COLORS)], -1)
        if errors:
            xm = (x0 + x1) // 2
            cv2.line(c.img, (xm, c.y(v - errors[i])), (xm, c.y(v + errors[i])), (0, 0, 0), 1)
        cv2.putText(c.img, _fmt(v), (x0, c.y(v) - 5), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(c.img, label[:28], (x0, c.bottom + 35 + 12 * (i % 2)), _FONT, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    return c.save(path)


def scatter_chart(
    path: str | Path, title: str, xlabel: str, ylabel: str, points: dict[str, tuple[float, float]], xlog: bool = True
) -> Path:
    c = _Canvas(title, xlabel, ylabel)
    xs = [math.log10(max(x, 1e-12)) if xlog else x for x, _ in points.values()]
    c.axes(_range(xs, 0.1), _range([y for _, y in points.values()], 0.15), xlog=xlog)
    placed: list[tuple[int, int]] = []
    for i, (name, (x, y)) in enumerate(points.items()):
        p = (c.x(x), c.y(y))
        cv2.circle(c.img, p, 6, _COLORS[i % len(_COLORS)], -1, cv2.LINE_AA)
        # points of one model share their MACs: stack their labels instead of overprinting
        ty = p[1] - 6
        while any(abs(px - p[0]) < 40 and abs(py - ty) < 13 for px, py in placed):
            ty += 13
        placed.append((p[0], ty))
        label = name[:26]
        tx = p[0] + 8 if p[0] + 8 + 7 * len(label) < c.img.shape[1] else p[0] - 8 - 7 * len(label)
        cv2.putText(c.img, label, (tx, ty), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return c.save(path)


def image_strip(path: str | Path, rows: Sequence[Sequence[np.ndarray]], labels: Sequence[str]) -> Path:
    """A grid of uint8 BGR tiles (rows x columns) with column labels on top."""
    tiles = [np.concatenate(list(r), axis=1) for r in rows]
    grid = np.concatenate(tiles, axis=0)
    th = 24
    header = np.full((th, grid.shape[1], 3), 255, np.uint8)
    col_w = rows[0][0].shape[1]
    for i, label in enumerate(labels):
        cv2.putText(header, label, (i * col_w + 5, 17), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    c = _Canvas("", "", "")
    c.img = np.concatenate([header, grid], axis=0)
    return c.save(path)
