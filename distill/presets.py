"""Student presets: widths that cost a given fraction of the teacher's MACs.

A preset `xN` is the teacher's widths scaled by one multiplier (rounded to multiples of
4, at least 4) chosen so the student costs about 1/N of the teacher's MACs per frame.
"""

from __future__ import annotations

from dhm.errors import SpecError
from dhm.spec import GeneratorSpec, parse_widths

# name -> target MACs ratio (teacher / student)
STUDENT_PRESETS: dict[str, float] = {"x4": 4.0, "x10": 10.0, "x20": 20.0, "x30": 30.0}
DEFAULT_PRESET = "x10"
_ROUND = 4
_MIN_WIDTH = 4


def _scaled(widths: tuple[int, ...], alpha: float) -> tuple[int, int, int, int, int]:
    out = [max(_MIN_WIDTH, int(round(w * alpha / _ROUND)) * _ROUND) for w in widths]
    return tuple(min(o, w) for o, w in zip(out, widths))  # type: ignore[return-value]


def widths_for_ratio(teacher: GeneratorSpec, ratio: float) -> tuple[int, int, int, int, int]:
    """The largest uniformly scaled widths whose MACs are <= teacher MACs / ratio."""
    from dhm.metrics import generator_cost

    budget = generator_cost(teacher)[0] / ratio
    lo, hi = 0.0, 1.0
    best = _scaled(teacher.widths, 0.0)
    for _ in range(18):
        mid = (lo + hi) / 2
        cand = _scaled(teacher.widths, mid)
        if generator_cost(GeneratorSpec(arch=teacher.arch, mode=teacher.mode, widths=cand))[0] <= budget:
            best, lo = cand, mid
        else:
            hi = mid
    return best


def resolve_student(teacher: GeneratorSpec, student: str) -> GeneratorSpec:
    """A preset name (x4, x10, x20, x30) or five explicit widths."""
    if student in STUDENT_PRESETS:
        widths = widths_for_ratio(teacher, STUDENT_PRESETS[student])
    else:
        try:
            widths = parse_widths(student)
        except SpecError as exc:
            raise SpecError(f"--student {student!r}: {exc}; presets: {', '.join(STUDENT_PRESETS)}") from None
    return GeneratorSpec(arch=teacher.arch, mode=teacher.mode, widths=widths)
