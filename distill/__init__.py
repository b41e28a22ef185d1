"""dhm.distill: teacher -> smaller student, judged on held-out frames (`dhm train`, `dhm distill`).

Importing this package imports torch.
"""

from dhm.distill.api import TrainingSettings, distill_student, train_generator
from dhm.distill.losses import LossWeights
from dhm.distill.presets import DEFAULT_PRESET, STUDENT_PRESETS, resolve_student

__all__ = [
    "DEFAULT_PRESET",
    "STUDENT_PRESETS",
    "LossWeights",
    "TrainingSettings",
    "distill_student",
    "resolve_student",
    "train_generator",
]
