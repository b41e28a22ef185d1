import hashlib
import shutil

import cv2
import numpy as np
import pytest

from conftest import run_cli

from dhm.data import SampleBuilder, open_dataset
from dhm.data.preprocess import audio_window, crop_box, crop_face, face_input, inner, mask, paste_back, parse_landmarks
from dhm.data.synth import write_synth_dataset
from dhm.errors import DatasetError
from dhm.spec import AUDIO_MODES, PREPROCESS, Conventions, GeneratorSpec

LINEAR = PREPROCESS  # the crop filter of every revision before 2026-05-23


def _tree_digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


# --------------------------------------------------------------- conventions


def test_landmarks_parse_like_ultralight():
    lms = parse_landmarks("10.9 20.2\n-0.5 3.99\n\n")
    assert lms.dtype == np.int32
    assert lms.tolist() == [[10, 20], [0, 3]]  # float32 -> int32 truncates toward zero


def test_crop_box_from_points_1_31_52():
    lms = np.zeros((110, 2), np.int32)
    lms[1] = (40, 0)
    lms[31] = (140, 0)
    lms[52] = (0, 70)
    box = crop_box(lms)
    assert (box.x0, box.x1, box.y0, box.y1) == (40, 140, 70, 170)


def test_crop_mask_and_input_match_ultralight_by_hand():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (240, 200, 3), dtype=np.uint8)
    lms = np.zeros((110, 2), np.int32)
    lms[1], lms[31], lms[52] = (20, 5), (170, 5), (60, 60)
    box = crop_box(lms)
    crop = crop_face(frame, box, LINEAR)
    # What Ultralight's code computed before 2026-05-23 (its INTER_AREA argument lands in `dst`: linear).
    expected = cv2.resize(frame[60:210, 20:170], (168, 168))
    assert np.array_equal(crop, expected)
    face = inner(crop)
    assert np.array_equal(face, crop[4:164, 4:164])
    masked = mask(face)
    assert (masked[5:150, 5:155] == 0).all()  # cv2.rectangle (5,5,150,145): rows 5..149, cols 5..154
    assert np.array_equal(masked[4, :], face[4, :]) and np.array_equal(masked[:, 155], face[:, 155])
    assert np.array_equal(masked[150, :], face[150, :])
    x = face_input(face, face)
    assert x.shape == (6, 160, 160) and x.dtype == np.float32
    assert np.array_equal(x[:3], face.transpose(2, 0, 1).astype(np.float32) / 255.0)
    assert np.array_equal(x[3:], masked.transpose(2, 0, 1).astype(np.float32) / 255.0)


def _conv(mode: str, window: int) -> Conventions:
    return Conventions(LINEAR, AUDIO_MODES[mode], window)


def test_audio_window_is_i_minus_4_to_i_plus_3_zero_padded():
    conv = _conv("hubert", 8)
    feats = np.arange(10, dtype=np.float32)[:, None, None] * np.ones((10, 2, 1024), np.float32) + 1
    w = audio_window(feats, 0, conv).reshape(8, 2, 1024)
    assert w[:4].max() == 0 and list(w[4:, 0, 0]) == [1, 2, 3, 4]
    w = audio_window(feats, 5, conv).reshape(8, 2, 1024)
    assert list(w[:, 0, 0]) == [2, 3, 4, 5, 6, 7, 8, 9]
    w = audio_window(feats, 9, conv).reshape(8, 2, 1024)
    assert list(w[:, 0, 0]) == [6, 7, 8, 9, 10, 0, 0, 0]
    assert audio_window(feats, 3, conv).shape == (16, 32, 32)
    wen = np.ones((5, 16, 512), np.float32)
    assert audio_window(wen, 2, _conv("wenet", 8)).shape == (128, 16, 32)


def test_sixteen_frame_window_is_i_minus_8_to_i_plus_7():
    """Upstream 2024-10-14 … 2025-06-04 (hubert) and 2024-10-14 (wenet): get_audio_features
    takes index-8 … index+8 (exclusive), reshaped to [32,32,32] / [256,16,32]."""
    feats = np.arange(30, dtype=np.float32)[:, None, None] * np.ones((30, 2, 1024), np.float32) + 1
    conv = _conv("hubert", 16)
    w = audio_window(feats, 3, conv)
    assert w.shape == (32, 32, 32)
    rows = w.reshape(16, 2, 1024)[:, 0, 0]
    assert list(rows) == [0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    rows = audio_window(feats, 25, conv).reshape(16, 2, 1024)[:, 0, 0]
    assert list(rows) == [18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 0, 0, 0]
    assert audio_window(np.ones((40, 16, 512), np.float32), 20, _conv("wenet", 16)).shape == (256, 16, 32)
    assert conv.lookahead == 7 and _conv("hubert", 8).lookahead == 3


def test_paste_back_restores_an_identity_prediction_region():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (240, 200, 3), dtype=np.uint8)
    lms = np.zeros((110, 2), np.int32)
    lms[1], lms[31], lms[52] = (20, 5), (188, 5), (30, 30)
    box = crop_box(lms)
    crop = crop_face(frame, box, LINEAR)
    pred = inner(crop).transpose(2, 0, 1).astype(np.float32) / 255.0
    out = paste_back(frame, crop, pred, box, LINEAR)
    # Outside the box nothing changes; inside it is Ultralight's resize of the patched crop.
    untouched = np.ones(frame.shape[:2], bool)
    untouched[30:198, 20:188] = False
    assert np.array_equal(out[untouched], frame[untouched])
    patched = crop.copy()
    patched[4:164, 4:164] = (pred.transpose(1, 2, 0) * 255).astype(np.uint8)
    assert np.array_equal(out[30:198, 20:188], cv2.resize(patched, (168, 168)))


# --------------------------------------------------------------- built-in set


def test_synth_is_deterministic(tmp_path):
    a = write_synth_dataset(tmp_path / "a", frames=24, seed=3)
    b = write_synth_dataset(tmp_path / "b", frames=24, seed=3)
    c = write_synth_dataset(tmp_path / "c", frames=24, seed=4)
    assert _tree_digest(a) == _tree_digest(b)
    assert _tree_digest(a) != _tree_digest(c)


def test_synth_loads_through_the_reader(synth_hubert, synth_wenet):
    ds = open_dataset(synth_hubert, mode="hubert")
    assert ds.n_frames == 160 and ds.modes == ["hubert"] and ds.wav_path is not None
    assert ds.audio("hubert").shape == (160, 2, 1024)
    ds.check(decode=True)
    s = SampleBuilder(ds, GeneratorSpec(mode="hubert")).sample(10, reference=40)
    assert s.face.shape == (6, 160, 160) and s.audio.shape == (16, 32, 32) and s.target.shape == (3, 160, 160)
    dw = open_dataset(synth_wenet, mode="wenet")
    assert dw.audio("wenet").shape == (120, 16, 512)
    assert SampleBuilder(dw, GeneratorSpec(mode="wenet")).inference_sample(0).audio.shape == (128, 16, 32)
    assert SampleBuilder(dw, GeneratorSpec(mode="wenet", revision="2024-10-14")).inference_sample(0).audio.shape == (
        256,
        16,
        32,
    )


def test_synth_mouth_follows_the_audio(synth_hubert):
    """The mouth must be learnable from audio: mouth-region pixels and audio energy
    move together across the clip."""
    import json

    meta = json.loads((synth_hubert / "synth.json").read_text())
    openness = np.array(meta["mouth_openness"])
    assert openness.std() > 0.15
    feats = np.load(synth_hubert / "aud_hu.npy")
    energy = np.abs(feats).mean(axis=(1, 2))
    ds = open_dataset(synth_hubert)
    sb = SampleBuilder(ds, GeneratorSpec(mode="hubert"))
    dark = np.array([1.0 - sb.inference_sample(i).target[:, 55:90, 55:105].mean() for i in range(ds.n_frames)])
    assert np.corrcoef(openness, dark)[0, 1] > 0.8
    assert np.corrcoef(openness, energy)[0, 1] > 0.5


def test_a_hand_made_ultralight_folder_loads(tmp_path, synth_hubert):
    """What Ultralight's preprocessing writes: integer landmark pairs from its PFLD model,
    one feature frame more than images (HuBERT rounding)."""
    root = tmp_path / "ul"
    shutil.copytree(synth_hubert, root)
    (root / "synth.json").unlink()
    for p in (root / "landmarks").iterdir():
        pts = parse_landmarks(p.read_text())
        p.write_text("\n".join(f"{x} {y}" for x, y in pts))
    feats = np.load(root / "aud_hu.npy")
    np.save(root / "aud_hu.npy", np.concatenate([feats, feats[-1:]]))
    ds = open_dataset(root, mode="hubert")
    assert ds.n_frames == 160 and ds.landmarks.shape == (160, 110, 2)


# --------------------------------------------------------------- bad datasets


@pytest.fixture
def ds_copy(tmp_path, synth_hubert):
    root = tmp_path / "ds"
    shutil.copytree(synth_hubert, root)
    return root


def _open_error(root, **kw):
    r = run_cli("data", "check", root)
    assert r.exit_code != 0
    lines = [ln for ln in r.output.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("dhm: error:"), r.output
    with pytest.raises(DatasetError) as err:
        open_dataset(root, **kw).check()
    return str(err.value)


def test_missing_frame(ds_copy):
    (ds_copy / "full_body_img" / "17.jpg").unlink()
    msg = _open_error(ds_copy)
    assert "17.jpg" in msg and "missing frame" in msg


def test_missing_landmarks_file(ds_copy):
    (ds_copy / "landmarks" / "9.lms").unlink()
    assert "9.lms" in _open_error(ds_copy)


def test_dataset_without_landmarks(ds_copy):
    shutil.rmtree(ds_copy / "landmarks")
    assert "missing landmarks/" in _open_error(ds_copy)


def test_empty_dataset(tmp_path):
    root = tmp_path / "empty"
    (root / "full_body_img").mkdir(parents=True)
    (root / "landmarks").mkdir()
    assert "no frames" in _open_error(root)


def test_mismatched_counts(ds_copy):
    feats = np.load(ds_copy / "aud_hu.npy")
    np.save(ds_copy / "aud_hu.npy", feats[:100])
    msg = _open_error(ds_copy)
    assert "aud_hu.npy" in msg and "100 feature frames for 160 images" in msg


def test_wrong_feature_shape(ds_copy):
    np.save(ds_copy / "aud_hu.npy", np.zeros((160, 16, 512), np.float32))
    assert "hubert features must be [N,2,1024]" in _open_error(ds_copy)


def test_unreadable_image_names_first_bad_file(ds_copy):
    (ds_copy / "full_body_img" / "33.jpg").write_bytes(b"garbage, not a jpeg")
    (ds_copy / "full_body_img" / "90.jpg").write_bytes(b"garbage")
    msg = _open_error(ds_copy)
    assert "33.jpg" in msg and "unreadable image" in msg


def test_landmarks_outside_the_image(ds_copy):
    path = ds_copy / "landmarks" / "12.lms"
    lines = path.read_text().splitlines()
    lines[40] = "900.0 20.0"
    path.write_text("\n".join(lines))
    msg = _open_error(ds_copy)
    assert "12.lms" in msg and "outside" in msg


def test_missing_mode_features(ds_copy):
    with pytest.raises(DatasetError, match="aud_wenet.npy"):
        open_dataset(ds_copy, mode="wenet")


def test_mask_constants_are_the_spec():
    assert PREPROCESS.mask_rect == (5, 5, 150, 145)
    assert (PREPROCESS.crop_size, PREPROCESS.inner_size, PREPROCESS.border) == (168, 160, 4)


def test_mouth_slice_is_exactly_the_masked_pixels():
    from dhm.spec import MOUTH_SLICE

    blacked = mask(np.full((160, 160, 3), 255, np.uint8))[:, :, 0] == 0
    y0, y1, x0, x1 = MOUTH_SLICE
    region = np.zeros_like(blacked)
    region[y0:y1, x0:x1] = True
    assert np.array_equal(blacked, region)
