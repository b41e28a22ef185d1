"""dhm.distill: teacher -> smaller student, judged on held-out frames (`dhm train`, `dhm distill`).

`dhm.distill.weights` (the objective's weights and defaults) imports no torch; everything
else here does, loaded on first use.
"""

from __future__ import annotations

from dhm.lazy import lazy_attributes

from dhm.distill.weights import DISTILL_DEFAULTS, TRAIN_DEFAULTS, LossWeights

_LAZY = {
    "AudioDistillSettings": "dhm.distill.audio_config",
    "distill_audio": "dhm.distill.audio",
    "TrainingSettings": "dhm.distill.train_config",
    "distill_student": "dhm.distill.api",
    "train_generator": "dhm.distill.api",
    "DEFAULT_PRESET": "dhm.distill.presets",
    "STUDENT_PRESETS": "dhm.distill.presets",
    "resolve_student": "dhm.distill.presets",
}

__getattr__ = lazy_attributes(_LAZY)


__all__ = [
    "DEFAULT_PRESET",
    "DISTILL_DEFAULTS",
    "STUDENT_PRESETS",
    "LossWeights",
    "TRAIN_DEFAULTS",
    "TrainingSettings",
    "distill_student",
    "resolve_student",
    "train_generator",
]
