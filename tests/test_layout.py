"""The layout the design card fixes: stages depend on the core only, the core on no stage;
only the CLI and the demo orchestrator span stages. Checked on every import statement,
function-local ones included (they hid the old cycles)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("distill", "quantize", "export", "bench", "runtime_py")
SPANNING = ("dhm.cli", "dhm.demo")  # allowed to import every stage


def _unit_of_file(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    if parts[0] in STAGES:
        return parts[0]
    module = "dhm." + parts[1][:-3] if len(parts) == 2 else ""
    return module if module in SPANNING else "core"


def _unit_of_module(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "dhm":
        return None
    if len(parts) > 1 and parts[1] in STAGES:
        return parts[1]
    module = ".".join(parts[:2])
    return module if module in SPANNING else "core"


def import_graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    files = [p for folder in ("dhm", *STAGES) for p in (ROOT / folder).rglob("*.py")]
    for path in files:
        unit = _unit_of_file(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + ([f"dhm.{a.name}" for a in node.names] if node.module == "dhm" else [])
            for name in names:
                target = _unit_of_module(name)
                if target is not None and target != unit:
                    edges.setdefault(unit, set()).add(target)
    return edges


def test_stages_import_only_the_core_and_the_core_no_stage():
    edges = import_graph()
    for unit, targets in edges.items():
        if unit in SPANNING:
            continue
        if unit == "core":
            assert targets <= set(), f"the core imports {sorted(targets)}"
        else:
            assert targets <= {"core"}, f"{unit} imports {sorted(targets - {'core'})}"
    assert {"distill", "quantize", "export", "bench", "runtime_py"} <= edges["dhm.demo"]  # the graph is really read
