"""Audio students (`dhm distill-audio`): streaming geometry, training, report, export, bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from helpers import one_error_line

from dhm.runtime_py.streaming import stream_features
from dhm.audio.frontend import SAMPLE_RATE, read_wav, write_wav
from dhm.errors import CheckpointError, SpecError


def _speechlike(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SAMPLE_RATE
    pcm = 0.3 * np.sin(2 * np.pi * 140 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t))
    return (pcm + 0.02 * rng.standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize("mode", ["hubert", "wenet"])
def test_student_streams_exactly_its_batched_features(mode):
    """One call per frame, stateless: the PCM stream (any chunking) gives exactly the
    batched per-frame windows training and evaluation use."""
    import torch

    from dhm.distill.audio import student_features
    from dhm.audio.student import SIZES, StudentConfig, build_student

    config = StudentConfig(mode=mode, **SIZES["s"])
    spec = config.audio_spec()
    assert spec.consistency_errors(mode) == []
    torch.manual_seed(0)
    model = build_student(config).eval()

    def rows(window: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(window.reshape(1, 1, -1)))[0].numpy()

    pcm = _speechlike(spec.samples_per_frame * 9 + 123)
    n = spec.frames_for(pcm.size)
    batched = student_features(model, spec, pcm, n)
    for chunk in (97, 1601, None):
        streamed = stream_features(spec, rows, pcm, chunk=chunk)
        assert streamed.shape == batched.shape == (9, *batched.shape[1:])
        np.testing.assert_allclose(streamed, batched, atol=2e-5)


def test_student_lookahead_by_hand():
    from dhm.audio.student import SIZES, StudentConfig

    spec = StudentConfig(mode="hubert", lookahead_hops=4, **SIZES["s"]).audio_spec()
    # frame 3 (the last the 8-frame window of frame 0 reads) outputs hops 12..15 and reads 4
    # more: its window ends at hop 19's last sample, 19*160 + 200; frame 0 ends at 640
    assert spec.lookahead_samples(8) == 19 * 160 + 200 - 640
    later = StudentConfig(mode="hubert", lookahead_hops=10, **SIZES["s"]).audio_spec()
    assert later.lookahead_samples(8) - spec.lookahead_samples(8) == 6 * 160


def test_student_checkpoint_round_trip_and_refusals(tmp_path, teacher):
    import torch

    from dhm.audio.student import SIZES, StudentConfig, build_student, load_student, save_student

    config = StudentConfig(mode="hubert", **SIZES["s"])
    torch.manual_seed(1)
    model = build_student(config, mean=np.full(1024, 0.5, np.float32), std=np.full(1024, 2.0, np.float32)).eval()
    path = tmp_path / "s.pt"
    save_student(path, model, config, {"report": {"note": "x"}})
    loaded = load_student(path)
    x = torch.from_numpy(_speechlike(config.audio_spec().window_samples).reshape(1, 1, -1))
    with torch.inference_mode():
        assert torch.equal(loaded.model(x), model(x))
    assert loaded.config == config and loaded.record["report"] == {"note": "x"}

    with pytest.raises(CheckpointError, match="not a dhm audio student"):
        load_student(teacher)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="not a readable audio student"):
        load_student(tmp_path / "junk.pt")
    blob = torch.load(path, weights_only=True)
    blob["state_dict"]["head.bias"][0] = float("nan")
    torch.save(blob, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="non-finite values in head.bias"):
        load_student(tmp_path / "nan.pt")
    blob = torch.load(path, weights_only=True)
    blob["config"]["channels"] = 32
    torch.save(blob, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="weights do not fit its config"):
        load_student(tmp_path / "wrong.pt")


@pytest.fixture(scope="module")
def audio_student(tmp_path_factory, synth_hubert, teacher) -> Path:
    out = tmp_path_factory.mktemp("distill_audio") / "student"
    r = run_cli(
        "distill-audio", "--data", synth_hubert, "--generator", teacher, "-o", out, "--size", "s",
        "--steps", "150", "--quiet",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    return out


def test_distill_audio_report(audio_student):
    report = json.loads((audio_student / "report.json").read_text())
    assert (audio_student / "audio_student.pt").stat().st_size == report["cost"]["size_bytes"]
    held = report["heldout"]
    assert held["frames"] >= 8
    # the student learned the audio: better than a student that ignores it (the training mean)
    assert held["student"]["cosine"] > held["mean_feature"]["cosine"] + 0.1
    # (12 held-out frames of a 150-step student: seeds 0-1 give 0.75-0.83 of the mean's error)
    assert held["student"]["rel_error"] < held["mean_feature"]["rel_error"] * 0.9
    g = report["generator"]
    assert g["student"]["psnr"] > g["mean_feature"]["psnr"]
    cost = report["cost"]
    assert cost["params"] < 1_000_000 and 0 < cost["gmacs_per_second"] < 0.15
    assert cost["lookahead_ms"] == pytest.approx(162.5) and cost["lookahead_window"] == 8
    md = (audio_student / "report.md").read_text()
    assert "training mean (ignores the audio)" in md and "lookahead" in md


def test_export_ships_the_audio_student(audio_student, teacher, synth_hubert, tmp_path):
    out = tmp_path / "export"
    r = run_cli(
        "export", teacher, "-o", out, "--data", synth_hubert, "--frames", "2", "--target", "mnn",
        "--audio-model", audio_student / "audio_student.pt",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    am = json.loads((out / "manifest.json").read_text())["audio_model"]
    assert am["frontend"] == "dhm-audio-student-v1:dhm-tcn" and am["student"]["family"] == "dhm-tcn"
    (art,) = am["artifacts"]
    assert art["file"] == "audio_fp32.mnn" and art["parity"]["reference"] == "the torch FP32 audio student"
    # within 1e-3 of the features' scale (the bound grows with the largest value above 1)
    assert art["parity"]["passed"] and art["parity"]["max_abs"] <= art["parity"]["tolerance"]["max_abs"] <= 0.05
    # PCM -> the exported student -> frames, through `dhm run --wav`
    pcm, _ = read_wav(synth_hubert / "aud.wav")
    write_wav(tmp_path / "a.wav", pcm[:16000])
    r = run_cli(
        "run", out / "model_fp32.mnn", "--data", synth_hubert, "--wav", tmp_path / "a.wav", "-o", tmp_path / "v.mp4"
    )
    assert r.exit_code == 0, r.output
    assert "audio from audio_fp32.mnn (mnn)" in r.output and "wrote 25 frames" in r.output
    # the variant a runtime asks for must exist: one line, naming what the export holds
    r = run_cli(
        "run", out / "model_fp32.mnn", "--data", synth_hubert, "--wav", tmp_path / "a.wav", "-o", tmp_path / "w.mp4",
        "--audio-variant", "int8",
    )  # fmt: skip
    one_error_line(r, "its audio model has no int8 mnn file (it lists fp32)")
    assert not (tmp_path / "w.mp4").exists()


def _variant_parity(section, name):
    return next(a for a in section["artifacts"] if a["file"] == name)["parity"]


def test_audio_student_variants_keep_the_frames(audio_student, teacher, synth_hubert, tmp_path):
    """fp16/int8 audio files: built by the generator's backends, really INT8, and judged on
    features and on the generator's held-out frames, on x86 and on MNN's aarch64 kernels."""
    from conftest import arm_numerics

    from dhm.data.inputs import heldout_inputs
    from dhm.export.audio import export_audio_model, student_source
    from dhm.export.pipeline import _frame_check
    from dhm.models.checkpoint import load_checkpoint

    gen = load_checkpoint(teacher)
    check = heldout_inputs(synth_hubert, gen.spec, "eval", 4)
    frames = _frame_check(gen.inference_model().eval(), gen.spec, synth_hubert, check)
    source = student_source(audio_student / "audio_student.pt", "hubert")
    tmp = tmp_path / "e"
    tmp.mkdir()
    with arm_numerics():
        section = export_audio_model(
            source, tmp, ["onnx", "mnn"], wav=synth_hubert / "aud.wav", variants=("fp32", "fp16", "int8"), frames=frames
        )
    files = [a["file"] for a in section["artifacts"]]
    assert files == [f"audio_{v}.{f}" for v in ("fp32", "fp16", "int8") for f in ("onnx", "mnn")]
    assert sorted(p.name for p in tmp.iterdir()) == sorted(files)  # no trial file left behind
    size = {a["file"]: a["size_bytes"] for a in section["artifacts"]}
    for f in ("onnx", "mnn"):
        assert size[f"audio_fp16.{f}"] < 0.6 * size[f"audio_fp32.{f}"]
        assert size[f"audio_int8.{f}"] < 0.6 * size[f"audio_fp32.{f}"]
    for name, cosine, frames_db in [
        ("audio_fp16.onnx", 0.999, 50), ("audio_fp16.mnn", 0.999, 50),
        ("audio_int8.onnx", 0.6, 45), ("audio_int8.mnn", 0.8, 45),
    ]:  # fmt: skip
        p = _variant_parity(section, name)
        assert p["cosine"] >= cosine and p["frames"]["psnr"] >= frames_db, (name, p)
        assert p["frames"]["frames"] == 4 and p["passed"]
        if name.endswith(".mnn"):  # the phone's kernels, same gates
            assert "cortex-a76" in p["arm"]["kernels"], p
            assert p["arm"]["cosine"] >= cosine and p["arm"]["frames"]["psnr"] >= frames_db, (name, p["arm"])
    assert "arm" in _variant_parity(section, "audio_fp32.mnn")
    # really INT8 (int8 weights and integer kernels), the PCM filterbank kept in float by KL and the ONNX build
    from dhm.runtime_py.engines import mnn_int8, onnx_int8

    o = onnx_int8.structure(tmp / "audio_int8.onnx")
    assert o.int8_weight_convs == o.convs - 1 and o.qlinear_convs > 0
    m = mnn_int8.structure(tmp / "audio_int8.mnn")
    assert m.label == "int8" and m.int8_convs >= m.convs - 1
    tried = next(a for a in section["artifacts"] if a["file"] == "audio_int8.mnn")["structure"]["tried"]
    assert [t["method"] for t in tried] == ["EMA", "KL"] and all(0 < t["calibration_cosine"] <= 1 for t in tried)


def test_audio_variant_that_misses_its_gate_is_left_out(audio_student, teacher, synth_hubert, tmp_path, monkeypatch):
    """A smaller audio file rides on the generator's --variants: one that misses its gate is
    left out, said and recorded in the manifest, and the export still ships the rest."""
    from dhm.export import audio

    monkeypatch.setitem(audio.VARIANT_MIN_FRAMES_PSNR, "fp16", 200.0)
    out = tmp_path / "e"
    r = run_cli(
        "export", teacher, "-o", out, "--data", synth_hubert, "--frames", "2", "--target", "onnx",
        "--variants", "fp32,fp16", "--audio-model", audio_student / "audio_student.pt",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "audio_fp16.onnx: left out of the export (onnxruntime: the generator's frames driven by" in r.output
    assert "needs >= 200.0 dB" in r.output
    assert (out / "model_fp16.onnx").is_file() and not (out / "audio_fp16.onnx").exists()
    assert sorted(p.name for p in out.glob("audio_*")) == ["audio_fp32.onnx"]  # nothing half-made left behind
    section = json.loads((out / "manifest.json").read_text())["audio_model"]
    assert [a["file"] for a in section["artifacts"]] == ["audio_fp32.onnx"]
    (left,) = section["left_out"]
    assert left["file"] == "audio_fp16.onnx" and left["variant"] == "fp16" and "needs >= 200.0 dB" in left["reason"]
    assert "Left out (missed its gate): audio_fp16.onnx" in (out / "report.md").read_text()
    r = run_cli(
        "run", out / "model_fp16.onnx", "--data", synth_hubert, "--wav", synth_hubert / "aud.wav",
        "-o", tmp_path / "v.mp4", "--audio-variant", "fp16",
    )  # fmt: skip
    one_error_line(r, "its audio model has no fp16 onnx file (it lists fp32); export left it out: onnxruntime:")
    # INT8 audio is calibrated on the dataset's audio
    spec = audio.student_source(audio_student / "audio_student.pt", "hubert").spec
    with pytest.raises(SpecError, match="calibrated on the dataset's audio: pass --data"):
        audio.calibration_windows(spec, None)
    write_wav(tmp_path / "short.wav", np.zeros(spec.window_samples, np.float32))
    with pytest.raises(SpecError, match="too short to calibrate"):
        audio.calibration_windows(spec, tmp_path / "short.wav")


def test_distill_audio_bad_input(synth_hubert, synth_wenet, teacher, audio_student, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(synth_hubert, ds)
    pcm, _ = read_wav(ds / "aud.wav")
    write_wav(ds / "aud.wav", pcm[: pcm.size // 2])
    one_error_line(run_cli("distill-audio", "--data", ds, "-o", tmp_path / "o1"), "feature frames for")
    (ds / "aud.wav").unlink()
    one_error_line(run_cli("distill-audio", "--data", ds, "-o", tmp_path / "o2"), "missing aud.wav")

    extra = tmp_path / "extra"
    extra.mkdir()
    write_wav(extra / "x.wav", pcm[:16000])
    r = run_cli("distill-audio", "--data", synth_hubert, "--audio-dir", extra, "-o", tmp_path / "o3")
    one_error_line(r, "no x_hu.npy beside it")

    short = tmp_path / "short"
    from dhm.data.synth import write_synth_dataset

    write_synth_dataset(short, frames=40, seed=3)
    one_error_line(
        run_cli("distill-audio", "--data", short, "-o", tmp_path / "o4"), "dataset too small for a held-out split"
    )

    r = run_cli("distill-audio", "--data", synth_wenet, "--generator", teacher, "-o", tmp_path / "o5", "--steps", "1")
    one_error_line(r, "a hubert generator; these are wenet features")
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 6))

    # a generator passed as a student, and a wenet student for a hubert generator
    r = run_cli("export", teacher, "-o", tmp_path / "e", "--audio-model", teacher)
    one_error_line(r, "not a dhm audio student")
    from dhm.audio.student import SIZES, StudentConfig, build_student, save_student

    config = StudentConfig(mode="wenet", **SIZES["s"])
    save_student(tmp_path / "w.pt", build_student(config), config, {})
    r = run_cli("export", teacher, "-o", tmp_path / "e", "--audio-model", tmp_path / "w.pt")
    one_error_line(r, "does not fit this generator: audio_model.mode: 'wenet', the generator listens to 'hubert'")
    assert not (tmp_path / "e").exists()


# ------------------------------------------------------------------------ FeatherHuBERT


def _feather_checkpoint(path: Path, size: str = "s", bare: bool = False, seed: int = 0) -> Path:
    """A checkpoint in FeatherTalk's own layout ({"model": state, "config": {...}}), random weights."""
    import torch

    from dhm.audio.feather_hubert import FEATHER_SIZES, FeatherConfig, build_feather

    torch.manual_seed(seed)
    config = FeatherConfig(**FEATHER_SIZES[size])
    encoder, _ = build_feather(config)
    state = encoder.state_dict()
    blob = state if bare else {"model": state, "config": {"channels": config.channels, "num_blocks": config.num_blocks}}
    torch.save(blob, path)
    return path


def test_featherhubert_is_feathertalks_architecture():
    """FeatherTalk's published 256-channel, 8-block encoder: 3.36 M parameters, 0.43 GMACs
    per second of audio; one [1,720] call gives one frame's two tokens."""
    import torch

    from dhm.metrics import count_macs, count_params
    from dhm.audio.feather_hubert import FEATHER_SIZES, FeatherConfig, build_feather

    config = FeatherConfig(**FEATHER_SIZES["m"])
    encoder, windowed = build_feather(config)
    assert count_params(encoder) == 3_364_096
    assert count_macs(encoder, torch.zeros(1, 1, 16000)) == pytest.approx(0.432e9, rel=0.01)
    assert config.audio_spec().window_samples == 720
    assert windowed(torch.zeros(1, 1, 720)).shape == (1, 2, 1024)
    # 16000 samples: HuBERT's (16000 - 80) // 320 = 49 tokens
    assert encoder(torch.randn(1, 1, 16000)).shape == (1, 49, 1024)


def test_featherhubert_checkpoints_load_and_refuse(tmp_path):
    import torch

    from dhm.audio.student import load_student

    a = load_student(_feather_checkpoint(tmp_path / "f.pt"))
    b = load_student(_feather_checkpoint(tmp_path / "bare.pt", bare=True))
    assert a.config.channels == b.config.channels == 64 and a.config.num_blocks == 4
    assert a.audio_spec.frontend == "featherhubert" and a.audio_spec.consistency_errors("hubert") == []
    x = torch.from_numpy(_speechlike(720).reshape(1, 1, -1))
    with torch.inference_mode():
        assert torch.equal(a.model(x), b.model(x))
        # the window's own normalisation: the input's gain does not matter
        torch.testing.assert_close(a.model(3 * x), a.model(x), atol=1e-4, rtol=1e-4)
    blob = torch.load(tmp_path / "f.pt", weights_only=True)
    blob["config"]["channels"] = 128
    torch.save(blob, tmp_path / "lies.pt")
    with pytest.raises(CheckpointError, match="its config says channels=128, its weights 64"):
        load_student(tmp_path / "lies.pt")
    blob = torch.load(tmp_path / "f.pt", weights_only=True)
    blob["model"]["proj.bias"][3] = float("inf")
    torch.save(blob, tmp_path / "inf.pt")
    with pytest.raises(CheckpointError, match="non-finite values in proj.bias"):
        load_student(tmp_path / "inf.pt")
    blob = torch.load(tmp_path / "f.pt", weights_only=True)
    del blob["model"]["encoder.1.dw_conv.weight"]
    torch.save(blob, tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="weights do not fit FeatherHuBERT"):
        load_student(tmp_path / "cut.pt")


def test_featherhubert_exports_into_the_audio_slot(teacher, synth_hubert, tmp_path):
    ckpt = _feather_checkpoint(tmp_path / "feather.pt")
    out = tmp_path / "export"
    r = run_cli(
        "export", teacher, "-o", out, "--data", synth_hubert, "--frames", "2", "--target", "mnn", "--audio-model", ckpt
    )
    assert r.exit_code == 0, r.output
    am = json.loads((out / "manifest.json").read_text())["audio_model"]
    assert am["frontend"] == "featherhubert" and am["input"]["shape"] == [1, 1, 720]
    assert am["artifacts"][0]["parity"]["passed"]
    pcm, _ = read_wav(synth_hubert / "aud.wav")
    write_wav(tmp_path / "a.wav", pcm[:8000])
    r = run_cli(
        "run", out / "model_fp32.mnn", "--data", synth_hubert, "--wav", tmp_path / "a.wav", "-o", tmp_path / "v.mp4"
    )
    assert r.exit_code == 0, r.output
    assert "wrote 12 frames" in r.output


@pytest.mark.slow
def test_distill_audio_featherhubert_measures_and_chooses_its_window(synth_hubert, tmp_path):
    out = tmp_path / "fh"
    r = run_cli(
        "distill-audio", "--data", synth_hubert, "-o", out, "--family", "featherhubert", "--size", "s",
        "--steps", "4", "--quiet",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    choices = report["streaming_choices"]
    assert {(c["context"], c["normalize"]) for c in choices} == {(c, n) for c in (0, 1, 3) for n in ("window", "none")}
    (kept,) = [c for c in choices if c.get("chosen")]
    assert kept["vs_teacher"]["cosine"] == max(c["vs_teacher"]["cosine"] for c in choices)
    assert all(c["lookahead_ms_w8"] <= 200 for c in choices)
    from dhm.audio.student import load_student

    loaded = load_student(out / "audio_student.pt")
    assert (loaded.config.context, loaded.config.normalize) == (kept["context"], kept["normalize"])
    assert "FeatherHuBERT on the phone" in (out / "report.md").read_text()


def _student_state(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_distill_audio_ctrl_c_then_resume_equals_an_uninterrupted_run(synth_hubert, tmp_path):
    """Ctrl-C saves the step in flight; --resume continues bit-for-bit (batches depend on
    (seed, step, rank) only); a finished run leaves no resume state; other settings refuse."""
    import os
    import signal

    import torch

    from dhm.distill.audio import AudioDistillSettings, AudioStudentChoice, distill_audio
    from dhm.distill.loop import Interrupted, TrainingError

    settings = AudioDistillSettings(steps=24, batch_size=4)
    kw = dict(student=AudioStudentChoice(size="s"), settings=settings, progress=False)
    distill_audio(synth_hubert, tmp_path / "whole", **kw)

    def interrupt_at(step: int) -> None:
        if step == 10:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted, match="state saved after step 10 .* --resume"):
        distill_audio(synth_hubert, tmp_path / "cut", on_step=interrupt_at, **kw)
    assert sorted(p.name for p in (tmp_path / "cut").iterdir()) == [".dhm-output.json", "resume.pt", "run.json"]
    # a different setting cannot continue this run
    other = AudioDistillSettings(steps=24, batch_size=4, lr=1e-3)
    with pytest.raises(TrainingError, match="--resume from a run with other settings"):
        distill_audio(
            synth_hubert, tmp_path / "cut", student=kw["student"], settings=other, progress=False, resume=True
        )
    report = distill_audio(synth_hubert, tmp_path / "cut", resume=True, **kw)
    assert report["train"]["resumed_from_step"] == 10
    whole, cut = (
        _student_state(tmp_path / "whole" / "audio_student.pt"),
        _student_state(tmp_path / "cut" / "audio_student.pt"),
    )
    assert whole.keys() == cut.keys() and all(torch.equal(whole[k], cut[k]) for k in whole)
    assert not (tmp_path / "cut" / "resume.pt").exists()
    r = run_cli("distill-audio", "--data", synth_hubert, "-o", tmp_path / "cut", "--size", "s", "--resume")
    one_error_line(r, "nothing to resume")


@pytest.mark.slow
def test_distill_audio_under_torchrun(synth_hubert, tmp_path):
    import subprocess
    import sys

    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "ddp"
    r = subprocess.run(
        [str(torchrun), "--nproc_per_node=2", "--master_port=29541", str(Path(sys.executable).with_name("dhm")),
         "distill-audio", "--data", str(synth_hubert), "-o", str(out), "--size", "s", "--steps", "6",
         "--batch-size", "4", "--quiet"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["train"]["world_size"] == 2 and report["train"]["steps"] == 6
    assert (out / "audio_student.pt").is_file() and not (out / "resume.pt").exists()
