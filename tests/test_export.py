import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import FIXTURES, run_cli
from helpers import seeded_state_dict

from dhm.errors import ConversionError, SpecError
from dhm.manifest import read_manifest, validation_errors
from dhm.models import Model, file_sha256
from dhm.engines import load
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
    for a in files.values():
        assert a["parity"]["max_abs"] <= 1e-4 and a["parity"]["passed"]


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
        if a["variant"] == "fp32":
            assert a["parity"]["max_abs"] <= 1e-4
        else:
            assert a["parity"]["psnr"] == "inf" or a["parity"]["psnr"] >= 45
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
        for name, tol in (("model_fp32.onnx", 1e-4), ("model_fp32.mnn", 1e-4), ("model_fp16.onnx", 2e-2), ("model_fp16.mnn", 2e-2)):
            engine = load(out / name, threads=1, precision="fp32")
            assert np.abs(engine.run(x)["out"] - ref).max() <= tol, name


def test_mnn_bizcode_carries_the_manifest_header(exported):
    from dhm.engines import MnnEngine

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


def test_no_network_no_installs_no_mnn_tools(exported, tmp_path):
    ckpt, _, _ = exported
    code = (
        "import sys, importlib.metadata as md\n"
        "before = sorted((d.metadata['Name'], d.version) for d in md.distributions())\n"
        "from dhm.export.pipeline import export_model\n"
        f"export_model({str(ckpt)!r}, {str(tmp_path / 'o')!r}, variants=['fp32'], frames=1)\n"
        "after = sorted((d.metadata['Name'], d.version) for d in md.distributions())\n"
        "print('SAME' if before == after else 'CHANGED')\n"
        "print('TOOLS' if any(m.startswith('MNN.tools') for m in sys.modules) else 'CLEAN')\n"
    )
    # An unreachable proxy: any attempt to reach the network fails fast instead of going out.
    env = {**__import__("os").environ, "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["SAME", "CLEAN"]


# ---------------------------------------------------------------------- errors


def _one_line_error(r):
    assert r.exit_code != 0
    lines = [ln for ln in r.output.strip().splitlines() if ln.startswith("dhm:")]
    assert len(lines) == 1, r.output
    assert "Traceback" not in r.output
    return lines[0]


def test_converter_crash_is_a_clear_error(tmp_path, exported):
    import onnx

    from dhm.engines.mnn_tools import convert_onnx

    _, out, _ = exported
    proto = onnx.load(str(out / "model_fp32.onnx"))
    proto.graph.node[5].input[0] = "does_not_exist"  # MNN's converter segfaults on this
    bad = tmp_path / "dangling.onnx"
    onnx.save(proto, str(bad))
    with pytest.raises(ConversionError, match="MNN mnnconvert crashed with SIGSEGV converting dangling.onnx"):
        convert_onnx(bad, tmp_path / "x.mnn")
    assert not (tmp_path / "x.mnn").exists()


def test_converter_error_output_is_a_clear_error(tmp_path):
    from dhm.engines.mnn_tools import convert_onnx

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
    # opset 9 has no Resize: the export fails after the temp folder exists
    msg = _one_line_error(run_cli("export", ckpt, "-o", out, "--opset", "9", "--force"))
    assert "export" in msg
    assert (out / "keep.txt").read_text() == "previous run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_int8_without_a_quantize_output_is_explained(tmp_path, exported):
    ckpt, _, _ = exported
    msg = _one_line_error(run_cli("export", ckpt, "-o", tmp_path / "o", "--variants", "int8"))
    assert "dhm quantize" in msg


def test_runtime_checks_input_names_and_shapes(exported):
    from dhm.engines import run_checked

    _, out, _ = exported
    engine = load(out / "model_fp32.mnn")
    good = {"face": np.zeros((1, 6, 160, 160), np.float32), "audio": np.zeros((1, 16, 32, 32), np.float32)}
    assert run_checked(engine, good)["out"].shape == (1, 3, 160, 160)
    with pytest.raises(SpecError, match="input 'audio' has shape \\[1, 128, 16, 32\\]"):
        run_checked(engine, {**good, "audio": np.zeros((1, 128, 16, 32), np.float32)})
    with pytest.raises(SpecError, match="missing input 'face'"):
        run_checked(engine, {"audio": good["audio"]})
