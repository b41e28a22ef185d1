"""Deterministic held-out split in contiguous blocks.

Frames are grouped into blocks of `block` consecutive frames and every `every`-th block
is held out. Neighbouring frames share appearance and, through the audio window (up to
i-8 … i+7), audio, so `guard` frames on each side of a held-out block belong to neither
side. The guard is the widest window's half whatever the model, so one dataset splits the
same way for a teacher, its students and every variant.
Held-out blocks alternate between evaluation and calibration, so quantization is never
judged on the frames it was calibrated on.
"""

from __future__ import annotations

from dataclasses import dataclass

from dhm.errors import DatasetError
from dhm.spec import MAX_HALF_WINDOW

DEFAULT_BLOCK = 25
DEFAULT_EVERY = 6
DEFAULT_GUARD = MAX_HALF_WINDOW


@dataclass(frozen=True)
class Split:
    train: tuple[int, ...]
    heldout: tuple[int, ...]
    eval: tuple[int, ...]
    calib: tuple[int, ...]

    def to_dict(self) -> dict[str, list[int]]:
        return {"train": list(self.train), "eval": list(self.eval), "calib": list(self.calib)}


def split_frames(
    n_frames: int,
    block: int = DEFAULT_BLOCK,
    every: int = DEFAULT_EVERY,
    guard: int = DEFAULT_GUARD,
    min_train: int = 1,
    min_heldout: int = 1,
) -> Split:
    """Split frames 0..n-1; held-out blocks are blocks every//2, every//2+every, …"""
    if block < 1 or every < 2 or guard < 0:
        raise ValueError("block >= 1, every >= 2 and guard >= 0 are required")
    n_blocks = n_frames // block
    held_blocks = [b for b in range(n_blocks) if b % every == every // 2]
    if not held_blocks:
        # A clip too short for one regular held-out block still gets its middle one.
        held_blocks = [n_blocks // 2] if n_blocks >= 3 else []
    held = [f for b in held_blocks for f in range(b * block, (b + 1) * block)]
    held_set = set(held)
    blocked = set()
    for b in held_blocks:
        blocked.update(range(max(0, b * block - guard), b * block))
        blocked.update(range((b + 1) * block, min(n_frames, (b + 1) * block + guard)))
    train = [f for f in range(n_frames) if f not in held_set and f not in blocked]
    eval_frames = [f for i, b in enumerate(held_blocks) for f in range(b * block, (b + 1) * block) if i % 2 == 0]
    calib = [f for i, b in enumerate(held_blocks) for f in range(b * block, (b + 1) * block) if i % 2 == 1]
    if len(train) < min_train or len(held) < min_heldout:
        need = 3 * block
        raise DatasetError(
            f"dataset too small for a held-out split: {n_frames} frames give {len(train)} training and "
            f"{len(held)} held-out frames (blocks of {block}; at least {need} frames are needed)"
        )
    if not calib:
        # One held-out block: halve it so calibration and evaluation stay disjoint.
        half = len(eval_frames) // 2
        eval_frames, calib = eval_frames[:half], eval_frames[half:]
    return Split(tuple(train), tuple(held), tuple(eval_frames), tuple(calib))
