"""The objective's weights and their defaults: torch-free, so the CLI shows them in --help.

Every default below was chosen by measurement on the built-in set (lip-box PSNR, the lips'
colour and the whole crop against the teacher); the tables are in docs/distill.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from dhm.settings import setting


def _w(default: float, help: str, name: str):
    """A loss weight: --w-NAME, a finite number in [0, 1000]."""
    return setting(default, help, option=f"--w-{name}", lo=0.0, hi=1000.0)


@dataclass(frozen=True)
class LossWeights:
    """Weights of the objective's terms. `mouth` multiplies the pixel and GT terms inside
    the mouth rectangle (the masked region the generator paints)."""

    pixel: float = _w(1.0, "L1 to the teacher's output.", "pixel")
    ssim: float = _w(0.2, "1-SSIM to the teacher's output.", "ssim")
    # Extra weight inside the mouth rectangle: 2.0 cost whole-crop PSNR and lip sync for no
    # steady lip-box gain, so it stays 0.5 (docs/distill.md, `mouth`, `lips` and the learning rate).
    mouth: float = _w(0.5, "Extra weight inside the mouth rectangle.", "mouth")
    # MSE of adapted student features vs teacher features: strong matching fights the output
    # terms early on (0.5 with mouth 2.0 lost 6.7 dB whole crop at 300 steps).
    feature: float = _w(0.1, "Feature matching through 1x1 adapters (0 disables).", "feature")
    gt: float = _w(0.0, "L1 to the ground truth (0 disables).", "gt")
    # L1 inside the lips (the target frame's outer lip contour, dhm.data.lips), averaged over
    # those pixels only: the lips are ~2% of the crop, so in the whole-crop terms their
    # colour weighs almost nothing (a student painted them blue at 32 dB whole-crop).
    lips: float = _w(2.0, "L1 to the teacher averaged over the lips alone (0 disables).", "lips")
    # Binary cross-entropy on the logits: every other term is measured after the sigmoid, so a
    # pixel whose logit ran far negative gets no gradient and stays black (the demo's teacher
    # had a dark line at nose and neck height); BCE's gradient is (sigmoid - target) however far
    # the logit went. 1.0 beat 0.1 for teacher and student (docs/distill.md, `bce`).
    bce: float = _w(
        1.0,
        "Cross-entropy to the teacher on the output logits: keeps saturated pixels trainable (0 disables).",
        "bce",
    )
    # L1 on the crop's frame outside the mask rectangle (15 % of the crop), averaged over those
    # pixels: pasted at the face box's edge, an error there is a line across the face, and SSIM
    # and the mouth weight barely watch it. 2.0 bought nothing over 1.0 (docs/distill.md, `border`).
    border: float = _w(
        1.0,
        "L1 to the teacher averaged over the crop's frame outside the mask, pasted at the box's edge (0 disables).",
        "border",
    )

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
# Peak learning rates: distillation from a teacher's outputs takes a higher one (docs/distill.md).
TRAIN_LR = 2e-3
DISTILL_LR = 4e-3
# `dhm distill` keeps a moving average of the student's weights (`--ema`): the lips sharpen
# only as the learning rate decays, and the average follows that phase without its noise
# (never worse in the measurements, for one extra copy of the student).
DISTILL_EMA = 0.99
# `dhm train`: a generator learns the ground truth (no teacher, no features). No border term
# for a teacher: at 300 steps the frame's L1 took the capacity the mouth needs (inside the mask
# 27.2 against 31.6 dB; docs/distill.md).
TRAIN_DEFAULTS = replace(DISTILL_DEFAULTS, mouth=2.0, feature=0.0, lips=1.0, border=0.0)

# `dhm train`'s meaning of the weights it shares with distillation (to the ground truth)
TRAIN_HELP = {
    "ssim": "Weight of the 1-SSIM term (L1 has weight 1).",
    "mouth": "Extra L1 weight inside the mouth rectangle.",
    "lips": "L1 averaged over the lips alone (from the lip landmarks).",
    "bce": "Cross-entropy on the output logits: keeps pixels whose sigmoid saturated trainable (0 disables).",
    "border": "L1 averaged over the crop's frame outside the mask, pasted at the face box's edge (0 disables).",
}
