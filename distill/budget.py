"""A student chosen by measured speed: the widest candidate whose latency on the target engine
fits the budget.

Most of a MAC cut does not become speed when the widths fall between the channel packs the
engine's kernels work in (MNN's CPU kernels pack 4 or 8 channels), so candidates are the
teacher's widths scaled and rounded to a pack, in the teacher's family and, where the
conventions allow, the other one, each with either stem (full, or s2d: the 160x160 level folded
into channels, where the floor of small students' latency sits); each is timed untrained
(dhm.bench.probe) and the one with the most MACs under the budget is the student.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dhm.errors import SpecError
from dhm.spec import ARCHS, STEMS, GeneratorSpec, stem_tag

PACKS = (4, 8)
# students from 1/2 to 1/80 of the teacher's MACs, spaced evenly in log MACs
RATIOS = (2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 14.0, 20.0, 30.0, 45.0, 80.0)


def _rounded(widths: tuple[int, ...], alpha: float, pack: int) -> tuple[int, int, int, int, int]:
    out = [max(pack, int(round(w * alpha / pack)) * pack) for w in widths]
    return tuple(min(o, max(pack, w)) for o, w in zip(out, widths, strict=True))  # type: ignore[return-value]


def widths_for(teacher: GeneratorSpec, family: GeneratorSpec, ratio: float, pack: int) -> tuple[int, ...]:
    """The largest teacher widths scaled by one factor and rounded to `pack` whose MACs (in
    `family`) are at most the teacher's / ratio."""
    from dhm.metrics import generator_cost

    budget = generator_cost(teacher)[0] / ratio
    lo, hi, best = 0.0, 1.0, _rounded(teacher.widths, 0.0, pack)
    for _ in range(14):
        mid = (lo + hi) / 2
        cand = _rounded(teacher.widths, mid, pack)
        if generator_cost(family.with_widths(cand))[0] <= budget:
            best, lo = cand, mid
        else:
            hi = mid
    return best


def candidates(
    teacher: GeneratorSpec, kinds: tuple[tuple[str, str], ...], packs: tuple[int, ...] = PACKS
) -> list[GeneratorSpec]:
    """Students of every (family, stem) in `kinds`, every pack and every ratio, without repeats."""
    from dhm.distill.presets import resolve_student

    out: list[GeneratorSpec] = []
    for arch, stem in kinds:
        family = resolve_student(teacher, ",".join(map(str, teacher.widths)), arch, stem)
        for pack in packs:
            for ratio in RATIOS:
                spec = family.with_widths(widths_for(teacher, family, ratio, pack))
                if spec not in out:
                    out.append(spec)
    return out


def families(teacher: GeneratorSpec, arch: str | None, stem: str | None = None) -> tuple[tuple[str, str], ...]:
    """The (family, stem) pairs to try: `arch` alone, else every family the teacher's window
    allows; `stem` alone, else both."""
    from dhm.distill.presets import resolve_student

    def allowed(a: str) -> bool:
        try:
            resolve_student(teacher, "x10", a)
        except SpecError:
            return False
        return True

    archs = [arch] if arch is not None else [a for a in ARCHS if allowed(a)]
    return tuple((a, s) for a in archs for s in ((stem,) if stem else STEMS))


def choose_student(
    teacher: GeneratorSpec,
    budget_ms: float,
    settings: Any,
    arch: str | None = None,
    log: Callable[[str], None] = lambda _m: None,
    packs: tuple[int, ...] = PACKS,
    stem: str | None = None,
) -> tuple[GeneratorSpec, dict[str, Any]]:
    """The candidate with the most MACs whose measured p50 fits `budget_ms`, and the table."""
    from dhm.bench.probe import probe_latency
    from dhm.metrics import generator_cost

    if not budget_ms > 0:
        raise SpecError(f"--budget-ms {budget_ms}: expected a positive number of milliseconds")
    specs = candidates(teacher, families(teacher, arch, stem), packs)
    table = probe_latency([teacher, *specs], settings, log)
    teacher_row, rows = table[0], table[1:]
    fits = [k for k, r in enumerate(rows) if r["p50_ms"] <= budget_ms]
    if not fits:
        fastest = min(rows, key=lambda r: r["p50_ms"])
        raise SpecError(
            f"--budget-ms {budget_ms:g}: no student fits; the fastest candidate ({_name(fastest)}, "
            f"{fastest['macs'] / 1e6:.0f} MMACs) takes {fastest['p50_ms']:.2f} ms on {settings.budget_engine} at "
            f"{settings.budget_threads} thread(s)"
        )
    best = max(fits, key=lambda k: (rows[k]["macs"], -rows[k]["p50_ms"]))
    teacher_macs = generator_cost(teacher)[0]
    for r in [teacher_row, *rows]:
        r["ratio_macs"] = teacher_macs / r["macs"]
        r["speedup"] = teacher_row["p50_ms"] / r["p50_ms"]
        r["speedup_per_mac_cut"] = r["speedup"] / r["ratio_macs"]
    record = {
        "budget_ms": budget_ms,
        "engine": settings.budget_engine,
        "threads": settings.budget_threads,
        "precision": settings.budget_precision,
        "device": settings.budget_device,
        "chosen": rows[best],
        "teacher": teacher_row,
        "candidates": rows,
    }
    chosen = specs[best]
    log(
        f"[budget] student {_name(rows[best])}: {rows[best]['p50_ms']:.2f} ms (budget {budget_ms:g} ms), "
        f"{rows[best]['macs'] / 1e6:.0f} MMACs, {rows[best]['speedup']:.1f}x faster than the teacher"
    )
    return chosen, record


def _name(row: dict[str, Any]) -> str:
    return f"{row['arch']}{stem_tag(row.get('stem'))} {','.join(map(str, row['widths']))}"


def markdown(record: dict[str, Any]) -> list[str]:
    """The candidates table of a budget choice, for the distill report."""
    c = record["chosen"]
    lines = [
        f"## Student by latency budget: {record['budget_ms']:g} ms on {record['engine']} {record['precision']}, "
        f"{record['threads']} thread(s), {record['device']}",
        "",
        f"Chosen: **{_name(c)}**, {c['p50_ms']:.2f} ms p50, {c['macs'] / 1e6:.0f} MMACs "
        f"(1/{c['ratio_macs']:.1f} of the teacher's), {c['speedup']:.1f}x faster than the teacher "
        f"(speed-up / MAC cut {c['speedup_per_mac_cut']:.2f}). Candidates timed untrained; ✓ fits the budget.",
        "",
        "| candidate | MMACs | MAC cut | p50 ms | p90 ms | GFLOPS | speed-up | speed-up / MAC cut | fits | timed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|:-:|---|",
    ]
    for r in [record["teacher"], *sorted(record["candidates"], key=lambda r: -r["macs"])]:
        name = "teacher " + _name(r) if r is record["teacher"] else _name(r)
        mark = "" if r is record["teacher"] else ("✓" if r["p50_ms"] <= record["budget_ms"] else "")
        lines.append(
            f"| {'**' + name + '**' if r is c else name} | {r['macs'] / 1e6:.0f} | {r['ratio_macs']:.1f}x | "
            f"{r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['gflops']:.1f} | {r['speedup']:.2f}x | "
            f"{r['speedup_per_mac_cut']:.2f} | {mark} | {r['source']} |"
        )
    return lines


def snap_preset(
    teacher: GeneratorSpec,
    preset: str,
    settings: Any,
    arch: str | None = None,
    log: Callable[[str], None] = lambda _m: None,
    stem: str | None = None,
) -> tuple[GeneratorSpec, dict[str, Any]]:
    """Preset `preset`'s MAC budget in widths rounded to 4 and to 8 channels, both timed; the
    faster one that keeps within the budget."""
    from dhm.bench.probe import probe_latency
    from dhm.distill.presets import STUDENT_PRESETS, resolve_student
    from dhm.metrics import generator_cost

    family = resolve_student(teacher, ",".join(map(str, teacher.widths)), arch, stem)
    budget = generator_cost(teacher)[0] / STUDENT_PRESETS[preset]
    specs = []
    for pack in PACKS:
        spec = family.with_widths(widths_for(teacher, family, STUDENT_PRESETS[preset], pack))
        if generator_cost(spec)[0] <= budget and spec not in specs:
            specs.append(spec)
    rows = probe_latency(specs, settings, log)
    best = min(range(len(rows)), key=lambda k: rows[k]["p50_ms"])
    log(
        f"[preset] {preset}: "
        + "; ".join(f"{_name(r)} {r['p50_ms']:.2f} ms" for r in rows)
        + f" -> {_name(rows[best])}"
    )
    return specs[best], {
        "preset": preset,
        "engine": settings.budget_engine,
        "threads": settings.budget_threads,
        "rows": rows,
        "chosen": rows[best],
    }


def preset_front(teacher: GeneratorSpec, settings: Any, log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Every preset in widths rounded to 4 and to 8, with either stem, timed, and which of them are
    on the Pareto front of latency against MACs (no other is both faster and larger)."""
    from dhm.bench.probe import probe_latency
    from dhm.distill.presets import STUDENT_PRESETS, resolve_student
    from dhm.metrics import generator_cost

    names, specs = [], []
    teacher_macs = generator_cost(teacher)[0]
    for stem in STEMS:
        family = resolve_student(teacher, ",".join(map(str, teacher.widths)), None, stem)
        for preset, ratio in STUDENT_PRESETS.items():
            for pack in PACKS:
                spec = family.with_widths(widths_for(teacher, family, ratio, pack))
                if generator_cost(spec)[0] <= teacher_macs / ratio:  # the smallest widths of a pack may not fit
                    names.append(f"{preset} /{pack}{stem_tag(stem)}")
                    specs.append(spec)
    rows = probe_latency([teacher, *specs], settings, log)
    for name, r in zip(["teacher", *names], rows, strict=True):
        r["name"] = name
        r["speedup"] = rows[0]["p50_ms"] / r["p50_ms"]
        r["speedup_per_mac_cut"] = r["speedup"] * r["macs"] / rows[0]["macs"]
    for r in rows:
        r["pareto"] = not any(o["p50_ms"] < r["p50_ms"] and o["macs"] >= r["macs"] for o in rows if o is not r)
    return {
        "engine": settings.budget_engine,
        "threads": settings.budget_threads,
        "precision": settings.budget_precision,
        "device": settings.budget_device,
        "rows": rows,
    }


def front_markdown(front: dict[str, Any]) -> list[str]:
    lines = [
        f"Presets timed untrained on {front['engine']} {front['precision']}, {front['threads']} thread(s), "
        f"{front['device']} (/4, /8: widths rounded to 4 or 8 channels; s2d: the 160x160 level folded into "
        "channels, `--student-stem s2d`; ◆ on the Pareto front of latency against MACs):",
        "",
        "| preset | widths | MMACs | p50 ms | GFLOPS | speed-up | speed-up / MAC cut | front |",
        "|---|---|---:|---:|---:|---:|---:|:-:|",
    ]
    for r in front["rows"]:
        lines.append(
            f"| {r['name']} | {','.join(map(str, r['widths']))} | {r['macs'] / 1e6:.0f} | {r['p50_ms']:.2f} | "
            f"{r['gflops']:.1f} | {r['speedup']:.2f}x | {r['speedup_per_mac_cut']:.2f} | {'◆' if r['pareto'] else ''} |"
        )
    return lines
