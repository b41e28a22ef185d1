"""Student presets: widths that cost a given fraction of the teacher's MACs.

A preset `xN` is the teacher's widths scaled by one multiplier (rounded to multiples of
4, at least 4) chosen so the student costs about 1/N of the teacher's MACs per frame.

Uniform scaling is not the best use of MACs for the mouth. In the Ultralight family the
second width (w1) is also the width of the HuBERT audio branch's first layer, whose input
has 2W channels (16 for the 8-frame window); x10 of the demo's mobile teacher gives it 8.
Measured on the demo's data (teacher 16,32,64,128,256, 800 steps, EMA 0.99, held-out,
inference protocol vs the teacher: whole crop / lip box / lip colour / lip sync):
    4,8,20,36,76   (x10, 82 MMACs)   31.57 / 27.66 / 0.8 / 0.925
    4,16,20,36,76  (108 MMACs)       35.51 / 28.61 / 1.9 / 0.936  (the demo's student until 2026-12-03)
At 8 channels the student leaves out the teeth the teacher paints in half-open mouths. The
demo's student is now 8,16,24,48,96 (163 MMACs, 8-channel packs), which also trains faster
per step (docs/measurements.md, "The 15-minute demo").
Holding w1 at 16 inside x10's budget forces the deeper widths down to 4,16,12,28,52, so
the presets stay uniform and the demo names its widths.
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
    return tuple(min(o, w) for o, w in zip(out, widths, strict=True))  # type: ignore[return-value]


def widths_for_ratio(
    teacher: GeneratorSpec, ratio: float, family: GeneratorSpec | None = None
) -> tuple[int, int, int, int, int]:
    """The largest uniformly scaled teacher widths whose MACs (in `family`, the teacher's
    own by default) are <= teacher MACs / ratio."""
    from dhm.metrics import generator_cost

    family = family or teacher
    budget = generator_cost(teacher)[0] / ratio
    lo, hi = 0.0, 1.0
    best = _scaled(teacher.widths, 0.0)
    for _ in range(18):
        mid = (lo + hi) / 2
        cand = _scaled(teacher.widths, mid)
        if generator_cost(family.with_widths(cand))[0] <= budget:
            best, lo = cand, mid
        else:
            hi = mid
    return best


def resolve_student(
    teacher: GeneratorSpec, student: str, arch: str | None = None, stem: str | None = None
) -> GeneratorSpec:
    """A preset name (x4, x10, x20, x30) or five explicit widths, in the teacher's family
    (or `arch`, and with `stem`'s first level) and with the teacher's conventions: its revision,
    window and crop filter.

    A student of another family keeps the teacher's audio window and crop filter; the
    MobileOne family exists only with the 2026-05-23 conventions, so a student of an older
    revision's teacher can be MobileOne only if the window agrees."""
    from dataclasses import replace

    base = teacher
    if arch is not None and arch != teacher.arch:
        from dhm.spec import MOBILEONE_REVISION, REVISIONS, LATEST_REVISION

        revision = MOBILEONE_REVISION if arch == "mobileone" else LATEST_REVISION
        if REVISIONS[revision].windows[teacher.mode] != teacher.window:
            raise SpecError(
                f"--student-arch {arch}: its conventions use a {REVISIONS[revision].windows[teacher.mode]}-frame "
                "window, "
                f"the teacher ({teacher.describe_conventions()}) a {teacher.window}-frame one"
            )
        base = replace(teacher, arch=arch, revision=revision, crop_interpolation=teacher.crop_interpolation)
    if stem is not None and stem != base.stem:
        base = replace(base, stem=stem)
    if student in STUDENT_PRESETS:
        widths = widths_for_ratio(teacher, STUDENT_PRESETS[student], base)
    else:
        try:
            widths = parse_widths(student)
        except SpecError as exc:
            raise SpecError(f"--student {student!r}: {exc}; presets: {', '.join(STUDENT_PRESETS)}") from None
    return base.with_widths(widths)
