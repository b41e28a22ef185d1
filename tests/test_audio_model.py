"""The audio front end as a model, and PCM streamed to frames (dhm.audio.geometry, PcmSession)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import run_cli
from helpers import one_error_line

from dhm.audio.geometry import AudioModelSpec, logmel_module, logmel_rows_numpy, logmel_spec
from dhm.runtime_py.streaming import PcmFeatureStream, stream_features
from dhm.audio.frontend import SAMPLE_RATE, features_for_mode, read_wav, write_wav
from dhm.errors import SpecError


def _speechlike(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SAMPLE_RATE
    voiced = np.sin(2 * np.pi * 140 * t) + 0.5 * np.sin(2 * np.pi * 280 * t + 1.0)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t)
    pcm = 0.3 * voiced * envelope + 0.02 * rng.standard_normal(n)
    pcm[n // 3 : n // 3 + 1600] = 0.0  # a pause: the log's floor
    return pcm.astype(np.float32)


@pytest.mark.parametrize("mode", ["hubert", "wenet"])
@pytest.mark.parametrize("n", [0, 100, 639, 640 * 7 + 5, 801, 16000 + 337])
def test_any_chunking_gives_the_offline_features(mode, n):
    pcm = _speechlike(n)
    offline = features_for_mode(pcm, mode)
    for rows_per_call in (1, 3):
        spec = logmel_spec(mode, rows_per_call)
        rows = lambda w, s=spec: logmel_rows_numpy(s, w)  # noqa: E731
        whole = stream_features(spec, rows, pcm)
        assert whole.shape == offline.shape
        if len(offline):
            # the same definition, computed per window (float32 projection) vs per utterance
            assert np.abs(whole - offline).max() <= 1e-4
        for chunk in (1 if n < 1000 else 7, 160, 319, 1601):
            assert np.array_equal(stream_features(spec, rows, pcm, chunk=chunk), whole), (chunk, rows_per_call)


def test_frames_come_out_as_soon_as_their_rows_exist():
    spec = logmel_spec("hubert")
    stream = PcmFeatureStream(spec, lambda w: logmel_rows_numpy(spec, w))
    # frame 0 needs steps 0 and 1: hops 0-3, i.e. samples up to 3*160+255 = 735
    assert len(stream.push(np.zeros(735, np.float32))) == 0
    assert len(stream.push(np.zeros(1, np.float32))) == 1
    assert spec.lookahead_samples(8) == 3 * 640 + 736 - 640  # three more frames, then frame 3's window
    assert spec.lookahead_ms(8) == pytest.approx(126.0)
    assert logmel_spec("wenet").lookahead_ms(8) == pytest.approx(186.0)
    stream.finish()
    with pytest.raises(SpecError, match="after finish"):
        stream.push(np.zeros(10, np.float32))


@pytest.mark.parametrize("mode", ["hubert", "wenet"])
def test_the_front_end_network_computes_the_numpy_front_end(mode):
    import torch

    spec = logmel_spec(mode)
    net = logmel_module(spec)
    rng = np.random.default_rng(1)
    for window in (
        np.zeros(spec.window_samples, np.float32),
        _speechlike(spec.window_samples, 2),
        np.clip(rng.normal(0, 0.9, spec.window_samples), -1, 1).astype(np.float32),
    ):
        with torch.no_grad():
            got = net(torch.from_numpy(window)[None, None]).numpy()[0]
        want = logmel_rows_numpy(spec, window)
        assert got.shape == want.shape == (spec.rows_per_call, spec.row_size)
        assert np.abs(got - want).max() <= 1e-4


def test_audio_model_spec_round_trips_and_refuses_the_other_generator():
    spec = logmel_spec("wenet")
    assert AudioModelSpec.from_dict(spec.to_dict()) == spec
    assert spec.consistency_errors("wenet") == []
    assert "listens to 'hubert'" in spec.consistency_errors("hubert")[0]
    bad = AudioModelSpec.from_dict({**spec.to_dict(), "frame_rows": {"count": 8, "stride": 5, "offset": -4}})
    assert "8 rows of 512 per frame" in bad.consistency_errors("wenet")[0]
    bad = AudioModelSpec.from_dict({**spec.to_dict(), "row_hop": 320})
    assert "is not one 20 fps frame" in bad.consistency_errors("wenet")[0]


# ----------------------------------------------------------------- exported


@pytest.fixture(scope="module")
def exported_teacher(tmp_path_factory, teacher, synth_hubert):
    out = tmp_path_factory.mktemp("audio") / "export"
    r = run_cli("export", teacher, "-o", out, "--data", synth_hubert, "--frames", "2")
    assert r.exit_code == 0, r.output
    assert "audio model (dhm-logmel-v1" in r.output
    return out


def test_export_writes_the_audio_model_into_the_manifest(exported_teacher):
    manifest = json.loads((exported_teacher / "manifest.json").read_text())
    am = manifest["audio_model"]
    assert AudioModelSpec.from_dict(am) == logmel_spec("hubert")
    files = {a["file"]: a for a in am["artifacts"]}
    assert set(files) == {"audio_fp32.onnx", "audio_fp32.mnn"}
    for a in files.values():
        assert (exported_teacher / a["file"]).stat().st_size == a["size_bytes"]
        assert a["parity"]["passed"] and a["parity"]["max_abs"] <= 1e-4 and a["parity"]["windows"] >= 12
    # STFT (2*257 x 512) + mel (80 x 257) + projection (1024 x 160) per 50 Hz step
    assert am["macs_per_call"] == 2 * 257 * 512 * 2 + 80 * 257 * 2 + 1024 * 160


@pytest.mark.parametrize("model", ["model_fp32.mnn", "model_fp32.onnx"])
def test_pcm_session_frames_equal_offline_rendering(exported_teacher, synth_hubert, model):
    """PCM through the exported audio model, streamed in odd chunks, renders the frames
    that the training features render offline (within 1 LSB), for any chunking."""
    from dhm.data.dataset import open_dataset
    from dhm.runtime_py.engines import conventions_of, load
    from dhm.runtime_py.streaming import audio_front_end
    from dhm.runtime_py.pipeline import AvatarPipeline
    from dhm.runtime_py.session import PcmSession

    engine = load(exported_teacher / model, threads=1)
    conv = conventions_of(engine)
    ds = open_dataset(synth_hubert)
    pcm, _ = read_wav(synth_hubert / "aud.wav")
    pcm = pcm[: 640 * 10 + 200]  # 10 frames and a bit
    offline = list(AvatarPipeline(engine, ds, conv).frames(features_for_mode(pcm, "hubert")))
    front = audio_front_end(engine)
    assert front.description.startswith("audio_fp32.")
    runs = []
    for chunk in (97, 320, pcm.size):
        session = PcmSession(AvatarPipeline(engine, ds, conv), front)
        frames, first_at = [], None
        for start in range(0, pcm.size, chunk):
            got = session.push_pcm(pcm[start : start + chunk])
            if got and first_at is None:
                first_at = start + chunk
            frames += got
        frames += session.finish()
        runs.append(frames)
        if chunk == 97:  # frame 0 came out once the PCM reached its lookahead, not at the end
            assert first_at is not None and first_at - 97 < 640 + session.audio.spec.lookahead_samples(8) <= first_at
    for frames in runs:
        assert len(frames) == len(offline) == 10
        for a, b in zip(frames, offline, strict=True):
            assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    for frames in runs[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(frames, runs[0], strict=True))


def test_run_wav_streams_through_the_audio_model(exported_teacher, synth_hubert, tmp_path):
    pcm, _ = read_wav(synth_hubert / "aud.wav")
    wav48 = tmp_path / "a48.wav"
    from dhm.audio.frontend import resample

    write_wav(wav48, resample(pcm[:16000], 16000, 48000), rate=48000)
    r = run_cli(
        "run", exported_teacher / "model_fp32.mnn", "--data", synth_hubert, "--wav", wav48, "-o", tmp_path / "v.mp4"
    )
    assert r.exit_code == 0, r.output
    assert "resampled to 16000 Hz" in r.output and "audio from audio_fp32.mnn (mnn)" in r.output
    # the voice detector decides frame i + 2 (the fade) 10 ms after the generator's own lookahead
    assert "wrote 25 frames" in r.output and "lookahead 136 ms" in r.output


def test_audio_model_bad_input(exported_teacher, synth_hubert, tmp_path):
    def run_wav(folder, wav, out):
        return run_cli("run", folder / "model_fp32.mnn", "--data", synth_hubert, "--wav", wav, "-o", tmp_path / out)

    short = tmp_path / "short.wav"
    write_wav(short, np.zeros(1600, np.float32))  # 0.1 s: two 40 ms frames
    r = run_wav(exported_teacher, short, "s.mp4")
    assert r.exit_code == 0 and "wrote 2 frames" in r.output, r.output
    tiny = tmp_path / "tiny.wav"
    write_wav(tiny, np.zeros(300, np.float32))
    one_error_line(run_wav(exported_teacher, tiny, "t.mp4"), "too short for one video frame")
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"garbage")
    one_error_line(run_wav(exported_teacher, garbage, "g.mp4"), "not a readable WAV file (truncated, or not RIFF")
    # a manifest without an audio model: say which command makes one
    bare = tmp_path / "bare"
    shutil.copytree(exported_teacher, bare)
    m = json.loads((bare / "manifest.json").read_text())
    del m["audio_model"]
    (bare / "manifest.json").write_text(json.dumps(m))
    one_error_line(run_wav(bare, synth_hubert / "aud.wav", "b.mp4"), "lists no audio model")
    # an audio model that disagrees with the generator
    m = json.loads((exported_teacher / "manifest.json").read_text())
    m["audio_model"]["frame_rows"]["count"] = 4
    (bare / "manifest.json").write_text(json.dumps(m))
    one_error_line(run_wav(bare, synth_hubert / "aud.wav", "b.mp4"), "4 rows of 1024 per frame")
    # a replaced audio model file
    (bare / "manifest.json").write_text((exported_teacher / "manifest.json").read_text())
    (bare / "audio_fp32.mnn").write_bytes(b"\x00" * 64)
    one_error_line(run_wav(bare, synth_hubert / "aud.wav", "b.mp4"), "audio_fp32.mnn: sha256 differs")
    assert not any(tmp_path.glob("*.mp4")) or sorted(p.name for p in tmp_path.glob("*.mp4")) == ["s.mp4"]


def test_soak_streams_speech_and_silence_without_drift(exported_teacher, synth_hubert, tmp_path):
    """A short soak (the hour runs on demand): every frame delivered, memory flat after warm-up,
    create/destroy cycles that give their memory back; one line for a request it cannot run."""
    from dhm.bench.soak import markdown, run_soak

    r = run_soak(exported_teacher / "model_fp32.mnn", synth_hubert, seconds=30, threads=1, cycles=15)
    s = r["stream"]
    assert s["frames"] == s["frames_expected"] == 750 and 0 < s["inferred"] < 750
    assert {s["latency_first_ms"]["frames"], s["latency_last_ms"]["frames"]} == {188, 187}  # a quarter each
    assert r["memory_rise_mb"] < 5 and r["cycles"]["rise_mb"] < 5, r
    assert "every expected frame delivered: 750 of 750 (met)" in markdown(r)
    out = run_cli("bench", exported_teacher, "--data", synth_hubert, "--soak", "30")
    assert out.exit_code != 0 and "runs one model file" in out.output
    out = run_cli("bench", exported_teacher / "model_fp32.mnn", "--soak", "30")
    assert out.exit_code != 0 and "needs one MODEL" in out.output


def test_export_ships_the_voice_detector_and_runtimes_use_it(exported_teacher, synth_hubert, tmp_path):
    """silero-vad ships as vad.onnx/vad.mnn (rate fixed, static shapes), validated against the
    wheel's model; the runtime runs the export's own file and decides as the wheel does; a
    manifest or file that disagrees is one line."""
    import shutil

    from dhm.runtime_py.engines import load
    from dhm.runtime_py.idle import shipped_detector
    from dhm.runtime_py.vad import SileroVad

    vad = json.loads((exported_teacher / "manifest.json").read_text())["vad"]
    assert (vad["hop"], vad["context"], vad["inputs"]["input"]) == (512, 64, [1, 576])
    assert {a["file"] for a in vad["artifacts"]} == {"vad.onnx", "vad.mnn"}
    for a in vad["artifacts"]:
        assert a["parity"]["passed"] and a["parity"]["same_decisions"] and a["parity"]["max_abs_prob"] <= 1e-4
        assert 0.2 < a["parity"]["speech_share"] < 0.95  # the check clip has speech and pauses
    pcm = read_wav(synth_hubert / "aud.wav")[0][: 3 * 16000]
    for name in ("model_fp32.mnn", "model_fp32.onnx"):
        detector = shipped_detector(load(exported_teacher / name, threads=1))()
        assert detector.describe().startswith(f"silero-vad [vad.{name.split('.')[-1]}")
        assert np.array_equal(detector.run(pcm), SileroVad().run(pcm))
    wav = tmp_path / "a.wav"
    write_wav(wav, pcm)
    bad_hop = tmp_path / "bad_hop"
    shutil.copytree(exported_teacher, bad_hop)
    m = json.loads((bad_hop / "manifest.json").read_text())
    m["vad"]["hop"] = 256
    (bad_hop / "manifest.json").write_text(json.dumps(m))
    r = run_cli("run", bad_hop / "model_fp32.mnn", "--data", synth_hubert, "--wav", wav, "-o", tmp_path / "a.mp4")
    assert r.exit_code != 0 and "vad" in r.output and "Traceback" not in r.output, r.output
    replaced = tmp_path / "replaced"
    shutil.copytree(exported_teacher, replaced)
    shutil.copy(replaced / "audio_fp32.mnn", replaced / "vad.mnn")
    r = run_cli("run", replaced / "model_fp32.mnn", "--data", synth_hubert, "--wav", wav, "-o", tmp_path / "b.mp4")
    assert r.exit_code != 0 and "vad.mnn: sha256 differs" in r.output, r.output
    assert not (tmp_path / "a.mp4").exists() and not (tmp_path / "b.mp4").exists()
