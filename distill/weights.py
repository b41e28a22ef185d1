"""The objective's weights and their defaults: torch-free, so the CLI shows them in --help.

Defaults measured on the built-in set (the demo's mobile teacher -> x10 student, 400 steps);
see each field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class LossWeights:
    """Weights of the objective's terms. `mouth` multiplies the pixel and GT terms inside
    the mouth rectangle (the masked region the generator paints)."""

    # Defaults measured on the built-in set (mobile teacher -> x10 student, 300 steps):
    # mouth 2.0 / feature 0.5 reached 26.2 dB against the teacher, mouth 0.5 / feature 0.1
    # reached 32.9 dB. Strong feature matching fights the output terms early on, and the
    # mouth rectangle already covers most of the crop, so a large extra weight mostly
    # starves the border.
    pixel: float = 1.0  # L1 student vs teacher output
    ssim: float = 0.2  # 1 - SSIM student vs teacher (structure)
    mouth: float = 0.5  # extra weight inside the mouth rectangle
    feature: float = 0.1  # MSE of adapted student features vs teacher features
    gt: float = 0.0  # L1 student vs ground truth
    # L1 inside the lips (the target frame's outer lip contour, dhm.data.lips), averaged over
    # those pixels only: the lips are ~2% of the crop, so in the whole-crop terms their
    # colour weighs almost nothing (a student painted them blue at 32 dB whole-crop).
    lips: float = 1.0

    def __post_init__(self) -> None:
        import math

        from dhm.errors import SpecError

        for name, value in asdict(self).items():
            if not (math.isfinite(value) and 0 <= value <= 1000):
                raise SpecError(f"loss weight {name} = {value}: expected a finite number in [0, 1000]")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


# `dhm distill`: the student learns the teacher's outputs and features.
DISTILL_DEFAULTS = LossWeights()
# `dhm train`: a generator learns the ground truth (no teacher, no features).
TRAIN_DEFAULTS = replace(DISTILL_DEFAULTS, mouth=2.0, feature=0.0)
