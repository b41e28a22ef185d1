import numpy as np
import pytest

from dhm.data.audio import N_MELS, SAMPLE_RATE, features_for_mode, log_mel, mel_filterbank
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
