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

    # Defaults measured on the built-in set (a demo teacher trained before the lips term
    # existed -> x10 student, 400 steps,
    # `dhm distill --w-mouth M --w-lips L --lr R`), best step, figures against the teacher on
    # held-out frames (inference protocol): whole-crop PSNR / lip-box PSNR / lips' colour
    # difference in levels / lip sync (generation; ground truth 0.943):
    #   mouth 0.5, lips 0, lr 2e-3 (the old defaults)  31.04 / 25.62 / 11.1 / 0.883
    #   mouth 0.5, lips 2, lr 2e-3                      30.56 / 28.62 /  1.1 / 0.872
    #   mouth 0.5, lips 4, lr 2e-3                      27.95 / 27.68 /  3.2 / 0.904
    #   mouth 0.5, lips 2, lr 4e-3 (the defaults)       31.95 / 28.04 /  3.2 / 0.935
    #   mouth 0.5, lips 2, lr 6e-3                      32.07 / 27.00 /  2.3 / 0.939
    #   mouth 0.5, lips 2, lr 4e-3, 600 steps           32.87 / 27.47 /  2.1 / 0.933
    #   mouth 2.0, lips 2, lr 4e-3                      30.69 / 30.07 /  1.4 / 0.882
    # Mouth 2.0 is the only setting that reached 30 dB in the lip box, at 0.35 dB less
    # whole-crop PSNR and a worse lip sync, so mouth stays 0.5. (The figures above are on
    # one teacher. A later demo teacher (300 steps, before `bce`) left its crop's edge rows
    # 0.35-0.5 off the ground truth, stuck behind saturated sigmoids; see `bce`.)
    # Against the demo teachers retrained with `bce` (same columns; 16 held-out frames, so
    # +-0.5 dB is noise; `dhm distill --teacher T --data demo_work/data ...`, 2026-11-22):
    #   teacher bce 0.1: x10, 400 steps (defaults then)    25.57 / 28.32 / 0.6 / 0.928
    #                    x10, 600 steps                    29.43 / 27.81 / 2.1 / 0.946
    #                    x10, mouth 2.0                    25.06 / 26.80 / 1.1 / 0.922
    #                    x10, lips 4                       26.08 / 27.98 / 1.8 / 0.941
    #                    x4, 400 steps                     34.08 / 28.18 / 2.2 / 0.927
    #   teacher bce 1.0: x10, 400 steps, bce 0.1           28.85 / 27.00 / 1.8 / 0.905
    #                    x10, 400 steps, bce 1.0           30.38 / 28.04 / 2.8 / 0.910
    #                    x10, 800 steps, bce 1.0 (demo)    34.07 / 28.02 / 0.9 / 0.930
    #                    x4, 400 steps, bce 1.0            35.47 / 28.81 / 1.1 / 0.908
    # The demo's teacher of 2026-11-22 (bce 1.0), 800 steps, EMA 0.99 (see DISTILL_EMA):
    #                    x10 (4,8,20,36,76)                31.57 / 27.66 / 0.8 / 0.925
    #                    4,16,20,36,76 (the demo's)        35.51 / 28.61 / 1.9 / 0.936
    #                    8,16,20,36,76 (132 MMACs)         36.57 / 28.48 / 0.7 / 0.944
    #                    same, half of each batch's audio
    #                    mixed with another sample's       35.11 / 27.23 / 2.2 / 0.943
    # (the widths: distill/presets.py; the mixing was not kept).
    # 2026-11-23, same teacher, one torch thread each (two runs in parallel); figures on the
    # 16 frames distill evaluates by default, then pooled over all 50 of the evaluation blocks
    # (whole crop / lip box, inference protocol):
    #                    4,16,20,36,76, 800 steps          34.76 / 27.78; 50: 35.18 / 29.15
    #                    (the demo's run, 2 threads:       35.51 / 28.61; 50: 35.92 / 29.92)
    #                    same, mouth 2.0                   33.99 / 26.57; 50: 34.66 / 28.62
    #                    same, 1600 steps (demo since)     36.70 / 29.32; 50: 37.18 / 30.89
    #                    4,16,20,48,96 (133 MMACs), 1600
    #                    steps, stopped at step 1064       35.52 / 28.21 (1600-step run at
    #                                                      1064: 35.93 / 27.83)
    # So two runs of one setting differ by ~0.8 dB (threads change the float sums, and the
    # trajectory with them), mouth 2.0 is no better, and a schedule twice as long is.
    # (teacher lip sync 0.934 and 0.927). The lip box sits at 27-29 dB whatever was tried:
    # mouth and lips weights, steps, 2.5x the MACs; it rises only in the last third of a run
    # as the learning rate decays, and on training frames it is barely higher (x10 29.3,
    # x4 30.2 dB), so it is not overfitting. The whole crop gains from steps and `bce`.
    # Earlier, without a lips term: mouth 2.0 / feature 0.5 reached 26.2 dB whole-crop where
    # mouth 0.5 / feature 0.1 reached 32.9 (300 steps): strong feature matching fights the
    # output terms early on.
    pixel: float = 1.0  # L1 student vs teacher output
    ssim: float = 0.2  # 1 - SSIM student vs teacher (structure)
    mouth: float = 0.5  # extra weight inside the mouth rectangle
    feature: float = 0.1  # MSE of adapted student features vs teacher features
    gt: float = 0.0  # L1 student vs ground truth
    # L1 inside the lips (the target frame's outer lip contour, dhm.data.lips), averaged over
    # those pixels only: the lips are ~2% of the crop, so in the whole-crop terms their
    # colour weighs almost nothing (a student painted them blue at 32 dB whole-crop).
    lips: float = 2.0
    # Binary cross-entropy on the output's logits. The generator ends in a sigmoid and every
    # other term is measured after it, so their gradient at a pixel is scaled by the
    # sigmoid's slope: a pixel whose logit went to -20 early in training gets none and stays
    # black. The demo's teacher (300 steps) had its crop's rows 1-4 and 155-159 stuck at
    # logits of -8 to -28 (0.35-0.5 off the ground truth, a dark line at nose and neck
    # height in every video, and students copied it). BCE's gradient is (sigmoid - target)
    # however far the logit went, so those pixels come back.
    # Weight, measured on the demo's teacher (`dhm train --widths mobile --steps 300`,
    # held-out, generation protocol, vs the ground truth: whole-crop / mouth / lip box):
    #   bce 0.1  28.17 / 29.93 / 20.17 dB; the shirt in the bottom corners still saturated
    #            (21 % of row 159's pixels at logits below -5, 0.15-0.18 off there)
    #   bce 1.0  30.20 / 30.31 / 20.55 dB; no pixel of rows 150-159 below -5, at most 0.07 off
    # and the x10 student distilled from the second (400 steps, inference protocol vs the
    # teacher, whole-crop / lip box): bce 0.1  28.85 / 27.00 dB; bce 1.0  30.38 / 28.04 dB.
    bce: float = 1.0
    # L1 on the crop's frame outside the mask rectangle (rows/columns 0-4 and the bottom and
    # right margins, 15 % of the crop), averaged over those pixels only. The generator copies
    # them from its masked input and they are pasted at the face box's edge, where an error
    # is a line across the face. Without this term they are the least-watched pixels: the
    # SSIM window (11 px, no padding) reaches them with weights below 0.5 %, and the
    # mouth weight leaves them 0.7x an inner pixel's L1 weight. The demo's student of
    # 2026-11-23 painted row 1 of every crop 0.08 brighter than its teacher (up to 0.29;
    # rows 0-9 held 53 % of its squared error, 8-13 % in two other runs of the setting).
    # The demo's teacher (retrained 2026-11-23 on a new host, so not the one above), 4,16,20,36,76,
    # 1600 steps, one torch thread each (two runs side by side), all 50 evaluation frames,
    # inference protocol against the teacher: whole crop / lip box / colour / the frame's PSNR /
    # the frame's rows 0-9 as a share of the squared error / the worst row's mean difference:
    #   border 0, the previous teacher        37.18 / 30.89 / –   / –     / 13 % / –
    #   same, 2 threads (the demo's last run) 35.07 / 31.09 / 0.6 / –     / 53 % / +0.08 (row 1)
    #   border 1.0                            37.30 / 30.37 / 0.9 / 37.06 /  4 % / 0.004
    #   border 2.0                            37.39 / 31.09 / 1.9 / 36.71 /  4 % / 0.004
    # (`dhm distill ... --steps 1600 --threads 1 --w-border B`). Either removes the line; 2.0
    # buys nothing in the frame, and its lip box gain is inside the ~0.8 dB two runs differ by.
    border: float = 1.0

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
# Peak learning rates: distillation from a teacher's outputs takes a higher one (table above).
TRAIN_LR = 2e-3
DISTILL_LR = 4e-3
# `dhm distill` keeps a moving average of the student's weights (`--ema`): the lips sharpen
# only as the learning rate decays, and the average follows that phase without its noise.
# Demo teacher -> x10, 800 steps (inference protocol vs the teacher, whole / lip box /
# colour): raw weights 31.55 / 27.39 / 0.8; EMA 0.99 31.57 / 27.66 / 0.8. (Within the
# +-0.5 dB of 16 frames, but never worse; it costs one extra copy of the student.)
DISTILL_EMA = 0.99
# `dhm train`: a generator learns the ground truth (no teacher, no features).
# No border term for a teacher: at weight 1.0 the demo's teacher (300 steps, 2026-11-23) painted
# the frame far closer to the ground truth (37.8 dB against 30.0; the shirt's bottom corners
# 31.5 against 26.2) but the inside of the mask far worse (27.2 against 31.6 dB; whole crop,
# generation protocol, 26.9 against 30.1): at 300 steps the frame's L1 takes the capacity the
# mouth needs (`dhm train --data demo_work/data --widths mobile --steps 300 --w-border 1`,
# all 50 evaluation frames, inference protocol).
TRAIN_DEFAULTS = replace(DISTILL_DEFAULTS, mouth=2.0, feature=0.0, lips=1.0, border=0.0)
