from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))  # for `import helpers`

FIXTURES = TESTS / "fixtures"

# ARM numerics (every MNN file again on MNN's aarch64 kernels under qemu) cost ~2 s per file
# plus ~1 s per frame: the suite measures them where a test is about them (`arm_numerics`)
# and turns them off elsewhere (subprocesses inherit it).
os.environ["DHM_ARM"] = "off"

# Under pytest-xdist (`make test`: 2 processes on 2 cores) each process's torch runs its own
# OpenMP threads; busy-waiting ones would take the core the other process needs (a quick demo
# went from 104 s to 12 min beside one 2-thread training run). Idle threads sleep instead.
# Set before torch is first imported, which no module above does.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# The fixtures that train, export, quantize or compile for real: every test that uses one is
# `slow`, so `pytest -m "not slow"` is the quick subset (the layout, the docs, the CLI's
# refusals, the metrics, the data) and `make test` still runs everything.
SLOW_FIXTURES = {
    "teacher", "exported_teacher", "env", "exported", "host_result", "mnn_bin", "distinct_student",
    "audio_student", "golden", "core_build", "sanitized_build", "quantized", "pipeline", "wenet_onnx", "hubert_dir",
}  # fmt: skip


# `make test` hands whole files to its processes in collection order, so the longest files go
# first: a 5-minute file started last keeps one process busy while the other has nothing left
# (the files' summed --durations in a `make test` run, 2026-12-03: 370 s down to 50 s).
LONGEST_FIRST = (
    "test_quantize.py", "test_native.py", "test_distill.py", "test_runtime.py", "test_bench.py", "test_docs.py",
    "test_revisions.py", "test_distill_audio.py", "test_bad_inputs.py", "test_export.py", "test_budget.py",
    "test_apps.py",
)  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order


@contextlib.contextmanager
def arm_numerics() -> Iterator[None]:
    """ARM numerics on; the environment must exist (`make test` builds it: `make arm-env`)."""
    from dhm.runtime_py.engines.arm import unavailable

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("DHM_ARM")
        reason = unavailable()
        assert reason is None, f"ARM numerics: {reason}"
        yield


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Path]) -> Path:
    """A session artefact shared by the pytest-xdist processes: the first to ask builds it in
    the run's folder under a file lock, the others wait for it and read it."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each process's own
    done = root / f"{name}.json"
    with FileLock(str(root / f"{name}.lock")):
        if not done.is_file():
            done.write_text(json.dumps(str(build(root / name))))
    return Path(json.loads(done.read_text()))


@pytest.fixture(scope="session")
def synth_hubert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small built-in dataset (hubert layout), shared read-only by the session."""
    from dhm.data.synth import write_synth_dataset

    return built_once(tmp_path_factory, "synth_hubert", partial(write_synth_dataset, frames=160, seed=7))


@pytest.fixture(scope="session")
def synth_wenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dhm.data.synth import write_synth_dataset

    return built_once(tmp_path_factory, "synth_wenet", partial(write_synth_dataset, frames=120, seed=8, mode="wenet"))


def run_cli(*args: str):
    """Run the dhm CLI in-process; returns click's Result (exit_code, stdout, stderr)."""
    from click.testing import CliRunner

    from dhm.app.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)


TEACHER_WIDTHS = (8, 16, 32, 64, 128)


@pytest.fixture(scope="session")
def teacher(tmp_path_factory: pytest.TempPathFactory, synth_hubert: Path) -> Path:
    """A tiny generator, trained for real on the built-in set (dhm train)."""
    from dataclasses import replace

    from dhm.distill import TrainingSettings, train_generator
    from dhm.distill.weights import TRAIN_DEFAULTS
    from dhm.spec import GeneratorSpec

    settings = TrainingSettings(steps=40, batch_size=4, lr=3e-3, eval_every=40, eval_frames=8, threads=2)
    # The objective is pinned (bce 0.1, the default until 2026-11-22) so that a change of
    # training defaults does not silently change the model every stage's tests run on.
    # With bce 1.0 this 40-step teacher's full ONNX INT8 already beat every fallback round
    # (46.7 dB against 40.1 with 9 layers in float), and the fallback test needs one it helps.
    weights = replace(TRAIN_DEFAULTS, bce=0.1)

    def train(out: Path) -> Path:
        train_generator(synth_hubert, out, GeneratorSpec(widths=TEACHER_WIDTHS), settings, weights, progress=False)
        return out / "model.pt"

    # trained once per run, not once per xdist process
    return built_once(tmp_path_factory, "teacher", train)
