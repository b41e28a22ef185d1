"""`dhm bench`'s settings (light to import: `dhm --help` builds its options from them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dhm.errors import DhmError
from dhm.runtime_py.engines.registry import BACKENDS
from dhm.settings import setting
from dhm.spec import JUDGE_FRAMES


def _names(text: str) -> tuple[str, ...]:
    return tuple(b.strip() for b in text.split(",") if b.strip())


def _thread_counts(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise DhmError(f"--threads {text!r}: expected comma-separated integers, e.g. 1,2,4") from None
    if not values or any(not 1 <= v <= 1024 for v in values):
        raise DhmError(f"--threads {text!r}: expected comma-separated integers in 1 … 1024")
    return values


@dataclass(frozen=True)
class BenchSettings:
    """What `dhm bench` runs and how long it times (each field's help, default and range, once)."""

    backends: tuple[str, ...] = setting(
        tuple(BACKENDS),
        "Engines for export folders and checkpoints (files given directly always run on their own engine).",
        parse=_names,
    )
    threads: tuple[int, ...] = setting((1, 2), "Thread counts to time, e.g. 1,2,4.", parse=_thread_counts)
    warmup: int = setting(5, "Untimed runs per model and thread count.", lo=0, hi=100_000)
    runs: int = setting(50, "Timed runs per model and thread count.", lo=5, hi=1_000_000)
    rounds: int = setting(
        5, "Interleaved rounds the runs are split into (noise hits every model alike).", lo=1, hi=1000
    )
    frames: int = setting(  # held-out frames for parity
        JUDGE_FRAMES,
        "Held-out frames for parity (evenly spaced over the evaluation blocks; all if fewer).",
        lo=4,
        hi=10_000,
    )
    arm_frames: int | None = setting(  # qemu emulates every instruction: a phone-sized model takes 1-3 s a frame
        None,
        "Of the parity frames, how many MNN files also run on MNN's aarch64 kernels under qemu (the first N; "
        "default: all).",
        lo=1,
        hi=10_000,
    )
    e2e_frames: int = setting(
        24, "Frames through the end-to-end pipeline per model and thread count.", lo=1, hi=100_000
    )
    loop_frames: int = setting(
        100, "Frames timed per PCM -> frames loop (after one untimed pass over the held-out speech).", lo=1, hi=100_000
    )
    device: str = setting("host", "host, or adb[:SERIAL] for a phone.")  # host | adb | adb:SERIAL
    mnn_bin: Path | None = setting(
        None, "With --device adb: folder holding ModuleBasic.out and libMNN.so built for the phone.", path=True
    )
    device_backend: str = setting("cpu", "MNN backend on the phone.", choices=("cpu", "opencl", "vulkan"))
    device_timeout_s: float = setting(
        300.0, "Seconds any one adb step may take.", option="--device-timeout", lo=1.0, hi=86400.0
    )
    crop_interpolation: str | None = None  # for checkpoints whose revision default is wrong
    force: bool = False  # replace --json/--report files that are not earlier bench outputs

    def host(self) -> Any:
        from dhm.bench.host import HostSettings

        return HostSettings(
            threads=self.threads, warmup=self.warmup, runs=self.runs, rounds=self.rounds, e2e_frames=self.e2e_frames
        )
