"""The bad inputs a careless or unlucky user tried, through the CLI, as a table.

Every case must end in a non-zero exit with exactly one `dhm: error:` line, no traceback,
and the workspace exactly as it was: no new file, no changed file, no lost file. Faults
that need a real process (a full disk, SIGTERM) run `dhm` as a subprocess below.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli

DHM = str(Path(sys.executable).with_name("dhm"))


@dataclass
class Env:
    root: Path
    data: Path
    teacher: Path
    export: Path
    video: Path
    wav: Path

    def p(self, name: str) -> Path:
        return self.root / name


@pytest.fixture(scope="module")
def env(tmp_path_factory, teacher, synth_hubert) -> Env:
    from dhm.export.config import ExportConfig
    from dhm.export.pipeline import export_model

    root = tmp_path_factory.mktemp("bad")
    data = root / "data"
    shutil.copytree(synth_hubert, data)
    model = root / "teacher" / "model.pt"
    model.parent.mkdir()
    shutil.copy(teacher, model)
    export_model(model, root / "export", ExportConfig(targets=["onnx", "mnn"], variants=["fp32"], frames=1))
    feats = root / "feats.npy"
    np.save(feats, np.load(data / "aud_hu.npy")[:6])
    r = run_cli("run", model, "--data", data, "--audio-features", feats, "-o", root / "good.mp4")
    assert r.exit_code == 0, r.output
    (root / "user").mkdir()
    (root / "user" / "notes.txt").write_text("my notes")
    (root / "file.txt").write_text("a file of mine")
    return Env(root, data, model, root / "export", root / "good.mp4", data / "aud.wav")


def snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@dataclass
class Case:
    name: str
    args: Callable[[Env], list]
    expect: str
    setup: Callable[[Env], None] | None = None  # prepares inputs (inside env.p("in"))


def _npy(env: Env, name: str, arr) -> Path:
    path = env.p("in") / name
    path.parent.mkdir(exist_ok=True)
    np.save(path, arr)
    return path


def _copy_export(env: Env, name: str) -> Path:
    dst = env.p("in") / name
    dst.parent.mkdir(exist_ok=True)
    if not dst.exists():
        shutil.copytree(env.export, dst)
    return dst


def _edit_manifest(folder: Path, fn) -> Path:
    m = json.loads((folder / "manifest.json").read_text())
    fn(m)
    (folder / "manifest.json").write_text(json.dumps(m))
    return folder


def _deep_manifest(env: Env) -> Path:
    folder = _copy_export(env, "deep")
    (folder / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    return folder


def _recipe(env: Env, name: str, fn) -> Path:
    folder = env.p("in") / name
    folder.mkdir(parents=True, exist_ok=True)
    recipe = {
        "schema": "dhm.quantize-recipe/1",
        "source": {"file": "model.pt", "sha256": "0" * 64},
        "spec": {"arch": "ultralight", "mode": "hubert", "widths": [8, 16, 32, 64, 128]},
        "calibration": {"file": "calib.npz"},
        "evaluation": {"file": "eval.npz"},
    }
    (folder / "recipe.json").write_text(fn(recipe))
    return folder


def _dynamic_onnx(env: Env) -> Path:
    import onnx

    folder = env.p("in") / "dyn"
    folder.mkdir(parents=True, exist_ok=True)
    m = onnx.load(str(env.export / "model_fp32.onnx"))
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(m, str(folder / "dyn.onnx"))
    return folder / "dyn.onnx"


STRINGS = np.array([["a"] * 2] * 20)

CASES: list[Case] = [
    # --------------------------------------------------------------- data loss
    Case(
        "golden into its own dataset",
        lambda e: ["golden", e.export / "model_fp32.mnn", "--data", e.data, "-o", e.data],
        "is the input",
    ),
    Case(
        "golden into a folder holding the dataset",
        lambda e: ["golden", e.export / "model_fp32.mnn", "--data", e.data, "-o", e.root],
        "holds the input",
    ),
    Case(
        "golden over a user's folder",
        lambda e: ["golden", e.export / "model_fp32.mnn", "--data", e.data, "-o", e.p("user")],
        "is not an earlier `dhm golden` output; pass --force",
    ),
    Case(
        "golden over a file",
        lambda e: ["golden", e.export / "model_fp32.mnn", "--data", e.data, "-o", e.p("file.txt"), "--force"],
        "is a file",
    ),
    Case(
        "app-assets over a user's folder",
        lambda e: ["app-assets", e.export, "--data", e.data, "-o", e.p("user"), "--variant", "fp32"],
        "is not an earlier `dhm app-assets` output",
    ),
    Case(
        "app-assets over a file",
        lambda e: ["app-assets", e.export, "--data", e.data, "-o", e.p("file.txt"), "--force"],
        "is a file",
    ),
    Case(
        "app-assets into the export",
        lambda e: ["app-assets", e.export, "--data", e.data, "-o", e.export / "a"],
        "lies inside the input",
    ),
    Case("export --force over a file", lambda e: ["export", e.teacher, "-o", e.p("file.txt"), "--force"], "is a file"),
    Case(
        "export over its own checkpoint's folder",
        lambda e: ["export", e.teacher, "-o", e.teacher.parent, "--force"],
        "holds the input",
    ),
    Case(
        "quantize over the dataset",
        lambda e: ["quantize", e.teacher, "--data", e.data, "-o", e.data, "--force"],
        "is the input",
    ),
    Case("synth over a user's folder", lambda e: ["data", "synth", e.p("user"), "--frames", "8"], "pass --force"),
    Case("synth over a file", lambda e: ["data", "synth", e.p("file.txt"), "--frames", "8", "--force"], "is a file"),
    Case(
        "run over an existing video",
        lambda e: ["run", e.teacher, "--data", e.data, "--wav", e.wav, "-o", e.video],
        "exists; pass --force",
    ),
    Case(
        "run over its own input",
        lambda e: ["run", e.teacher, "--data", e.data, "-o", e.p("feats.mp4"), "--audio-features", e.p("feats.mp4")],
        "is the input",
    ),
    Case(
        "run into a folder",
        lambda e: ["run", e.teacher, "--data", e.data, "--wav", e.wav, "-o", e.p("user")],
        "ending in .mp4",
    ),
    Case(
        "run into a folder named .mp4",
        lambda e: ["run", e.teacher, "--data", e.data, "--wav", e.wav, "-o", e.p("in/v.mp4")],
        "is a folder",
        setup=lambda e: e.p("in/v.mp4").mkdir(parents=True, exist_ok=True),
    ),
    Case(
        "run into /proc",
        lambda e: ["run", e.teacher, "--data", e.data, "--wav", e.wav, "-o", "/proc/self/x.mp4"],
        "/proc/self",
    ),
    Case(
        "run with no audio frames",
        lambda e: ["run", e.teacher, "--data", e.data, "--audio-features", e.p("in/empty.npy"), "-o", e.p("v.mp4")],
        "holds no feature frames",
        setup=lambda e: _npy(e, "empty.npy", np.zeros((0, 2, 1024), np.float32)),
    ),
    Case(
        "run with an empty WAV",
        lambda e: ["run", e.teacher, "--data", e.data, "--wav", e.p("in/empty.wav"), "-o", e.p("v.mp4")],
        "too short for one video frame",
        setup=lambda e: _wav(e, "empty.wav", 0),
    ),
    Case(
        "bench report over a user's file",
        lambda e: ["bench", e.export, "--reference", e.teacher, "--data", e.data, "--report", e.p("file.txt")],
        "exists; pass --force",
    ),
    Case(
        "bench json into the dataset",
        lambda e: ["bench", e.export, "--reference", e.teacher, "--data", e.data, "--json", e.data / "b.json"],
        "lies inside the input",
    ),
    Case(
        "train into the dataset",
        lambda e: ["train", "--data", e.data, "-o", e.data / "t", "--steps", "1"],
        "lies inside the input",
    ),
    Case(
        "train over a file", lambda e: ["train", "--data", e.data, "-o", e.p("file.txt"), "--steps", "1"], "is a file"
    ),
    Case(
        "distill over a file",
        lambda e: ["distill", "--teacher", e.teacher, "--data", e.data, "-o", e.p("file.txt"), "--steps", "1"],
        "is a file",
    ),
    Case(
        "distill into its teacher's folder",
        lambda e: [
            "distill",
            "--teacher",
            e.teacher,
            "--data",
            e.data,
            "-o",
            e.teacher.parent,
            "--steps",
            "1",
            "--force",
        ],
        "holds the input",
    ),
    Case(
        "demo in a user's folder",
        lambda e: ["demo", "--workdir", e.p("user"), "--quick"],
        "not an earlier `dhm demo` output",
    ),
    # --------------------------------------------------------------- trust
    Case(
        "app-assets shipping /etc/passwd",
        lambda e: ["app-assets", e.p("in/evil"), "--data", e.data, "-o", e.p("assets"), "--variant", "fp32"],
        "not a plain file name",
        setup=lambda e: _edit_manifest(
            _copy_export(e, "evil"), lambda m: m["artifacts"][1].update(file="../../../../etc/passwd")
        ),
    ),
    Case(
        "app-assets shipping a tampered model",
        lambda e: ["app-assets", e.p("in/tampered"), "--data", e.data, "-o", e.p("assets"), "--variant", "fp32"],
        "sha256 differs",
        setup=lambda e: _tamper(e),
    ),
    Case(
        "run a tampered .mnn",
        lambda e: ["run", e.p("in/tampered/model_fp32.mnn"), "--data", e.data, "--wav", e.wav, "-o", e.p("v.mp4")],
        "sha256 differs",
        setup=lambda e: _tamper(e),
    ),
    Case(
        "run a corrupt .mnn without manifest",
        lambda e: ["run", e.p("in/c.mnn"), "--data", e.data, "--wav", e.wav, "-o", e.p("v.mp4")],
        "MNN cannot load it",
        setup=lambda e: _bytes(e, "c.mnn", b"\x00garbage" * 100),
    ),
    Case(
        "bench a corrupt .mnn",
        lambda e: ["bench", e.p("in/c.mnn"), "--reference", e.teacher, "--data", e.data],
        "MNN cannot load it",
        setup=lambda e: _bytes(e, "c.mnn", b"\x00garbage" * 100),
    ),
    Case(
        "run an ONNX with a dynamic face input",
        lambda e: [
            "run",
            e.p("in/dyn/dyn.onnx"),
            "--data",
            e.data,
            "--wav",
            e.wav,
            "-o",
            e.p("v.mp4"),
            "--crop-interpolation",
            "area",
        ],
        "dynamic shape",
        setup=_dynamic_onnx,
    ),
    Case(
        "manifest contradicting the model",
        lambda e: ["run", e.p("in/m128/model_fp32.onnx"), "--data", e.data, "--wav", e.wav, "-o", e.p("v.mp4")],
        "the generator takes",
        setup=lambda e: _edit_manifest(
            _copy_export(e, "m128"),
            lambda m: (
                m["preprocess"].update(inner_size=128, crop_size=136, mask_rect=[5, 5, 100, 100]),
                m["io"]["inputs"][0].update(shape=[1, 6, 128, 128]),
            ),
        ),
    ),
    Case(
        "manifest with a mask outside the crop",
        lambda e: ["run", e.p("in/mask/model_fp32.onnx"), "--data", e.data, "--wav", e.wav, "-o", e.p("v.mp4")],
        "mask_rect",
        setup=lambda e: _edit_manifest(
            _copy_export(e, "mask"), lambda m: m["preprocess"].update(mask_rect=[5, 5, -150, 145])
        ),
    ),
    Case(
        "manifest with NaN",
        lambda e: ["run", e.p("in/nan/model_fp32.onnx"), "--data", e.data, "--wav", e.wav, "-o", e.p("v.mp4")],
        "NaN is not a JSON number",
        setup=lambda e: (
            _copy_export(e, "nan"),
            (e.p("in/nan/manifest.json")).write_text(
                e.p("in/nan/manifest.json").read_text().replace('"fps": 25', '"fps": NaN')
            ),
        ),
    ),
    Case(
        "100000-deep manifest to run",
        lambda e: ["run", e.p("in/deep/model_fp32.onnx"), "--data", e.data, "--wav", e.wav, "-o", e.p("v.mp4")],
        "nested deeper than 64",
        setup=_deep_manifest,
    ),
    Case(
        "100000-deep manifest to app-assets",
        lambda e: ["app-assets", e.p("in/deep"), "--data", e.data, "-o", e.p("assets")],
        "nested deeper than 64",
        setup=_deep_manifest,
    ),
    Case(
        "100000-deep JSON to bench --compare",
        lambda e: ["bench", "--compare", e.p("in/deep.json"), e.p("in/deep.json")],
        "nested deeper than 64",
        setup=lambda e: _bytes(e, "deep.json", b"[" * 100_000),
    ),
    Case(
        "bench --compare of an incomplete record",
        lambda e: ["bench", "--compare", e.p("in/b.json"), e.p("in/b.json")],
        "not a complete `dhm bench` record",
        setup=lambda e: _bytes(e, "b.json", b'{"schema": "dhm.bench/1", "machine": 3}'),
    ),
    Case(
        "recipe nested deeply",
        lambda e: ["export", e.p("in/r1"), "-o", e.p("out")],
        "nested deeper than 64",
        setup=lambda e: _recipe(e, "r1", lambda r: "[" * 5000 + "]" * 5000),
    ),
    Case(
        "recipe without source",
        lambda e: ["export", e.p("in/r2"), "-o", e.p("out")],
        "missing source.file",
        setup=lambda e: _recipe(e, "r2", lambda r: json.dumps({k: v for k, v in r.items() if k != "source"})),
    ),
    Case(
        "recipe with wrong types",
        lambda e: ["export", e.p("in/r3"), "-o", e.p("out")],
        "source.file has the wrong type",
        setup=lambda e: _recipe(
            e, "r3", lambda r: json.dumps({**r, "source": {"file": ["model.pt"], "sha256": "0" * 64}})
        ),
    ),
    Case(
        "recipe pointing outside its folder",
        lambda e: ["export", e.p("in/r4"), "-o", e.p("out")],
        "source.file has the wrong type",
        setup=lambda e: _recipe(
            e, "r4", lambda r: json.dumps({**r, "source": {"file": "../teacher/model.pt", "sha256": "0" * 64}})
        ),
    ),
    # --------------------------------------------------------------- array files
    Case(
        "string features to data check",
        lambda e: ["data", "check", e.p("in/sd")],
        "holds <U1 values",
        setup=lambda e: _dataset_with_features(e, "sd", STRINGS),
    ),
    Case(
        "string features to train",
        lambda e: ["train", "--data", e.p("in/sd"), "-o", e.p("t"), "--steps", "1"],
        "holds <U1 values",
        setup=lambda e: _dataset_with_features(e, "sd", STRINGS),
    ),
    Case(
        "string features to run",
        lambda e: ["run", e.teacher, "--data", e.data, "--audio-features", e.p("in/s.npy"), "-o", e.p("v.mp4")],
        "holds <U1 values",
        setup=lambda e: _npy(e, "s.npy", STRINGS),
    ),
    Case(
        "string features to export",
        lambda e: ["export", e.teacher, "-o", e.p("out"), "--data", e.p("in/sd")],
        "holds <U1 values",
        setup=lambda e: _dataset_with_features(e, "sd", STRINGS),
    ),
    Case(
        "string features to quantize",
        lambda e: ["quantize", e.teacher, "--data", e.p("in/sd"), "-o", e.p("q")],
        "holds <U1 values",
        setup=lambda e: _dataset_with_features(e, "sd", STRINGS),
    ),
    Case(
        "an .npz as features",
        lambda e: ["run", e.teacher, "--data", e.data, "--audio-features", e.p("in/f.npz"), "-o", e.p("v.mp4")],
        "an .npz archive",
        setup=lambda e: np.savez(_dir(e) / "f.npz", a=np.zeros(3)),
    ),
    Case(
        "NaN features",
        lambda e: ["run", e.teacher, "--data", e.data, "--audio-features", e.p("in/n.npy"), "-o", e.p("v.mp4")],
        "non-finite values at frame 2",
        setup=lambda e: _npy(e, "n.npy", _nan_at(2)),
    ),
    Case(
        "wenet features to a hubert model",
        lambda e: ["run", e.teacher, "--data", e.data, "--audio-features", e.p("in/w.npy"), "-o", e.p("v.mp4")],
        "does not fit the hubert mode",
        setup=lambda e: _npy(e, "w.npy", np.zeros((10, 16, 512), np.float32)),
    ),
    Case(
        "a calibration set of strings",
        lambda e: [
            "quantize",
            e.teacher,
            "--data",
            e.data,
            "-o",
            e.p("q"),
            "--calib",
            e.p("in/c.npz"),
            "--eval-frames",
            "4",
        ],
        "not a dhm calibration set",
        setup=lambda e: np.savez(_dir(e) / "c.npz", face=STRINGS, audio=STRINGS, frames=np.arange(20), source="x"),
    ),
    # --------------------------------------------------------------- numeric options
    *[
        Case(f"synth {opt} {val}", lambda e, o=opt, v=val: ["data", "synth", e.p("s"), o, v], f"'{opt}'")
        for opt, val in (
            ("--frames", "1e20"),
            ("--frames", "100000000000000000000"),
            ("--frames", "3"),
            ("--seed", "-5"),
            ("--scale", "nan"),
            ("--scale", "100"),
        )
    ],
    *[
        Case(
            f"train {opt} {val}", lambda e, o=opt, v=val: ["train", "--data", e.data, "-o", e.p("t"), o, v], f"'{opt}'"
        )
        for opt, val in (
            ("--threads", "-1"),
            ("--threads", "0"),
            ("--lr", "nan"),
            ("--lr", "inf"),
            ("--lr", "-1"),
            ("--eval-frames", "0"),
            ("--steps", "1e23"),
            ("--steps", "0"),
            ("--steps", "99999999999"),
            ("--w-ssim", "-1e30"),
            ("--w-mouth", "nan"),
            ("--batch-size", "0"),
            ("--seed", "-1"),
        )
    ],
    Case(
        "train --device banana",
        lambda e: ["train", "--data", e.data, "-o", e.p("t"), "--device", "banana"],
        "--device 'banana'",
    ),
    Case(
        "distill --w-feature inf",
        lambda e: ["distill", "--teacher", e.teacher, "--data", e.data, "-o", e.p("t"), "--w-feature", "inf"],
        "'--w-feature'",
    ),
    Case(
        "distill --student 0",
        lambda e: ["distill", "--teacher", e.teacher, "--data", e.data, "-o", e.p("t"), "--student", "0,0,0,0,0"],
        "every width must be at least 2",
    ),
    Case(
        "distill --student huge",
        lambda e: ["distill", "--teacher", e.teacher, "--data", e.data, "-o", e.p("t"), "--student", "9999999,2,2,2,2"],
        "at most 4096",
    ),
    *[
        Case(
            f"quantize {opt} {val}",
            lambda e, o=opt, v=val: ["quantize", e.teacher, "--data", e.data, "-o", e.p("q"), o, v],
            f"'{opt}'",
        )
        for opt, val in (
            ("--target-psnr", "nan"),
            ("--target-psnr", "-3"),
            ("--eval-frames", "0"),
            ("--calib-frames", "1e9"),
        )
    ],
    *[
        Case(f"export {opt} {val}", lambda e, o=opt, v=val: ["export", e.teacher, "-o", e.p("out"), o, v], f"'{opt}'")
        for opt, val in (("--frames", "0"), ("--opset", "99"))
    ],
    Case(
        "run --threads 0",
        lambda e: ["run", e.teacher, "--data", e.data, "--wav", e.wav, "-o", e.p("v.mp4"), "--threads", "0"],
        "'--threads'",
    ),
    *[
        Case(
            f"bench {opt} {val}",
            lambda e, o=opt, v=val: ["bench", e.export, "--reference", e.teacher, "--data", e.data, o, v],
            opt,
        )
        for opt, val in (
            ("--threads", "0"),
            ("--threads", "1,x"),
            ("--runs", "2"),
            ("--device-timeout", "nan"),
            ("--frames", "1"),
        )
    ],
    Case(
        "golden --frames 0",
        lambda e: ["golden", e.export / "model_fp32.mnn", "--data", e.data, "-o", e.p("g"), "--frames", "0"],
        "'--frames'",
    ),
    Case(
        "app-assets --frames 1",
        lambda e: ["app-assets", e.export, "--data", e.data, "-o", e.p("a"), "--frames", "1"],
        "'--frames'",
    ),
    Case(
        "info --crop-interpolation nearest",
        lambda e: ["info", e.teacher, "--crop-interpolation", "nearest"],
        "'--crop-interpolation'",
    ),
    Case(
        "info with a contradicting crop filter",
        lambda e: ["info", e.teacher, "--crop-interpolation", "linear"],
        "contradicts it",
    ),
]


def _dir(env: Env) -> Path:
    (env.p("in")).mkdir(exist_ok=True)
    return env.p("in")


def _bytes(env: Env, name: str, content: bytes) -> None:
    (_dir(env) / name).write_bytes(content)


def _wav(env: Env, name: str, n: int) -> None:
    from dhm.audio.frontend import write_wav

    write_wav(_dir(env) / name, np.zeros(n, np.float32))


def _nan_at(i: int) -> np.ndarray:
    a = np.zeros((6, 2, 1024), np.float32)
    a[i, 0, 0] = np.nan
    return a


def _tamper(env: Env) -> None:
    folder = _copy_export(env, "tampered")
    with open(folder / "model_fp32.mnn", "r+b") as f:
        f.seek(200)
        f.write(b"\x13\x37")


def _dataset_with_features(env: Env, name: str, arr: np.ndarray) -> None:
    dst = _dir(env) / name
    if not dst.exists():
        shutil.copytree(env.data, dst)
        np.save(dst / "aud_hu.npy", arr)


def _record(env: Env, name: str, errors: list[str]) -> None:
    """With DHM_ERRORS_TO=FILE, every case's error lines go there (paths made relative), so a
    refactoring can diff the messages a user sees before and after."""
    if target := os.environ.get("DHM_ERRORS_TO"):
        with open(target, "a") as f:
            f.writelines(f"{name}: {ln.replace(str(env.root), '<root>')}\n" for ln in errors or ["(none)"])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_and_loses_nothing(env, case):
    if case.setup is not None:
        case.setup(env)
    before = snapshot(env.root)
    r = run_cli(*case.args(env))
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("dhm: error:")]
    _record(env, case.name, errors)
    assert r.exit_code not in (0, None), f"exit 0: {r.output[-2000:]}"
    assert isinstance(r.exception, SystemExit), f"escaped: {r.exception!r}\n{r.output[-2000:]}"
    assert "Traceback" not in r.output
    assert len(errors) == 1 and case.expect in errors[0], r.stderr[-2000:]
    assert snapshot(env.root) == before, "the workspace changed"


# ------------------------------------------------------------------ faults in a real process


def _limit_file_size(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def _dhm(args: list, limit: int | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DHM, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_limit_file_size(limit) if limit else None,
        **kw,
    )


def _one_line(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode not in (0, None), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("dhm: error:")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr


@pytest.mark.parametrize(
    "name,args,limit",
    [
        ("synth", lambda e: ["data", "synth", e.p("full/s"), "--frames", "40"], 30_000),
        ("golden", lambda e: ["golden", e.export / "model_fp32.mnn", "--data", e.data, "-o", e.p("full/g")], 60_000),
        (
            "app-assets",
            lambda e: ["app-assets", e.export, "--data", e.data, "-o", e.p("full/a"), "--variant", "fp32"],
            200_000,
        ),
        (
            "train",
            lambda e: [
                "train",
                "--data",
                e.data,
                "-o",
                e.p("full/t"),
                "--widths",
                "4,4,4,4,4",
                "--steps",
                "2",
                "--batch-size",
                "1",
                "--eval-frames",
                "1",
                "--quiet",
            ],
            20_000,
        ),
        ("export", lambda e: ["export", e.teacher, "-o", e.p("full/e"), "--target", "onnx"], 50_000),
    ],
)
def test_a_full_disk_is_one_line_and_leaves_nothing(env, name, args, limit):
    """RLIMIT_FSIZE makes every write past `limit` bytes fail (EFBIG), as a full disk
    fails it (ENOSPC): the same OSError path."""
    before = snapshot(env.root)
    proc = _dhm(args(env), limit=limit)
    _one_line(proc, "full")
    assert snapshot(env.root) == before


def test_a_full_disk_never_replaces_a_good_video(env):
    """PyAV reports the failed write (OpenCV's writer did not, and truncated the file silently)."""
    good = env.video.read_bytes()
    proc = _dhm(["run", env.teacher, "--data", env.data, "--wav", env.wav, "-o", env.video, "--force"], limit=40_000)
    _one_line(proc, "the disk (or the file size limit) is full")
    assert env.video.read_bytes() == good
    assert not [p for p in env.root.iterdir() if p.name.startswith(".good")]


def test_sigterm_during_export_leaves_nothing(env):
    out = env.p("term/e")
    before = snapshot(env.root)
    proc = subprocess.Popen(
        [DHM, "export", str(env.teacher), "-o", str(out), "--variants", "fp32,fp16"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (out.parent.is_dir() and any(out.parent.iterdir())):
        time.sleep(0.05)
    assert out.parent.is_dir(), "export never started writing"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "dhm: terminated" in err and "Traceback" not in err, err
    assert snapshot(env.root) == before


def test_a_failed_training_leaves_no_folder(env):
    """A run that diverges before its first checkpoint takes its folder (and run.json) with it."""
    before = snapshot(env.root)
    r = run_cli(
        "distill",
        "--teacher",
        env.teacher,
        "--data",
        env.data,
        "-o",
        env.p("div/student"),
        "--student",
        "4,4,4,4,4",
        "--steps",
        "30",
        "--batch-size",
        "2",
        "--eval-every",
        "30",
        "--eval-frames",
        "2",
        "--lr",
        "1e12",
        "--quiet",
    )
    assert r.exit_code == 1 and "no checkpoint was saved yet" in r.stderr, r.output
    assert snapshot(env.root) == before


def test_force_replaces_only_once_the_new_output_is_complete(env, tmp_path):
    """--force over a user's folder: it goes only after the new output exists."""
    target = tmp_path / "target"
    target.mkdir()
    (target / "old.txt").write_text("old")
    r = run_cli("export", env.teacher, "-o", target, "--target", "onnx", "--opset", "9", "--force")  # fails
    assert r.exit_code == 1 and (target / "old.txt").read_text() == "old"
    r = run_cli("export", env.teacher, "-o", target, "--target", "onnx", "--force")
    assert r.exit_code == 0, r.output
    assert not (target / "old.txt").exists() and (target / "manifest.json").is_file()
    # its own earlier output is replaced without --force
    r = run_cli("export", env.teacher, "-o", target, "--target", "onnx")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]
