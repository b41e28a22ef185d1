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
    """The longest importable prefix, then attributes: dhm.runtime_py.engines.load, dhm.data.lips."""
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


# What the walkthrough test adds to each command: small step, frame and run counts only.
SMALL = {
    "distill": ["--eval-frames", "4"],
    "distill-audio": ["--batch-size", "4"],
    "quantize": ["--calib-frames", "8", "--eval-frames", "4"],
    "export": ["--frames", "2"],
    "bench": ["--frames", "4", "--runs", "5", "--rounds", "1", "--warmup", "1", "--threads", "1", "--e2e-frames", "2"]
    + ["--loop-frames", "1"],
    "app-assets": ["--frames", "8"],
}


def walkthrough() -> list[list[str]]:
    """The commands of the README's "Your Ultralight model on a phone" block, as written."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Your Ultralight model on a phone") :]
    block = section[section.index("```sh\n") + 6 : section.index("```", section.index("```sh\n") + 6)]
    return [line.split() for line in block.splitlines() if line.startswith("dhm ")]


def test_the_readme_walkthrough_runs_as_written(tmp_path, teacher, monkeypatch):
    """my_model.pth: an Ultralight-layout state_dict (the suite's trained teacher, saved as upstream
    saves it); my_data: the built-in set (100 frames, the fewest with a held-out split), which
    carries its features (so no `dhm features`). The commands run in this process, through the
    CLI's own entry point (a process each cost ~5 s of imports; the wheel check runs the
    installed `dhm` script)."""
    import torch

    from conftest import run_cli

    from dhm.data.synth import write_synth_dataset
    from dhm.models.checkpoint import load_checkpoint
    from dhm.runtime_py.mp4 import read_mp4

    torch.save(load_checkpoint(teacher).model.state_dict(), tmp_path / "my_model.pth")
    write_synth_dataset(tmp_path / "my_data", frames=100, seed=3)
    commands = walkthrough()
    stages = [c[1] for c in commands]
    assert stages == ["info", "data", "distill", "distill-audio", "quantize", "export", "run", "bench", "app-assets"]
    monkeypatch.chdir(tmp_path)
    for cmd in commands:
        small = ("--steps", "--teacher-pool")
        args = [re.sub(r"^\d{3,}$", "4", a) if i and cmd[i - 1] in small else a for i, a in enumerate(cmd)]
        r = run_cli(*args[1:], *SMALL.get(cmd[1], []))
        assert r.exit_code == 0, f"{' '.join(cmd)}:\n{r.output[-3000:]}\n{r.exception!r}"
        if cmd[1] == "info":
            assert "ultralight" in r.output  # read as an upstream checkpoint, not a dhm one
    video = read_mp4(tmp_path / "talk.mp4")
    assert video.audio_codec == "aac" and video.frames == 100
    assert (tmp_path / "bench.md").is_file()
    assets = tmp_path / "android_demo/app/src/main/assets/dhm"
    assert {"model.mnn", "audio.mnn", "manifest.json"} <= {p.name for p in assets.iterdir()}
