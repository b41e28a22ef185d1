"""Latency statistics and process memory, measured the same way for every engine.

The host is shared and noisy, so a single number means little: every summary keeps its
spread (p90/p99 and the interquartile range), and speed comparisons are ratios of runs
interleaved in the same process (see `dhm.bench.host`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds per call over `runs` timed calls."""

    runs: int
    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    min: float
    max: float
    p25: float
    p75: float

    @property
    def fps(self) -> float:
        return 1000.0 / self.p50 if self.p50 > 0 else float("inf")

    @property
    def iqr_pct(self) -> float:
        """The interquartile range as a percentage of the median: the run's noise."""
        return 100.0 * (self.p75 - self.p25) / self.p50 if self.p50 > 0 else 0.0

    def to_dict(self) -> dict[str, float]:
        d = asdict(self)
        d["fps"] = self.fps
        d["iqr_pct"] = self.iqr_pct
        return d


def summarize(times_ms: list[float] | np.ndarray) -> LatencyStats:
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        raise ValueError("no timings to summarise")
    q = np.percentile(t, [25, 50, 75, 90, 99])
    return LatencyStats(
        runs=int(t.size),
        p25=float(q[0]),
        p50=float(q[1]),
        p75=float(q[2]),
        p90=float(q[3]),
        p99=float(q[4]),
        mean=float(t.mean()),
        std=float(t.std()),
        min=float(t.min()),
        max=float(t.max()),
    )


@dataclass(frozen=True)
class Ratio:
    """How many times faster `model` is than `baseline` (medians), with a conservative
    range from the quartiles: low = baseline p25 / model p75, high = baseline p75 / model p25."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def speedup(model: LatencyStats, baseline: LatencyStats) -> Ratio:
    return Ratio(
        value=baseline.p50 / model.p50,
        low=baseline.p25 / model.p75,
        high=baseline.p75 / model.p25,
    )


def interleaved_timings(calls: dict[str, Callable[[], object]], runs: int, rounds: int) -> dict[str, list[float]]:
    """Time each call `runs` times, in `rounds` rounds that visit every call in turn, so a
    burst of load from another process slows all of them instead of one."""
    rounds = max(1, min(rounds, runs))
    per_round = [runs // rounds + (1 if r < runs % rounds else 0) for r in range(rounds)]
    times: dict[str, list[float]] = {k: [] for k in calls}
    clock = time.perf_counter
    for n in per_round:
        for key, fn in calls.items():
            out = times[key]
            for _ in range(n):
                t0 = clock()
                fn()
                out.append(1000.0 * (clock() - t0))
    return times


# ------------------------------------------------------------------ process memory

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int | None:
    try:
        m = re.search(rf"^{field}:\s+(\d+)\s+kB", _STATUS.read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return kb / 1024.0 if kb is not None else None


def peak_rss_mb() -> float | None:
    kb = _status_kb("VmHWM")
    return kb / 1024.0 if kb is not None else None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux: write 5 to clear_refs), so the next peak
    belongs to what runs after this call. False where that is not possible."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


class MemoryProbe:
    """Peak resident memory while a block runs, and how much it added over the baseline.

    probe = MemoryProbe(); engine = load(...); engine.run(x); probe.stop()
    """

    def __init__(self) -> None:
        self.resettable = reset_peak_rss()
        self.baseline = rss_mb()
        self.peak: float | None = None

    def stop(self) -> dict[str, float | None]:
        self.peak = peak_rss_mb() if self.resettable else None
        added = self.peak - self.baseline if self.peak is not None and self.baseline is not None else None
        return {"process_peak_mb": self.peak, "added_mb": added}
