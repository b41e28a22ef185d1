import json

import numpy as np
import pytest
import torch

from conftest import FIXTURES, run_cli
from helpers import golden_inputs, seeded_state_dict

from dhm.errors import CheckpointError, SpecError
from dhm.metrics import count_macs, generator_cost
from dhm.models import Model, detect_spec, load_checkpoint, model_from_state, save_checkpoint
from dhm.spec import WIDTH_PRESETS, GeneratorSpec

GOLDEN = ["hubert_full", "wenet_full", "hubert_mobile"]


def _golden(name):
    fx = json.loads((FIXTURES / "ultralight" / f"{name}.json").read_text())
    return fx, seeded_state_dict(fx["layout"]), np.load(FIXTURES / "ultralight" / f"{name}_out.npy")


@pytest.mark.parametrize("name", GOLDEN)
@pytest.mark.slow
def test_ultralight_layout_loads_strictly_and_reproduces_outputs(name):
    """Fixture: Ultralight's own unet.py Model (state_dict layout recorded from it, outputs
    computed by it on seeded weights and inputs; see tests/fixtures/ultralight/README.md)."""
    fx, state, expected = _golden(name)
    spec = detect_spec(state)
    assert spec.mode == fx["mode"] and list(spec.widths) == fx["widths"]
    model = model_from_state(state, spec)
    # Same keys, same shapes, same order as Ultralight's state_dict.
    assert [(k, list(v.shape)) for k, v in model.state_dict().items()] == [(k, s) for k, s, _ in fx["layout"]]
    shapes = spec.input_shapes(1)
    face, audio = golden_inputs(shapes["face"], shapes["audio"])
    with torch.no_grad():
        out = model(torch.from_numpy(face), torch.from_numpy(audio)).numpy()
    assert out.shape == expected.shape
    assert np.abs(out - expected).max() <= 1e-5


@pytest.mark.parametrize("form", ["plain", "model-dict"])
def test_both_ultralight_file_forms_load(tmp_path, form):
    _, state, _ = _golden("hubert_mobile")
    path = tmp_path / "ul.pth"
    torch.save(state if form == "plain" else {"model": state}, path)
    ckpt = load_checkpoint(path)
    # Ultralight's 3f9852e mobile hubert layout is the network of revisions 2024-10-10 and 2025-06-15.
    assert ckpt.spec == GeneratorSpec(mode="hubert", widths=WIDTH_PRESETS["mobile"], revision="2025-06-15")
    assert ckpt.spec.crop_interpolation == "linear" and ckpt.detected.equivalent == ("2024-10-10",)
    assert ckpt.form == ("ultralight-state-dict" if form == "plain" else "ultralight-model-dict")
    assert not ckpt.model.training


@pytest.mark.parametrize("mode", ["hubert", "wenet"])
@pytest.mark.parametrize("preset", ["full", "mobile"])
@pytest.mark.slow
def test_info_reports_mode_and_widths(tmp_path, mode, preset):
    spec = GeneratorSpec(mode=mode, widths=WIDTH_PRESETS[preset])
    path = tmp_path / f"{mode}_{preset}.pth"
    torch.save(Model(spec).state_dict(), path)
    r = run_cli("info", path, "--json")
    assert r.exit_code == 0, r.output
    facts = json.loads(r.output)
    assert facts["mode"] == mode
    assert facts["widths"] == list(WIDTH_PRESETS[preset])
    assert facts["preset"] == preset
    macs, params = generator_cost(spec)
    assert facts["macs"] == macs and facts["params"] == params
    assert facts["file_size"] == path.stat().st_size
    text = run_cli("info", path).output
    assert f"audio mode: {mode}" in text and "MACs / frame" in text


def test_reference_costs():
    # Ultralight's README: ~3.2 GMACs full, ~0.83 GMACs mobile (hubert mode).
    full, _ = generator_cost(GeneratorSpec(mode="hubert", widths=WIDTH_PRESETS["full"]))
    mobile, _ = generator_cost(GeneratorSpec(mode="hubert", widths=WIDTH_PRESETS["mobile"]))
    assert 3.1e9 < full < 3.25e9
    assert 0.80e9 < mobile < 0.86e9


def test_count_macs_known_value():
    conv = torch.nn.Conv2d(4, 8, 3, padding=1, groups=2)
    # out 8x10x10, each output sums (4/2)*3*3 = 18 products
    assert count_macs(conv, torch.zeros(1, 4, 10, 10)) == 8 * 10 * 10 * 18


@pytest.mark.parametrize("mode", ["hubert", "wenet"])
@pytest.mark.parametrize(
    "widths", [(16, 32, 64, 128, 256), (8, 16, 24, 32, 48), (6, 10, 14, 18, 22), (32, 64, 128, 256, 512)]
)
@pytest.mark.slow
def test_any_widths_build_and_run_in_both_modes(mode, widths):
    spec = GeneratorSpec(mode=mode, widths=widths)
    model = Model(spec).eval()
    shapes = spec.input_shapes(2)
    with torch.no_grad():
        out = model(torch.rand(shapes["face"]), torch.randn(shapes["audio"]))
    assert tuple(out.shape) == spec.output_shapes(2)["out"]
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert detect_spec(model.state_dict()) == spec


def test_bad_widths_are_rejected():
    with pytest.raises(SpecError, match="five"):
        GeneratorSpec(widths=(16, 32, 64))
    with pytest.raises(SpecError, match="at least 2"):
        GeneratorSpec(widths=(16, 32, 64, 1, 256))


def test_dhm_checkpoint_roundtrip(tmp_path):
    spec = GeneratorSpec(mode="wenet", widths=(8, 16, 24, 32, 48))
    model = Model(spec)
    path = save_checkpoint(tmp_path / "s.pt", model, spec, teacher_sha256="abc", steps=3)
    ckpt = load_checkpoint(path)
    assert ckpt.form == "dhm" and ckpt.spec == spec and ckpt.metadata["steps"] == 3
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize(
    "arch,revision,reparameterized",
    [("ultralight", "2026-05-23", False), ("ultralight", "2025-06-15", False), ("mobileone", "2026-05-23", False),
     ("mobileone", "2026-05-23", True)],
)  # fmt: skip
def test_an_s2d_student_folds_the_first_level_and_reads_back_as_s2d(tmp_path, arch, revision, reparameterized):
    from dhm.models.build import build_model

    spec = GeneratorSpec(arch=arch, widths=(8, 16, 24, 32, 48), revision=revision, stem="s2d")
    full = GeneratorSpec(arch=arch, widths=spec.widths, revision=revision)
    torch.manual_seed(0)
    model = build_model(spec, reparameterized=reparameterized).eval()
    # no 160x160 level: fewer MACs at the same widths, no down1/up4, and no 160x160 map to match
    assert generator_cost(spec)[0] < 0.85 * generator_cost(full)[0]
    assert not any(k.startswith(("down1.", "up4.")) for k in model.state_dict())
    face, audio = (torch.rand(s) for s in spec.input_shapes(2).values())
    out, maps = model.features(face, audio)
    assert out.shape == (2, 3, 160, 160) and sorted(maps) == ["fuse", "up1", "up2", "up3"]
    assert maps["up3"].shape == (2, 8, 80, 80)  # w0 paints at 80x80, unfolded to 3x160x160
    # the 3x3 smoothing across the unfolded 2x2 blocks starts as the identity
    assert torch.allclose(out, model.to_space(model.outc(maps["up3"])), atol=1e-6)
    assert detect_spec(model.state_dict()) == spec or revision != "2026-05-23"
    path = save_checkpoint(tmp_path / "s.pt", model, spec)
    ckpt = load_checkpoint(path)
    assert ckpt.spec == spec and ckpt.spec.to_dict()["stem"] == "s2d"
    assert torch.equal(ckpt.model(face, audio), model(face, audio))
    assert "stem" not in full.to_dict() and GeneratorSpec.from_dict(full.to_dict()) == full
    with pytest.raises(SpecError, match="unknown stem 'half'"):
        GeneratorSpec(stem="half")


# ------------------------------------------------------------------ bad checkpoints


def _cli_error(path):
    r = run_cli("info", path)
    assert r.exit_code != 0
    lines = [line for line in r.output.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("dhm: error:"), r.output
    return lines[0]


def test_corrupt_checkpoint(tmp_path):
    path = tmp_path / "bad.pth"
    path.write_bytes(b"\x00not a checkpoint" * 10)
    assert "not a readable PyTorch checkpoint" in _cli_error(path)


def test_truncated_checkpoint(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(Model(GeneratorSpec(widths="mobile")).state_dict(), good)
    bad = tmp_path / "trunc.pth"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert "not a readable PyTorch checkpoint" in _cli_error(bad)


def test_pickled_code_is_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"model": Model(GeneratorSpec(widths="mobile")).state_dict(), "x": Evil()}, path, pickle_module=pickle)
    assert "only loads plain tensors" in _cli_error(path)


def test_unknown_layout_names_the_closest_revision_and_first_missing_key(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, path)
    msg = _cli_error(path)
    assert "matches no Ultralight or FeatherTalk layout" in msg
    assert "shares no tensor name with any of them" in msg and "ultralight 2026-05-23 layout, hubert" in msg
    assert "'audio_model.conv1.conv.0.weight' [32, 16, 1, 1]" in msg


def test_a_layout_of_no_revision_names_the_closest_and_its_first_difference(tmp_path):
    """An upstream model someone edited (a conv renamed): the closest revision and the
    first tensor that differs."""
    state = Model(GeneratorSpec(widths="full", revision="2026-05-23")).state_dict()
    state["inc.inconv.convs.6.weight"] = state.pop("inc.inconv.conv.6.weight")
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    msg = _cli_error(path)
    assert "closest: ultralight 2026-05-23 layout, hubert, 8-frame window" in msg
    assert "first difference: missing 'inc.inconv.conv.6.weight' [32, 12, 1, 1]" in msg


def test_mismatched_shapes_name_the_first_key(tmp_path):
    spec = GeneratorSpec(widths="mobile")
    state = Model(spec).state_dict()
    state["up2.conv.double_conv.0.conv.0.weight"] = torch.zeros(5, 5, 1, 1)
    path = tmp_path / "mism.pth"
    torch.save(state, path)
    msg = _cli_error(path)
    assert "shape mismatch up2.conv.double_conv.0.conv.0.weight" in msg


def test_missing_key_is_named(tmp_path):
    state = Model(GeneratorSpec(widths="mobile")).state_dict()
    del state["outc.conv.bias"]
    path = tmp_path / "miss.pth"
    torch.save(state, path)
    assert "missing key 'outc.conv.bias'" in _cli_error(path)


def test_nan_weights(tmp_path):
    state = Model(GeneratorSpec(widths="mobile")).state_dict()
    state["down2.maxpool_conv.double_conv.1.conv.3.weight"][0, 0, 0, 0] = float("nan")
    path = tmp_path / "nan.pth"
    torch.save(state, path)
    msg = _cli_error(path)
    assert "non-finite" in msg and "down2.maxpool_conv.double_conv.1.conv.3.weight" in msg


def test_metadata_that_contradicts_tensors(tmp_path):
    state = Model(GeneratorSpec(widths="mobile")).state_dict()
    path = tmp_path / "lie.pt"
    torch.save(
        {"model": state, "dhm": {"spec": {"arch": "ultralight", "mode": "wenet", "widths": [16, 32, 64, 128, 256]}}},
        path,
    )
    with pytest.raises(CheckpointError, match="metadata says"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "arch,mode,widths",
    [
        ("ultralight", "hubert", (8, 16, 32, 64, 128)),
        ("ultralight", "wenet", (16, 32, 64, 128, 256)),
        ("mobileone", "hubert", (8, 16, 32, 64, 128)),
    ],
)
def test_count_macs_agrees_with_torch_flop_counter(arch, mode, widths):
    """dhm's hook-based MAC count against torch's own FlopCounterMode (2 FLOPs per MAC),
    for the trained and, for MobileOne, the reparameterized form."""
    from torch.utils.flop_counter import FlopCounterMode

    from dhm.metrics import count_macs
    from dhm.models import build_model
    from dhm.spec import GeneratorSpec

    spec = GeneratorSpec(arch=arch, mode=mode, widths=widths)
    model = build_model(spec).eval()
    forms = [model] + ([model.reparameterize()] if hasattr(model, "reparameterize") else [])
    for m in forms:
        xs = [torch.zeros(s) for s in spec.input_shapes(1).values()]
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            m(*xs)
        assert count_macs(m, *xs) == counter.get_total_flops() // 2 > 0
