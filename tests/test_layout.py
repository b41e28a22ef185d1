"""The layers the design card fixes, read from the code's own imports (function-local and
TYPE_CHECKING ones included: they hid the old cycles), with no exemption list:

    app      dhm.app (the CLI and the demo orchestrator)
    tools    dhm.distill, dhm.quantize, dhm.export, dhm.bench
    runtime  dhm.runtime_py (engines and their registry, frame pipeline, PCM streaming, video, golden)
    core     every other dhm module (spec, errors, io, manifest, data, models, metrics, audio)

A module imports only its own layer and those below it, and no two modules import each other,
directly or around a loop. Run with -s to see the graph."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"dhm": "dhm", "distill": "dhm.distill", "quantize": "dhm.quantize", "export": "dhm.export",
           "runtime_py": "dhm.runtime_py", "bench": "dhm.bench"}  # fmt: skip
LAYERS = ("core", "runtime", "tools", "app")
TOOLS = ("distill", "quantize", "export", "bench")


def layer_of(module: str) -> str:
    """The layer a module belongs to, from its package alone."""
    part = module.split(".")[1] if "." in module else ""
    if part == "app":
        return "app"
    if part in TOOLS:
        return "tools"
    return "runtime" if part == "runtime_py" else "core"


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def _imported_names(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: resolved against the importing module's package
        package = module if is_package else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    return [base] + [f"{base}.{a.name}" for a in node.names]


def import_graph() -> dict[str, set[str]]:
    """module -> the dhm modules it imports anywhere in its text."""
    known = modules()
    edges: dict[str, set[str]] = {m: set() for m in known}
    for module, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for name in _imported_names(node, module, path.name == "__init__.py"):
                while name and name not in known:  # `from pkg.mod import func` -> pkg.mod
                    name = name.rpartition(".")[0]
                if name.startswith("dhm") and name != module:
                    edges[module].add(name)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_imports_a_layer_above_its_own_and_none_import_in_a_circle():
    edges = import_graph()
    between = Counter((layer_of(m), layer_of(t)) for m, targets in edges.items() for t in targets)
    print("\nimports between layers (from -> to: count)")
    for (src, dst), n in sorted(between.items(), key=lambda kv: (LAYERS.index(kv[0][0]), LAYERS.index(kv[0][1]))):
        print(f"  {src:8} -> {dst:8} {n}")
    upward = [f"{m} -> {t}" for m, targets in edges.items() for t in sorted(targets)
              if LAYERS.index(layer_of(t)) > LAYERS.index(layer_of(m))]  # fmt: skip
    circles = cycles(edges)
    print(f"upward imports: {len(upward)}; circular groups: {len(circles)}")
    assert not upward, "imports from a layer above:\n" + "\n".join(upward)
    assert not circles, "modules that import each other: " + "; ".join(" <-> ".join(c) for c in circles)
    # the graph is really read: every layer is there and the app reaches every tool
    assert {layer_of(m) for m in edges} == set(LAYERS)
    assert {t.split(".")[1] for t in edges["dhm.app.demo"] if layer_of(t) == "tools"} == set(TOOLS)


def test_the_checks_see_an_upward_import_and_a_circle():
    """The two rules, on a graph with one of each (the checks above must be able to fail)."""
    edges = {"dhm.spec": {"dhm.runtime_py.pipeline"}, "dhm.runtime_py.pipeline": {"dhm.spec"}, "dhm.io": set()}
    assert LAYERS.index(layer_of("dhm.runtime_py.pipeline")) > LAYERS.index(layer_of("dhm.spec"))
    assert cycles(edges) == [["dhm.runtime_py.pipeline", "dhm.spec"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


ENGINE_NAMES = {"torch", "onnxruntime", "mnn"}
REGISTRY = ROOT / "runtime_py" / "engines" / "registry.py"


def _strings(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(set(), *(_strings(e) for e in node.elts))
    return set()


def engine_name_comparisons(path: Path, root: Path = ROOT) -> list[str]:
    """`x == "mnn"`, `b in ("torch", …)` and the like in one file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Compare) and any(_strings(s) & ENGINE_NAMES for s in (node.left, *node.comparators)):
            found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_stages_ask_the_registry_instead_of_comparing_engine_names():
    """What a backend is (exported, shipped to phones, FP16 in low precision, mirrored on ARM)
    is declared once, in the registry; no other module branches on an engine's name."""
    found = [hit for path in modules().values() if path != REGISTRY for hit in engine_name_comparisons(path)]
    assert not found, "engine names compared outside the registry:\n" + "\n".join(found)


def test_the_engine_name_scan_sees_a_comparison(tmp_path):
    probe = tmp_path / "stage.py"
    probe.write_text('def f(c):\n    return c.backend == "mnn" or c.kind in ("torch", "x")\n')
    (tmp_path / "ok.py").write_text('def g(fmt):\n    return fmt == "onnx"\n')
    assert len(engine_name_comparisons(probe, tmp_path)) == 2
    assert engine_name_comparisons(tmp_path / "ok.py", tmp_path) == []


MAX_FUNCTION_LINES = 80


def function_lengths() -> list[tuple[int, str]]:
    """(lines, where) of every function and method, decorators included, longest first."""
    found = []
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                found.append((node.end_lineno - first + 1, f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"))
    return sorted(found, reverse=True)


def test_every_function_fits_on_a_screen():
    lengths = function_lengths()
    print("\nlongest functions:\n" + "\n".join(f"  {n:4d} {where}" for n, where in lengths[:8]))
    assert len(lengths) > 500  # the scan really reads the tree
    too_long = [f"{n} lines: {where}" for n, where in lengths if n > MAX_FUNCTION_LINES]
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(too_long)
