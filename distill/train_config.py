"""`dhm train` and `dhm distill`'s training settings (light to import: `dhm --help` builds the
options from them; each field's help, default and range once)."""

from __future__ import annotations

from dataclasses import dataclass

from dhm.distill.weights import TRAIN_LR
from dhm.errors import SpecError
from dhm.settings import setting
from dhm.spec import JUDGE_FRAMES

# The options in the order `--help` lists them (the flags --resume, --force, --quiet follow)
TRAINING_OPTIONS = ("steps", "batch_size", "lr", "seed", "ema", "eval_every", "eval_frames", "device", "threads")


@dataclass
class TrainingSettings:
    steps: int = setting(600, "Optimizer steps.", lo=1, hi=10_000_000)
    batch_size: int = setting(8, "Samples per step (per process under torchrun).", lo=1, hi=4096)
    lr: float = setting(  # distill_student's default: DISTILL_LR
        TRAIN_LR,
        "Peak learning rate (warm-up, then cosine decay; a diverging run stops naming the step).",
        lo=0.0,
        hi=1e12,
        lo_open=True,
    )
    seed: int = setting(0, "Seed: the same seed gives the same result on the same machine.", lo=0, hi=2**32 - 1)
    eval_every: int = setting(
        0, "Held-out evaluation interval in steps (default: steps/6).", lo=0, hi=10_000_000, show_default=False
    )
    eval_frames: int = setting(
        JUDGE_FRAMES,
        "Held-out frames per evaluation (evenly spaced over the evaluation blocks; all if fewer).",
        lo=1,
        hi=10_000,
    )
    device: str = setting("cpu", "cpu, cuda or cuda:N (CUDA trains in bf16 autocast).")
    threads: int | None = setting(None, "torch CPU threads (default: torch's choice).", lo=1, hi=1024)
    # 0: keep the raw weights; else the decay of their moving average (distill_student: DISTILL_EMA)
    ema: float = setting(
        0.0,
        "Evaluate and keep a moving average of the weights with this decay (0: the raw weights).",
        lo=0.0,
        hi=0.99999,
    )
    teacher_pool: int = setting(
        0,
        "Run the teacher once, on this many random training pairs, and draw every batch from them: on a CPU "
        "its forward pass is a third of a step. Memory: 1.4 MB a pair for a mobile-width teacher, 2.6 MB full width. "
        "0: the teacher runs on fresh pairs at every step.",
        lo=0,
        hi=1_000_000,
    )

    def check(self) -> None:
        import math
        import re

        if not 1 <= self.steps <= 10_000_000:
            raise SpecError(f"--steps {self.steps}: expected 1 … 10,000,000")
        if not 1 <= self.batch_size <= 4096:
            raise SpecError(f"--batch-size {self.batch_size}: expected 1 … 4096")
        if not (math.isfinite(self.lr) and 0 < self.lr <= 1e12):
            raise SpecError(f"--lr {self.lr}: expected a finite positive learning rate")
        if not 1 <= self.eval_frames <= 10_000:
            raise SpecError(f"--eval-frames {self.eval_frames}: expected 1 … 10,000")
        if not 0.0 <= self.ema < 1.0:
            raise SpecError(f"--ema {self.ema}: expected a decay in [0, 1)")
        if not 0 <= self.teacher_pool <= 1_000_000:
            raise SpecError(f"--teacher-pool {self.teacher_pool}: expected 0 … 1,000,000")
        if self.eval_every < 0:
            raise SpecError(f"--eval-every {self.eval_every}: expected >= 0")
        if self.threads is not None and not 1 <= self.threads <= 1024:
            raise SpecError(f"--threads {self.threads}: expected 1 … 1024")
        if not re.fullmatch(r"cpu|cuda(:\d{1,2})?", self.device):
            raise SpecError(f"--device {self.device!r}: expected cpu, cuda or cuda:N")

    @property
    def resolved_eval_every(self) -> int:
        return self.eval_every or max(1, self.steps // 6)
