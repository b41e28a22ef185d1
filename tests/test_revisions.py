"""Every upstream revision, read exactly as it was trained.

Five Ultralight revisions x two audio modes, and FeatherTalk's MobileOne U-Net in both
modes and both forms: detected from the state_dict alone, loaded strictly, and run to
upstream's own outputs (tests/fixtures/upstream/README.md says how those were made);
exported to ONNX and MNN with the same outputs; and fed by the runtime exactly as each
revision's inference.py fed it (crop filter, audio window, ping-pong, paste-back).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import FIXTURES, run_cli
from helpers import golden_inputs, seeded_state_dict

from dhm.errors import CheckpointError
from dhm.models import load_checkpoint
from dhm.models.layouts import equivalent_revisions
from dhm.spec import REVISIONS

UPSTREAM = FIXTURES / "upstream"
ULTRALIGHT = sorted(p.stem for p in UPSTREAM.glob("ul_*.json"))
MOBILEONE = sorted(p.stem for p in UPSTREAM.glob("ft_*.json"))
STRIDE = 4  # the fixtures hold every 4th output pixel


def _fixture(name: str):
    fx = json.loads((UPSTREAM / f"{name}.json").read_text())
    state = seeded_state_dict(fx["layout"], gain=fx.get("gain", 1.0))
    return fx, state, np.load(UPSTREAM / f"{name}_out.npy")


def _inputs(fx):
    face, audio = golden_inputs((1, 6, 160, 160), fx["audio_shape"])
    return torch.from_numpy(face), torch.from_numpy(audio)


def _expected_crop(fx) -> str:
    return "area" if fx["family"] == "mobileone" or fx["revision"] == "2026-05-23" else "linear"


def test_the_fixtures_cover_every_revision_and_mode():
    assert len(ULTRALIGHT) == 2 * len(REVISIONS) == 10
    assert len(MOBILEONE) == 4


@pytest.mark.parametrize("name", ULTRALIGHT + MOBILEONE)
@pytest.mark.slow
def test_every_revision_is_detected_loaded_strictly_and_reproduces_upstream(tmp_path, name):
    fx, state, expected = _fixture(name)
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    ckpt = load_checkpoint(path)
    spec = ckpt.spec
    assert (spec.mode, spec.window, list(spec.widths)) == (fx["mode"], fx["window"], fx["widths"])
    assert spec.crop_interpolation == _expected_crop(fx)
    if fx["family"] == "ultralight":
        assert spec.arch == "ultralight" and fx["revision"] in equivalent_revisions(spec)
    else:
        assert spec.arch == "mobileone" and ckpt.reparameterized == (fx["form"] == "reparameterized")
    # Same keys, same shapes, same order as upstream's state_dict.
    assert [(k, list(v.shape)) for k, v in ckpt.model.state_dict().items()] == [(k, s) for k, s, _ in fx["layout"]]
    with torch.no_grad():
        out = ckpt.model(*_inputs(fx)).numpy()[:, :, ::STRIDE, ::STRIDE]
    assert np.abs(out - expected).max() <= 1e-4


@pytest.mark.parametrize("mode", ["hubert", "wenet"])
@pytest.mark.slow
def test_mobileone_reparameterization_matches_feathertalks(tmp_path, mode):
    """dhm folds the branches itself; the result must equal FeatherTalk's own reparameterized
    model on the same trained weights."""
    name = f"ft_mobileone_{mode}_trained"
    fx, state, multi = _fixture(name)
    theirs = np.load(UPSTREAM / f"{name}_reparam_out.npy")
    torch.save({"model": state}, tmp_path / "ft.pth")
    ckpt = load_checkpoint(tmp_path / "ft.pth")
    fused = ckpt.inference_model()
    assert fused.reparameterized and not ckpt.model.reparameterized
    with torch.no_grad():
        out = fused(*_inputs(fx)).numpy()[:, :, ::STRIDE, ::STRIDE]
    assert np.abs(out - theirs).max() <= 1e-4
    assert np.abs(out - multi).max() <= 1e-4
    n_trained = sum(p.numel() for p in ckpt.model.parameters())
    n_fused = sum(p.numel() for p in fused.parameters())
    if mode == "hubert":  # FeatherTalk's README: 6.43 M trained, 3.76 M reparameterized
        assert (round(n_trained / 1e6, 2), round(n_fused / 1e6, 2)) == (6.43, 3.76)


@pytest.mark.parametrize("name", ULTRALIGHT + [n for n in MOBILEONE if not n.endswith("_reparam")])
@pytest.mark.slow
def test_every_revision_exports_to_onnx_and_mnn_with_upstreams_output(tmp_path, name):
    from dhm.export.config import ExportConfig
    from dhm.export.pipeline import export_model
    from dhm.runtime_py.engines import load

    fx, state, expected = _fixture(name)
    torch.save(state, tmp_path / "m.pth")
    config = ExportConfig(targets=["onnx", "mnn"], variants=["fp32"], frames=1)
    result = export_model(tmp_path / "m.pth", tmp_path / "export", config)
    gen = result.manifest["generator"]
    assert (gen["mode"], gen["window"], gen["crop_interpolation"]) == (fx["mode"], fx["window"], _expected_crop(fx))
    assert result.manifest["preprocess"]["crop_interpolation"] == _expected_crop(fx)
    half = fx["window"] // 2
    assert (result.manifest["audio"]["window_before"], result.manifest["audio"]["window_after"]) == (half, half)
    face, audio = (t.numpy() for t in _inputs(fx))
    for artefact in ("model_fp32.onnx", "model_fp32.mnn"):
        engine = load(tmp_path / "export" / artefact)
        out = engine.run({"face": face, "audio": audio})["out"][:, :, ::STRIDE, ::STRIDE]
        assert np.abs(out - expected).max() <= 1e-4, artefact
        assert engine.conventions.window == fx["window"]
        assert engine.conventions.preprocess.crop_interpolation == _expected_crop(fx)


@pytest.mark.slow
def test_info_says_what_it_detected(tmp_path):
    for name, text in (
        ("ul_2026-05-23_hubert", "ultralight 2026-05-23 layout, hubert, 8-frame window (i-4 … i+3), INTER_AREA crops"),
        (
            "ul_2024-10-14_wenet",
            "ultralight 2024-10-14 layout, wenet, 16-frame window (i-8 … i+7), bilinear (INTER_LINEAR) crops",
        ),
        ("ul_2025-06-04_hubert", "ultralight 2024-10-14 layout, hubert, 16-frame window"),
        ("ul_2024-10-10_wenet", "ultralight 2024-10-10 layout, wenet, 8-frame window"),
        (
            "ft_mobileone_wenet_reparam",
            "FeatherTalk MobileOne U-Net, wenet, 8-frame window (i-4 … i+3), INTER_AREA crops, reparameterized form",
        ),
    ):
        _, state, _ = _fixture(name)
        torch.save(state, tmp_path / "m.pth")
        r = run_cli("info", tmp_path / "m.pth")
        assert r.exit_code == 0, r.output
        assert text in r.output, r.output
    r = run_cli("info", tmp_path / "m.pth", "--json")
    facts = json.loads(r.output)
    assert facts["mobileone_form"] == "reparameterized" and facts["params_trained"] > facts["params"]


@pytest.mark.slow
def test_crop_override_for_upstream_files_and_refusal_for_dhm_checkpoints(tmp_path):
    from dhm.models import save_checkpoint

    _, state, _ = _fixture("ul_2025-06-15_hubert")
    torch.save(state, tmp_path / "ul.pth")
    r = run_cli("info", tmp_path / "ul.pth", "--crop-interpolation", "area")
    assert r.exit_code == 0 and "INTER_AREA (--crop-interpolation)" in r.output, r.output
    ckpt = load_checkpoint(tmp_path / "ul.pth")
    save_checkpoint(tmp_path / "dhm.pt", ckpt.model, ckpt.spec)  # records linear
    r = run_cli("info", tmp_path / "dhm.pt", "--crop-interpolation", "area")
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "trained on linear crops (recorded in the dhm checkpoint)" in lines[0]
    assert "contradicts" in lines[0]
    assert load_checkpoint(tmp_path / "dhm.pt", crop_interpolation="linear").spec.crop_interpolation == "linear"


@pytest.mark.slow
def test_an_upstream_revision_with_another_window_is_refused(tmp_path):
    """A 2026-05-23 (unwrapped) layout with a 16-frame hubert input: no revision had it."""
    _, state, _ = _fixture("ul_2026-05-23_hubert")
    w = state["audio_model.conv1.conv.0.weight"]
    state["audio_model.conv1.conv.0.weight"] = torch.cat([w, w], dim=1)  # 32 input channels
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match="no upstream revision has this layout .*16-frame window"):
        load_checkpoint(tmp_path / "odd.pth")


def test_dhm_format_1_checkpoints_still_load(tmp_path):
    """Checkpoints written before revisions were recorded: wrapped layout, 8 frames, linear."""
    from dhm.models import build_model
    from dhm.spec import GeneratorSpec

    for mode, rev in (("hubert", "2025-06-15"), ("wenet", "2024-10-10")):
        spec = GeneratorSpec(mode=mode, widths=(8, 16, 24, 32, 48), revision=rev)
        payload = {
            "model": build_model(spec).state_dict(),
            "dhm": {"format": 1, "spec": {"arch": "ultralight", "mode": mode, "widths": [8, 16, 24, 32, 48]}},
        }
        torch.save(payload, tmp_path / f"{mode}.pt")
        ckpt = load_checkpoint(tmp_path / f"{mode}.pt")
        assert ckpt.spec == spec and ckpt.spec.crop_interpolation == "linear" and ckpt.crop_source == "recorded by dhm"


# ------------------------------------------------------------------ inference conventions


def _upstream_frame(
    model, img: np.ndarray, lms_text: str, feats: np.ndarray, index: int, revision: str, mode: str, window: int
) -> np.ndarray:
    """One frame as upstream's inference.py of `revision` computes it, written from its code:
    the crop box from points 1, 31 and 52, the crop resize exactly as that revision called
    cv2.resize, the window index-W/2 … index+W/2 (exclusive) zero-padded, the reshape,
    x*255 truncated to uint8 and a default cv2.resize back to the box."""
    lms = np.array(
        [np.fromstring(line, sep=" ", dtype=np.float32) for line in lms_text.splitlines() if line.strip()],
        dtype=np.int32,
    )
    xmin, ymin, xmax = lms[1][0], lms[52][1], lms[31][0]
    ymax = ymin + (xmax - xmin)
    crop_img = img[ymin:ymax, xmin:xmax]
    h, w = crop_img.shape[:2]
    if revision < "2026-05-23":
        crop_img = cv2.resize(crop_img, (168, 168), cv2.INTER_AREA)  # sic: the third argument is `dst`
    else:
        crop_img = cv2.resize(crop_img, (168, 168), interpolation=cv2.INTER_AREA)
    crop_img_ori = crop_img.copy()
    img_real_ex = crop_img[4:164, 4:164].copy()
    img_masked = cv2.rectangle(img_real_ex.copy(), (5, 5, 150, 145), (0, 0, 0), -1)
    ref = torch.from_numpy(img_real_ex.transpose(2, 0, 1).astype(np.float32) / 255.0)
    masked = torch.from_numpy(img_masked.transpose(2, 0, 1).astype(np.float32) / 255.0)
    left, right = index - window // 2, index + window // 2
    pad_left, pad_right = max(0, -left), max(0, right - feats.shape[0])
    auds = torch.from_numpy(feats[max(0, left) : min(feats.shape[0], right)])
    if pad_left:
        auds = torch.cat([torch.zeros_like(auds[:pad_left]), auds], dim=0)
    if pad_right:
        auds = torch.cat([auds, torch.zeros_like(auds[:pad_right])], dim=0)
    shape = (2 * window, 32, 32) if mode == "hubert" else (16 * window, 16, 32)
    with torch.no_grad():
        pred = model(torch.cat([ref, masked])[None], auds.reshape(shape)[None])[0]
    pred = np.array(pred.numpy().transpose(1, 2, 0) * 255, dtype=np.uint8)
    crop_img_ori[4:164, 4:164] = pred
    out = img.copy()
    out[ymin:ymax, xmin:xmax] = cv2.resize(crop_img_ori, (w, h))
    return out


@pytest.fixture(scope="module")
def big_face(tmp_path_factory) -> Path:
    """A clip whose face box is ~220 px: the crop is a non-integer downscale, where
    INTER_AREA averages and differs most from bilinear."""
    from dhm.data.synth import write_synth_dataset

    root = tmp_path_factory.mktemp("bigface")
    write_synth_dataset(root / "hubert", frames=24, seed=5, scale=1.6)
    write_synth_dataset(root / "wenet", frames=24, seed=5, scale=1.6, mode="wenet")
    return root


@pytest.mark.parametrize("name", ULTRALIGHT + ["ft_mobileone_hubert_trained", "ft_mobileone_wenet_trained"])
@pytest.mark.slow
def test_the_runtime_feeds_each_revision_as_its_inference_did(tmp_path, big_face, name):
    from dhm.data import open_dataset
    from dhm.data.preprocess import audio_window
    from dhm.runtime_py.engines import conventions_of, load
    from dhm.runtime_py.pipeline import AvatarPipeline, pingpong

    fx, state, _ = _fixture(name)
    torch.save(state, tmp_path / "m.pth")
    engine = load(tmp_path / "m.pth", threads=1)
    data = big_face / fx["mode"]
    ds = open_dataset(data, mode=fx["mode"])
    assert min(b.side for b in ds.boxes) > 168
    feats = ds.audio(fx["mode"])
    conv = conventions_of(engine)
    pipe = AvatarPipeline(engine, ds, conv)
    revision = fx.get("revision", "2026-05-23")
    model = engine.model  # what upstream runs: FeatherTalk's inference reparameterizes too
    # the first frames (left zero padding) and the last (right padding)
    for i, ref in [(i, r) for i, r in enumerate(pingpong(ds.n_frames, len(feats)))][:3] + [(len(feats) - 1, 1)]:
        frame = pipe.render(ref, audio_window(feats, i, conv))
        lms_text = ds.landmark_path(ref).read_text()
        expected = _upstream_frame(model, ds.frame(ref), lms_text, feats, i, revision, fx["mode"], fx["window"])
        assert np.array_equal(frame, expected), (name, i)


def test_inter_area_crops_differ_from_bilinear_on_a_big_face(big_face):
    """Why the filter matters: on a downscaled crop the two filters give different inputs."""
    from dhm.data import open_dataset
    from dhm.data.preprocess import crop_face
    from dhm.spec import GeneratorSpec

    ds = open_dataset(big_face / "hubert")
    box = ds.boxes[0]
    area = crop_face(ds.frame(0), box, GeneratorSpec(revision="2026-05-23").preprocess)
    linear = crop_face(ds.frame(0), box, GeneratorSpec(revision="2025-06-15").preprocess)
    region = ds.frame(0)[box.y0 : box.y1, box.x0 : box.x1]
    assert np.array_equal(area, cv2.resize(region, (168, 168), interpolation=cv2.INTER_AREA))
    assert np.array_equal(linear, cv2.resize(region, (168, 168), interpolation=cv2.INTER_LINEAR))
    diff = np.abs(area.astype(int) - linear.astype(int))
    assert diff.max() >= 4 and (diff > 0).mean() > 0.05, (diff.max(), (diff > 0).mean())


def test_a_dataset_too_short_for_the_window_is_refused(tmp_path):
    from dhm.data import SampleBuilder, open_dataset
    from dhm.data.synth import write_synth_dataset
    from dhm.errors import DatasetError
    from dhm.spec import GeneratorSpec

    ds = open_dataset(write_synth_dataset(tmp_path / "short", frames=12, seed=1))
    SampleBuilder(ds, GeneratorSpec())  # 12 frames fill an 8-frame window
    with pytest.raises(DatasetError, match="12 hubert feature frames cannot fill the model's 16-frame audio window"):
        SampleBuilder(ds, GeneratorSpec(revision="2024-10-14"))


def test_mobileone_trains_and_distils_from_the_cli(tmp_path, teacher, synth_hubert):
    """The MobileOne family as a student (of an Ultralight teacher) and as a teacher."""
    r = run_cli(
        "distill",
        "--teacher",
        teacher,
        "--data",
        synth_hubert,
        "-o",
        tmp_path / "mo",
        "--student",
        "4,8,8,16,16",
        "--student-arch",
        "mobileone",
        "--steps",
        "4",
        "--batch-size",
        "2",
        "--eval-every",
        "4",
        "--eval-frames",
        "4",
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    student = load_checkpoint(tmp_path / "mo" / "student.pt")
    assert student.spec.arch == "mobileone" and not student.reparameterized
    assert student.spec.conventions == load_checkpoint(teacher).spec.conventions
    r = run_cli(
        "distill",
        "--teacher",
        tmp_path / "mo" / "student.pt",
        "--data",
        synth_hubert,
        "-o",
        tmp_path / "mo2",
        "--student",
        "4,4,8,8,8",
        "--student-stem",
        "s2d",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--eval-every",
        "2",
        "--eval-frames",
        "4",
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    r = run_cli("export", tmp_path / "mo2" / "student.pt", "-o", tmp_path / "e", "--target", "mnn")
    assert r.exit_code == 0, r.output
    assert "MobileOne reparameterized" in (tmp_path / "e" / "report.md").read_text()
    assert json.loads((tmp_path / "e" / "manifest.json").read_text())["generator"]["stem"] == "s2d"
    r = run_cli(
        "train",
        "--data",
        synth_hubert,
        "-o",
        tmp_path / "bad",
        "--arch",
        "mobileone",
        "--revision",
        "2024-10-14",
        "--steps",
        "1",
    )
    assert r.exit_code == 1 and "follows the 2026-05-23 conventions" in r.stderr


def test_the_manifest_schema_knows_every_revision():
    from dhm.manifest import schema
    from dhm.spec import ARCHS, INTERPOLATIONS, STEMS, WINDOWS

    gen = schema()["properties"]["generator"]["properties"]
    assert gen["revision"]["enum"] == list(REVISIONS) and gen["arch"]["enum"] == list(ARCHS)
    assert gen["stem"]["enum"] == list(STEMS)
    assert gen["window"]["enum"] == list(WINDOWS) and gen["crop_interpolation"]["enum"] == list(INTERPOLATIONS)
