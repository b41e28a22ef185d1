"""`dhm features`: HuBERT and wenet teacher features exactly as Ultralight computes them.

The teachers are stand-ins built here (tests/audio_teachers.py): a one-layer HubertModel with
random weights (the real transformers code path) and an ONNX with the wenet encoder's exact
I/O signature. The framing is checked against hand-computed cases."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from audio_teachers import standin_wenet_encoder, tiny_hubert
from conftest import run_cli
from helpers import one_error_line

from dhm.audio.frontend import write_wav
from dhm.audio.teacher import (
    WENET_PAD_AFTER,
    WENET_PAD_BEFORE,
    HubertTeacher,
    WenetTeacher,
    fbank_frames,
    hubert_pieces,
    hubert_steps,
    kaldi_fbank,
    normalize_utterance,
    pcm_as_ultralight_int16,
    wenet_windows,
)
from dhm.errors import AudioTeacherError

pytest.importorskip("transformers", reason="the audio extra (pip install 'dhm[audio]'); make test installs it")


@pytest.fixture(scope="module")
def hubert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_hubert(tmp_path_factory.mktemp("hubert") / "tiny-hubert-random")


@pytest.fixture(scope="module")
def wenet_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return standin_wenet_encoder(tmp_path_factory.mktemp("wenet") / "encoder_standin.onnx")


def speech(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(16000 * seconds)
    t = np.arange(n) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(n)).astype(
        np.float32
    )


# ------------------------------------------------------------------------ framing, by hand


def test_hubert_framing_hand_computed() -> None:
    assert hubert_steps(16000) == 49  # (16000 - 80) // 320
    assert hubert_steps(400) == 1 and hubert_steps(399) == 0
    # two full 20 s pieces, each 80 samples longer than 20 s, then a 1000-sample rest
    assert hubert_pieces(640_000 + 1000) == [(0, 320_080), (320_000, 640_080), (640_000, 641_000)]
    # a rest shorter than one kernel is not run; Ultralight pads the missing step with zeros
    assert hubert_pieces(640_000 + 300) == [(0, 320_080), (320_000, 640_080)]
    assert hubert_pieces(300) == [] and hubert_pieces(5000) == [(0, 5000)]


def test_wenet_framing_hand_computed() -> None:
    # 320 ms before, 350 ms after; 25 ms / 10 ms fbank frames
    assert (WENET_PAD_BEFORE, WENET_PAD_AFTER) == (5120, 5600)
    assert fbank_frames(10_720) == 65 and fbank_frames(399) == 0
    # `while end < feat_length`: 65 fbank frames -> one window, 70 -> two (ends 67, 72)
    assert wenet_windows(65) == [0] and wenet_windows(70) == [0, 5] and wenet_windows(72) == [0, 5]
    assert wenet_windows(73) == [0, 5, 10]
    # an utterance of m 20 fps frames gives m + 1 windows (Ultralight's count)
    for m in (0, 1, 7, 50):
        assert len(wenet_windows(fbank_frames(800 * m + 10_720))) == m + 1
    # float -> int16 as upstream: x * 32767, truncated toward zero
    got = pcm_as_ultralight_int16(np.array([1 / 32768, -1 / 32768, 0.5, -1.0]))
    assert got.tolist() == [0.0, 0.0, 16383.0, -32767.0]


# ------------------------------------------------------------------------ HuBERT


def test_hubert_pieces_join_exactly(hubert_dir: Path) -> None:
    """The pieces' conv front-end steps, joined, are the whole utterance's: the overlap of
    kernel - stride samples is exactly right (10-step pieces here, 1000 upstream)."""
    import torch

    teacher = HubertTeacher(hubert_dir, piece_steps=10)
    x = normalize_utterance(speech(0.5))
    with torch.inference_mode():
        whole = teacher.model.feature_extractor(torch.from_numpy(x)[None])[0].T.numpy()
        parts = [
            teacher.model.feature_extractor(torch.from_numpy(x[a:b])[None])[0].T.numpy()
            for a, b in hubert_pieces(x.size, 10)
        ]
    joined = np.concatenate(parts)
    assert len(parts) == 3 and joined.shape == whole.shape == (hubert_steps(x.size), 16)
    np.testing.assert_allclose(joined, whole, atol=1e-5)


def test_hubert_features_are_the_models_last_hidden_state(hubert_dir: Path) -> None:
    import torch

    pcm = speech(0.98)  # 15600 samples: 48 steps -> 24 frames
    teacher = HubertTeacher(hubert_dir)
    feats = teacher.features(pcm)
    with torch.inference_mode():
        ref = teacher.model(torch.from_numpy(normalize_utterance(pcm))[None]).last_hidden_state[0].numpy()
    assert feats.shape == (24, 2, 1024) and feats.dtype == np.float32
    np.testing.assert_allclose(feats.reshape(-1, 1024), ref, atol=1e-5)
    # an odd step count is padded with one zero step (2026's make_even_first_dim)
    odd = teacher.features(speech(1.0))  # 49 steps
    assert odd.shape == (25, 2, 1024) and not odd[-1, 1].any() and odd[-1, 0].any()
    # normalisation is Wav2Vec2FeatureExtractor's: a scaled utterance gives the same features
    np.testing.assert_allclose(teacher.features(pcm * 0.25), feats, atol=1e-4)


def test_hubert_preprocessor_config_is_read(hubert_dir: Path, tmp_path: Path) -> None:
    import shutil

    raw_dir = shutil.copytree(hubert_dir, tmp_path / "raw")
    (raw_dir / "preprocessor_config.json").write_text(json.dumps({"do_normalize": False}))
    pcm = speech(0.5)
    assert not HubertTeacher(raw_dir).normalize
    assert not np.allclose(HubertTeacher(raw_dir).features(pcm), HubertTeacher(hubert_dir).features(pcm), atol=1e-3)


# ------------------------------------------------------------------------ wenet


def test_wenet_features_follow_ultralights_loop(wenet_onnx: Path) -> None:
    """Against a literal transcription of wenet_infer.py's main loop on the same fbank."""
    import onnxruntime as ort

    pcm = speech(1.3)
    feats = WenetTeacher(wenet_onnx).features(pcm)
    assert feats.shape == (27, 16, 512)  # 26 frames at 20 fps, + 1

    waveform = (pcm.astype(np.float64) * 32767).astype(np.int16)
    waveform = np.concatenate([np.zeros([32 * 160]), waveform, np.zeros([35 * 160])], axis=0)
    waveform_feat = kaldi_fbank(waveform)[None]
    feat_length = waveform_feat.shape[1]
    sess = ort.InferenceSession(str(wenet_onnx))
    offset = np.ones((1,), dtype=np.int64) * 100
    att_cache, cnn_cache = np.zeros([3, 8, 16, 128], np.float32), np.zeros([3, 1, 512, 14], np.float32)
    aud, start, end = [], 0, 0
    while end < feat_length:
        end = start + 67
        feat = waveform_feat[:, start:end, :]
        if feat.shape[1] < 67:
            feat = np.concatenate((feat, np.zeros([1, 67 - feat.shape[1], 80])), axis=1)
        start += 5
        y = sess.run(
            None, {"chunk": feat.astype(np.float32), "offset": offset, "att_cache": att_cache, "cnn_cache": cnn_cache}
        )[0][0]
        aud.append(y)
    np.testing.assert_array_equal(feats, np.array(aud, dtype=np.float32))


def test_kaldi_fbank_shape_and_floor() -> None:
    fb = kaldi_fbank(np.zeros(16000, np.float32))
    assert fb.shape == (98, 80)
    loud = kaldi_fbank(pcm_as_ultralight_int16(speech(1.0)))
    assert loud.shape == (98, 80) and loud.mean() > fb.mean() + 10  # log energies, not a constant


# ------------------------------------------------------------------------ CLI and bad input


def test_cli_dataset_folder_and_wav(synth_hubert: Path, hubert_dir: Path, wenet_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = run_cli("features", synth_hubert, "--hubert", hubert_dir, "-o", out)
    assert r.exit_code == 0, r.output
    n_images = len(list((synth_hubert / "full_body_img").glob("*.jpg")))
    hu = np.load(out / "aud_hu.npy")
    assert abs(hu.shape[0] - n_images) <= 2 and hu.shape[1:] == (2, 1024)
    # a stereo 48 kHz WAV: first channel, resampled
    pcm = speech(0.6)
    left = np.repeat(pcm, 3)
    stereo = tmp_path / "stereo.wav"
    import wave

    with wave.open(str(stereo), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(48000)
        frames = np.stack([left, np.zeros_like(left)], axis=1)
        w.writeframes((np.clip(frames, -1, 1) * 32767).astype("<i2").tobytes())
    r = run_cli("features", stereo, "--wenet", wenet_onnx)
    assert r.exit_code == 0, r.output
    assert "resampled from 48000 Hz" in r.output
    we = np.load(tmp_path / "stereo_wenet.npy")
    assert we.shape == (13, 16, 512)  # 0.6 s: 12 frames + 1
    assert np.abs(we).max() > 0


def test_bad_teachers_and_inputs(synth_hubert: Path, hubert_dir: Path, wenet_onnx: Path, tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    write_wav(wav, speech(0.5))
    not_hubert = tmp_path / "w2v"
    not_hubert.mkdir()
    (not_hubert / "config.json").write_text(json.dumps({"model_type": "wav2vec2", "hidden_size": 1024}))
    one_error_line(run_cli("features", wav, "--hubert", not_hubert), "a wav2vec2 model, not a HubertModel")
    one_error_line(run_cli("features", wav, "--hubert", tmp_path), "no readable config.json")
    narrow = tmp_path / "narrow"
    narrow.mkdir()
    (narrow / "config.json").write_text(json.dumps({"model_type": "hubert", "hidden_size": 768}))
    one_error_line(run_cli("features", wav, "--hubert", narrow), "hidden size 768")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((hubert_dir / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    one_error_line(run_cli("features", wav, "--hubert", broken), "HubertModel could not load it")

    # an ONNX that is not a wenet encoder: dhm's own audio model, and one with the wrong width
    from dhm.audio.geometry import logmel_module, logmel_spec
    from dhm.runtime_py.engines.torch_onnx import ModelIO, export_onnx

    spec = logmel_spec("wenet")
    other = tmp_path / "audio.onnx"
    io = ModelIO({"pcm": (1, 1, spec.window_samples)}, ["rows"])
    export_onnx(logmel_module(spec), io, other, check_inputs=[], simplify=False)
    one_error_line(run_cli("features", wav, "--wenet", other), "not a wenet streaming encoder")
    narrow_onnx = standin_wenet_encoder(tmp_path / "narrow.onnx", out_width=256)
    one_error_line(run_cli("features", wav, "--wenet", narrow_onnx), "gives [16, 256] per 67-frame window")
    one_error_line(run_cli("features", wav, "--wenet", tmp_path / "a.wav"), "not a loadable ONNX model")

    # exactly one teacher; inputs that are not there; existing outputs kept
    assert run_cli("features", wav).exit_code == 2
    one_error_line(run_cli("features", tmp_path / "nope.wav", "--wenet", wenet_onnx), "no such WAV file")
    (tmp_path / "a_wenet.npy").write_bytes(b"mine")
    one_error_line(run_cli("features", wav, "--wenet", wenet_onnx), "exists; --force replaces it")
    assert (tmp_path / "a_wenet.npy").read_bytes() == b"mine"
    assert run_cli("features", wav, "--wenet", wenet_onnx, "--force").exit_code == 0
    assert np.load(tmp_path / "a_wenet.npy").shape == (11, 16, 512)
    one_error_line(run_cli("features", tmp_path / "a.wav", "--wenet", "x", "--hubert", "y"), "exactly one teacher")

    # a dataset whose audio is not its video's: counts far apart, nothing written
    ds = tmp_path / "ds"
    import shutil

    shutil.copytree(synth_hubert, ds)
    write_wav(ds / "aud.wav", speech(1.0))
    one_error_line(run_cli("features", ds, "--hubert", hubert_dir, "-o", tmp_path / "o"), "feature frames for")
    assert not (tmp_path / "o" / "aud_hu.npy").exists()
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == []


def test_missing_extra_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hubert_dir: Path) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(AudioTeacherError, match=r"pip install 'dhm\[audio\]'"):
        HubertTeacher(hubert_dir)
