import numpy as np
import pytest

from dhm.audio.frontend import N_MELS, SAMPLE_RATE, features_for_mode, log_mel, mel_filterbank
from dhm.data.split import split_frames
from dhm.errors import DatasetError
from dhm.metrics import image_quality, mouth_psnr, psnr, ssim


def test_split_blocks_guard_and_disjointness():
    s = split_frames(300, block=25, every=6, guard=4)
    held = set(s.heldout)
    assert held == set(range(75, 100)) | set(range(225, 250))
    assert set(s.eval) == set(range(75, 100)) and set(s.calib) == set(range(225, 250))
    train = set(s.train)
    assert not train & held
    # guard band: no training frame within 4 frames of a held-out block
    for f in train:
        assert all(abs(f - h) > 4 for h in (75, 99, 225, 249))
    assert split_frames(300, guard=4) == s  # deterministic
    # the default guard is the widest window's half (i-8 … i+7), whatever the model
    wide = split_frames(300)
    assert wide.eval == s.eval and wide.calib == s.calib
    assert all(abs(f - h) > 8 for f in wide.train for h in (75, 99, 225, 249))


def test_split_too_small():
    with pytest.raises(DatasetError, match="too small"):
        split_frames(40)


def test_short_clip_halves_its_single_block():
    s = split_frames(80, block=25)
    assert s.eval and s.calib and not set(s.eval) & set(s.calib)


def test_psnr_known_values():
    a = np.zeros((4, 4))
    b = np.full((4, 4), 0.1)
    assert psnr(a, b) == pytest.approx(20.0)  # mse 0.01 -> 20 dB
    assert psnr(a.astype(np.uint8), np.full((4, 4), 255, np.uint8), data_range=255) == pytest.approx(0.0)
    assert psnr(a, a) == float("inf")


def test_ssim_known_values():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (3, 32, 32))
    assert ssim(x, x) == pytest.approx(1.0)
    # constant images: SSIM reduces to the luminance term (2ab + c1) / (a^2 + b^2 + c1)
    a, b, c1 = 0.2, 0.6, 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim(np.full((20, 20), a), np.full((20, 20), b)) == pytest.approx(expected, rel=1e-9)
    assert ssim(x, 1 - x) < 0.0


def test_mouth_psnr_looks_only_inside_the_mask():
    a = np.zeros((3, 160, 160))
    b = a.copy()
    b[:, 0:4, :] = 1.0  # outside the mouth rectangle
    assert mouth_psnr(a, b) == float("inf") and psnr(a, b) < 30
    b[:, 100, 100] = 0.5
    assert mouth_psnr(a, b) < float("inf")
    q = image_quality(a, b)
    assert q.max_abs == 1.0


def test_log_mel_puts_a_tone_in_the_right_band():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = 0.5 * np.sin(2 * np.pi * 1000.0 * t)
    mel = log_mel(tone)
    assert mel.shape[1] == N_MELS
    peak = int(np.argmax(mel[50]))
    centres = (mel_filterbank() * np.fft.rfftfreq(512, 1 / SAMPLE_RATE)).sum(1) / mel_filterbank().sum(1)
    assert abs(centres[peak] - 1000.0) < 120.0


def test_feature_layouts():
    samples = np.random.default_rng(0).standard_normal(SAMPLE_RATE * 2).astype(np.float32) * 0.1
    hu = features_for_mode(samples, "hubert")
    we = features_for_mode(samples, "wenet")
    assert hu.shape == (50, 2, 1024) and hu.dtype == np.float32
    assert we.shape == (40, 16, 512)
    # causal prefix: features of the first frames do not change when more audio follows
    hu_short = features_for_mode(samples[:SAMPLE_RATE], "hubert")
    assert np.allclose(hu_short[:20], hu[:20], atol=1e-5)


@pytest.mark.parametrize("rate", [44100, 48000])
def test_resampling_keeps_speech_and_drops_what_16khz_cannot_hold(rate):
    """1 kHz passes unchanged; 12 kHz (above the 8 kHz Nyquist of 16 kHz audio) must vanish
    instead of folding back into the speech band as linear interpolation made it."""
    from dhm.audio.frontend import resample

    t = np.arange(rate) / rate
    for freq, lo_db, hi_db in ((1000.0, -0.1, 0.1), (12000.0, -400.0, -60.0)):
        y = resample(np.sin(2 * np.pi * freq * t).astype(np.float32), rate)
        assert len(y) == SAMPLE_RATE and y.dtype == np.float32
        level_db = 20 * np.log10(np.sqrt(np.mean(y[1000:-1000] ** 2) / 0.5) + 1e-20)
        assert lo_db <= level_db <= hi_db, (freq, level_db)


def test_a_48khz_wav_gives_the_features_of_its_16khz_original(tmp_path):
    from dhm.audio.frontend import features_from_wav, write_wav

    rng = np.random.default_rng(0)
    t = np.arange(3 * 48000) / 48000
    voiced = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 40)) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
    hiss = np.fft.irfft(np.fft.rfft(rng.standard_normal(len(t))) * (np.fft.rfftfreq(len(t), 1 / 48000) > 9000), len(t))
    x = 0.2 * voiced / np.abs(voiced).max() + 0.1 * hiss / np.abs(hiss).max()
    write_wav(tmp_path / "a48.wav", x, 48000)
    low = np.fft.irfft(np.fft.rfft(x)[: len(t) // 6 + 1], len(t) // 3) / 3  # ideal band-limited 16 kHz
    write_wav(tmp_path / "a16.wav", low, 16000)
    a, b = features_from_wav(tmp_path / "a48.wav", "hubert"), features_from_wav(tmp_path / "a16.wav", "hubert")
    assert a.shape == b.shape
    assert np.abs(a - b).mean() < 0.02 * np.abs(b).mean(), (np.abs(a - b).mean(), np.abs(b).mean())


def test_psnr_and_both_ssims_match_scikit_image():
    """dhm's numpy PSNR/SSIM against scikit-image's (values recorded by
    tests/tools/record_skimage_metrics.py), and the torch SSIM the training loss uses
    against the numpy one."""
    import json

    import torch
    from conftest import FIXTURES
    from metric_pairs import metric_pairs

    from dhm.distill.losses import ssim as torch_ssim

    recorded = {r["pair"]: r for r in json.loads((FIXTURES / "skimage_metrics.json").read_text())["pairs"]}
    for name, a, b in metric_pairs():
        assert psnr(a, b) == pytest.approx(recorded[name]["psnr"], abs=1e-9), name
        assert ssim(a, b) == pytest.approx(recorded[name]["ssim"], abs=1e-7), name
        in_torch = float(torch_ssim(torch.from_numpy(a).float(), torch.from_numpy(b).float()))
        assert in_torch == pytest.approx(ssim(a, b), abs=2e-5), name


def test_figures_format_one_way():
    from dhm.manifest import format_figure, json_number

    assert format_figure(json_number(float("inf")), ".2f", " dB") == "∞"
    assert format_figure(float("-inf")) == "-∞"
    assert format_figure(None) == "–"
    assert format_figure(31.256, ".1f", " dB") == "31.3 dB"
