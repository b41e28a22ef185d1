import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FIXTURES, run_cli
from helpers import seeded_state_dict

from dhm.errors import ConversionError, SpecError
from dhm.manifest import read_manifest, validation_errors
from dhm.models import Model, file_sha256
from dhm.runtime_py.engines import load
from dhm.spec import WIDTH_PRESETS, GeneratorSpec


def _ultralight_ckpt(tmp_path, mode, preset):
    """A checkpoint in Ultralight's layout: for full widths the state_dict recorded from
    Ultralight's own Model; mobile wenet (which Ultralight cannot build) from dhm."""
    name = f"{mode}_{preset}"
    fixture = FIXTURES / "ultralight" / f"{name}.json"
    if fixture.exists():
        state = seeded_state_dict(json.loads(fixture.read_text())["layout"])
    else:
        torch.manual_seed(0)
        state = Model(GeneratorSpec(mode=mode, widths=WIDTH_PRESETS[preset])).state_dict()
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory, synth_hubert):
    tmp = tmp_path_factory.mktemp("export")
    ckpt = _ultralight_ckpt(tmp, "hubert", "mobile")
    out = tmp / "out"
    r = run_cli("export", ckpt, "-o", out, "--variants", "fp32,fp16", "--data", synth_hubert, "--frames", "3")
    assert r.exit_code == 0, r.output
    return ckpt, out, r.output


@pytest.mark.parametrize("mode,preset", [("hubert", "full"), ("wenet", "full"), ("wenet", "mobile")])
@pytest.mark.slow
def test_ultralight_checkpoints_export_in_both_modes(tmp_path, mode, preset):
    ckpt = _ultralight_ckpt(tmp_path, mode, preset)
    out = tmp_path / "out"
    r = run_cli("export", ckpt, "-o", out, "--frames", "2")
    assert r.exit_code == 0, r.output
    manifest = read_manifest(out)
    assert manifest["generator"]["mode"] == mode
    assert manifest["generator"]["widths"] == list(WIDTH_PRESETS[preset])
    files = {a["file"]: a for a in manifest["artifacts"]}
    assert set(files) == {"model_fp32.onnx", "model_fp32.mnn"}
    # Recomputed here, not read back from what export says about itself: each file on the
    # same validation inputs (random:0, as export used without --data) against torch.
    _assert_matches_torch(ckpt, out, manifest)


def _assert_matches_torch(ckpt, out, manifest, data=None, frames=2):
    from dhm.data.inputs import heldout_inputs, random_inputs
    from dhm.models import load_checkpoint

    model = load_checkpoint(ckpt)
    check = heldout_inputs(data, model.spec, "eval", frames) if data else random_inputs(model.spec, n=frames)
    with torch.inference_mode():
        ref = [model.model(torch.from_numpy(x["face"]), torch.from_numpy(x["audio"])).numpy() for x in check.inputs]
    for a in manifest["artifacts"]:
        engine = load(out / a["file"], threads=1, precision="fp32")
        diff = max(float(np.abs(engine.run(x)["out"] - r).max()) for x, r in zip(check.inputs, ref, strict=True))
        assert diff <= (1e-4 if a["variant"] == "fp32" else 2e-2), a["file"]
        # the manifest records what the file does, within thread-count rounding
        assert a["parity"]["max_abs"] == pytest.approx(diff, rel=0.05, abs=1e-6), a["file"]


def test_export_matches_torch_and_writes_manifest(exported, synth_hubert):
    ckpt, out, output = exported
    manifest = read_manifest(out)  # validates against the schema
    assert validation_errors(manifest) == []
    names = sorted(a["file"] for a in manifest["artifacts"])
    assert names == ["model_fp16.mnn", "model_fp16.onnx", "model_fp32.mnn", "model_fp32.onnx"]
    assert manifest["io"]["inputs"][0]["name"] == "face" and manifest["io"]["inputs"][0]["shape"] == [1, 6, 160, 160]
    assert manifest["io"]["inputs"][1]["name"] == "audio" and manifest["io"]["inputs"][1]["shape"] == [1, 16, 32, 32]
    assert manifest["io"]["outputs"][0]["name"] == "out"
    assert manifest["preprocess"]["crop_size"] == 168 and manifest["preprocess"]["mask_rect"] == [5, 5, 150, 145]
    assert manifest["audio"]["window_before"] == 4 and manifest["audio"]["fps"] == 25
    assert manifest["source"]["sha256"] == file_sha256(ckpt)
    assert set(manifest["versions"]) >= {"dhm", "torch", "onnx", "onnxruntime", "mnn"}
    for a in manifest["artifacts"]:
        assert file_sha256(out / a["file"]) == a["sha256"]
        assert a["size_bytes"] == (out / a["file"]).stat().st_size
        assert a["parity"]["inputs"] == "dataset:eval" and a["parity"]["frames"] == 3
    _assert_matches_torch(ckpt, out, manifest, data=synth_hubert, frames=3)
    sizes = {a["file"]: a["size_bytes"] for a in manifest["artifacts"]}
    assert sizes["model_fp16.mnn"] < 0.6 * sizes["model_fp32.mnn"]
    assert sizes["model_fp16.onnx"] < 0.6 * sizes["model_fp32.onnx"]
    assert "| model_fp32.mnn | mnn | fp32 |" in output
    assert (out / "report.md").read_text().count("| model_") == 4
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_each_artefact_runs_like_torch_on_real_frames(exported, synth_hubert):
    from dhm.data.inputs import heldout_inputs
    from dhm.models import load_checkpoint

    ckpt, out, _ = exported
    model = load_checkpoint(ckpt)
    check = heldout_inputs(synth_hubert, model.spec, "calib", 2)
    for x in check.inputs:
        with torch.no_grad():
            ref = model.model(torch.from_numpy(x["face"]), torch.from_numpy(x["audio"])).numpy()
        for name, tol in (
            ("model_fp32.onnx", 1e-4),
            ("model_fp32.mnn", 1e-4),
            ("model_fp16.onnx", 2e-2),
            ("model_fp16.mnn", 2e-2),
        ):
            engine = load(out / name, threads=1, precision="fp32")
            assert np.abs(engine.run(x)["out"] - ref).max() <= tol, name


@pytest.mark.parametrize("engine", ["onnxruntime", "mnn"])
def test_a_build_that_drifts_is_refused_and_nothing_is_written(tmp_path, exported, monkeypatch, engine):
    """A converter that silently changes the numbers (here: the first convolution's weights
    scaled by 1.05 after a correct build) is caught by export's validation."""
    import onnx
    from onnx import numpy_helper

    from dhm.runtime_py.engines import get
    from dhm.errors import ParityError
    from dhm.export.config import ExportConfig
    from dhm.export.pipeline import export_model

    backend = get(engine)
    real_build = type(backend).build

    def drifting_build(self, config, onnx_fp32, dst, **kw):
        if self.name != engine:
            return real_build(self, config, onnx_fp32, dst, **kw)
        proto = onnx.load(str(onnx_fp32))
        init = next(i for i in proto.graph.initializer if len(i.dims) == 4)
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.05, init.name))
        drifted = Path(dst).with_name("drifted.onnx")
        onnx.save(proto, str(drifted))
        return real_build(self, config, drifted, dst, **kw)

    monkeypatch.setattr(type(backend), "build", drifting_build)
    ckpt, _, _ = exported
    out = tmp_path / "out"
    with pytest.raises(
        ParityError, match=r"model_fp32\.(onnx|mnn) \((onnxruntime|mnn) fp32\): does not match the reference"
    ):
        export_model(ckpt, out, ExportConfig(variants=["fp32"], frames=2))
    assert list(tmp_path.iterdir()) == []  # no OUT, no temp folder


def test_mnn_bizcode_carries_the_manifest_header(exported):
    from dhm.runtime_py.engines import MnnEngine

    _, out, _ = exported
    manifest = read_manifest(out)
    engine = load(out / "model_fp16.mnn")
    assert isinstance(engine, MnnEngine)
    biz = engine.biz
    assert biz["schema"] == manifest["schema"] and biz["variant"] == "fp16"
    assert biz["inputs"] == [{"name": t["name"], "shape": t["shape"]} for t in manifest["io"]["inputs"]]
    assert biz["preprocess"] == manifest["preprocess"]


def test_runtime_refuses_a_model_its_manifest_disagrees_with(exported, tmp_path):
    import shutil

    _, out, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["io"]["inputs"][1]["shape"] = [1, 128, 16, 32]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SpecError, match="'audio' is \\[1, 128, 16, 32\\], the generator takes \\[1, 16, 32, 32\\]"):
        load(copy / "model_fp32.onnx")
    shutil.copy(copy / "model_fp16.onnx", copy / "model_fp32.onnx")
    (copy / "manifest.json").write_text((out / "manifest.json").read_text())
    with pytest.raises(SpecError, match="sha256 differs"):
        load(copy / "model_fp32.onnx")


def _offline(cmd: list[str], tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """`cmd` with no network: in a network namespace with no route (`unshare -n`, as root)
    or, where that is not allowed, with socket creation failing in every Python process
    (a sitecustomize on PYTHONPATH, inherited by pip or any other child)."""
    env = dict(os.environ)
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-n", *cmd], env
    site = tmp_path / "nonet"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import socket\n"
        "class _NoNet(socket.socket):\n"
        "    def __init__(self, family=-1, *a, **k):\n"
        "        if family in (-1, socket.AF_INET, socket.AF_INET6):\n"
        "            raise OSError(101, 'network disabled for this test')\n"
        "        super().__init__(family, *a, **k)\n"
        "socket.socket = _NoNet\n"
    )
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return cmd, env


def test_no_network_no_installs_no_mnn_tools(exported, tmp_path):
    """Export with no network at all: it must not try to install or report anything."""
    ckpt, _, _ = exported
    code = (
        "import socket, sys, importlib.metadata as md\n"
        "try:\n    socket.create_connection(('1.1.1.1', 443), timeout=3)\n    print('ONLINE')\n"
        "except OSError:\n    print('OFFLINE')\n"
        "before = sorted((d.metadata['Name'], d.version) for d in md.distributions())\n"
        "from dhm.export.pipeline import export_model\n"
        "from dhm.export.config import ExportConfig\n"
        f"export_model({str(ckpt)!r}, {str(tmp_path / 'o')!r}, ExportConfig(variants=['fp32', 'fp16'], frames=1))\n"
        "after = sorted((d.metadata['Name'], d.version) for d in md.distributions())\n"
        "print('SAME' if before == after else 'CHANGED')\n"
        "print('TOOLS' if any(m.startswith('MNN.tools') for m in sys.modules) else 'CLEAN')\n"
    )
    cmd, env = _offline([sys.executable, "-c", code], tmp_path)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    words = proc.stdout.split()
    assert "OFFLINE" in words and "ONLINE" not in words, proc.stdout  # the sandbox really has no network
    assert words[-2:] == ["SAME", "CLEAN"], proc.stdout
    assert (tmp_path / "o" / "model_fp16.mnn").is_file()


# ---------------------------------------------------------------------- errors


def _one_line_error(r):
    assert r.exit_code != 0
    lines = [ln for ln in r.output.strip().splitlines() if ln.startswith("dhm:")]
    assert len(lines) == 1, r.output
    assert "Traceback" not in r.output
    return lines[0]


def test_converter_crash_is_a_clear_error(tmp_path, exported):
    import onnx

    from dhm.runtime_py.engines.mnn_tools import convert_onnx

    _, out, _ = exported
    proto = onnx.load(str(out / "model_fp32.onnx"))
    proto.graph.node[5].input[0] = "does_not_exist"  # MNN's converter segfaults on this
    bad = tmp_path / "dangling.onnx"
    onnx.save(proto, str(bad))
    with pytest.raises(ConversionError, match="MNN mnnconvert crashed with SIGSEGV converting dangling.onnx"):
        convert_onnx(bad, tmp_path / "x.mnn")
    assert not (tmp_path / "x.mnn").exists()


def test_converter_error_output_is_a_clear_error(tmp_path):
    from dhm.runtime_py.engines.mnn_tools import convert_onnx

    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 100)
    with pytest.raises(ConversionError, match="MNN converter failed on garbage.onnx"):
        convert_onnx(bad, tmp_path / "x.mnn")


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"PK\x03\x04 broken zip" * 20)
    msg = _one_line_error(run_cli("export", bad, "-o", tmp_path / "out"))
    assert "not a readable PyTorch checkpoint" in msg
    assert not (tmp_path / "out").exists()


def test_unwritable_output(tmp_path, exported):
    ckpt, _, _ = exported
    blocker = tmp_path / "file"
    blocker.write_text("x")
    msg = _one_line_error(run_cli("export", ckpt, "-o", blocker / "out"))
    assert "is a file, not a folder" in msg
    # Root ignores permission bits, so use a folder no one can create files in.
    msg = _one_line_error(run_cli("export", ckpt, "-o", "/proc/dhm-export-test"))
    assert "cannot write in /proc" in msg


def test_failed_export_leaves_nothing_and_keeps_the_old_result(tmp_path, exported):
    ckpt, _, _ = exported
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous run")
    msg = _one_line_error(run_cli("export", ckpt, "-o", out))
    assert "exists and is not an earlier `dhm export` output; pass --force" in msg
    # opset 9 cannot express the bilinear upsampling: the export fails after the temp folder exists
    r = run_cli("export", ckpt, "-o", out, "--opset", "9", "--force")
    msg = _one_line_error(r)
    assert "torch.onnx.export failed (opset 9): Unsupported: ONNX export of operator upsample_bilinear2d" in msg
    assert len(r.output.splitlines()) < 10  # not the exporter's IR dump
    assert (out / "keep.txt").read_text() == "previous run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_int8_without_a_quantize_output_is_explained(tmp_path, exported):
    ckpt, _, _ = exported
    msg = _one_line_error(run_cli("export", ckpt, "-o", tmp_path / "o", "--variants", "int8"))
    assert "dhm quantize" in msg


def test_runtime_checks_input_names_and_shapes(exported):
    from dhm.runtime_py.engines import run_checked

    _, out, _ = exported
    engine = load(out / "model_fp32.mnn")
    good = {"face": np.zeros((1, 6, 160, 160), np.float32), "audio": np.zeros((1, 16, 32, 32), np.float32)}
    assert run_checked(engine, good)["out"].shape == (1, 3, 160, 160)
    with pytest.raises(SpecError, match="input 'audio' has shape \\[1, 128, 16, 32\\]"):
        run_checked(engine, {**good, "audio": np.zeros((1, 128, 16, 32), np.float32)})
    with pytest.raises(SpecError, match="missing input 'face'"):
        run_checked(engine, {"audio": good["audio"]})


_THREADS_SCRIPT = """
import json, os, sys
import MNN, numpy
from dhm.runtime_py.engines import get, load
tasks = lambda: len(os.listdir("/proc/self/task"))
before = tasks()
if sys.argv[2] == "reserved":
    get("mnn").reserve_threads(4)
two, four = load(sys.argv[1], threads=2), load(sys.argv[1], threads=4)
print(json.dumps({"two": two.threads, "four": four.threads, "workers": tasks() - before}))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts the process's threads in /proc")
@pytest.mark.parametrize("order", ["reserved", "first come"])
def test_mnn_engines_get_the_threads_they_report(exported, order):
    """MNN sizes one thread pool per process, at the first runtime with more than one thread:
    reserved for the most threads first (as the bench does), every engine gets its count; not
    reserved, a 4-thread engine after a 2-thread one runs on 2, and says so."""
    _, out, _ = exported
    r = subprocess.run(
        [sys.executable, "-c", _THREADS_SCRIPT, str(out / "model_fp32.mnn"), order],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    warning = "dhm: warning: model_fp32.mnn runs on 2 threads, not 4"
    if order == "reserved":
        assert got == {"two": 2, "four": 4, "workers": 3} and warning not in r.stderr, (got, r.stderr)
    else:
        assert got == {"two": 2, "four": 2, "workers": 1} and warning in r.stderr, (got, r.stderr)


def test_torch_engines_each_run_on_their_own_threads(tmp_path):
    """torch's thread count is one per process: an engine loaded later must not change the
    threads an earlier one runs on (the bench times one after the other)."""
    before = torch.get_num_threads()
    ckpt = _ultralight_ckpt(tmp_path, "hubert", "mobile")
    one, two = load(ckpt, threads=1), load(ckpt, threads=2)
    inputs = {s.name: np.zeros(s.shape, np.float32) for s in one.inputs}
    try:
        for engine, threads in ((one, 1), (two, 2), (one, 1)):
            engine.run(inputs)
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)


def test_every_schema_keyword_is_enforced():
    """The manifest validator implements a JSON-Schema subset; a keyword outside it (here
    `maximum`, `additionalProperties` in an array's items) is reported, not ignored."""
    import copy

    from dhm.manifest import schema, unsupported_keywords

    assert unsupported_keywords(schema()) == set()
    edited = copy.deepcopy(schema())
    edited["properties"]["audio"]["properties"]["fps"]["maximum"] = 240
    edited["properties"]["artifacts"]["items"]["additionalProperties"] = False
    assert unsupported_keywords(edited) == {"maximum", "additionalProperties"}
