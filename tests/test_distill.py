import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli

from dhm.distill import TrainingSettings, distill_student
from dhm.distill.init import init_from_teacher
from dhm.distill.presets import STUDENT_PRESETS, resolve_student, widths_for_ratio
from dhm.metrics import generator_cost
from dhm.models import Model, load_checkpoint
from dhm.spec import GeneratorSpec

STUDENT_W = "4,8,12,16,32"
DHM = str(Path(sys.executable).with_name("dhm"))


def test_the_trained_teacher_learned_something(teacher):
    report = json.loads((teacher.parent / "report.json").read_text())
    assert report["best"]["generation"]["vs_gt"]["psnr"] > 12
    assert report["history"][-1]["generation"]["vs_gt"]["psnr"] > 12


def _distill(teacher, data, out, init="teacher", steps=24, **kw):
    settings = TrainingSettings(steps=steps, batch_size=4, lr=3e-3, eval_every=steps, eval_frames=8, threads=2, **kw)
    return distill_student(teacher, data, out, student=STUDENT_W, settings=settings, init=init, progress=False)


@pytest.mark.slow
def test_presets_span_a_quarter_to_a_thirtieth_of_the_teacher():
    teacher = GeneratorSpec(widths="full")
    t_macs = generator_cost(teacher)[0]
    for name, ratio in STUDENT_PRESETS.items():
        s = resolve_student(teacher, name)
        got = t_macs / generator_cost(s)[0]
        assert ratio * 0.95 <= got <= ratio * 1.6, (name, got)
    assert resolve_student(teacher, "8,16,32,64,128").widths == (8, 16, 32, 64, 128)


@pytest.mark.parametrize("revision", ["2024-10-10", "2024-10-14", "2025-06-15", "2026-05-23"])
@pytest.mark.parametrize("mode", ["hubert", "wenet"])
@pytest.mark.slow
def test_channel_transfer_is_exact_at_equal_widths_and_close_when_narrower(mode, revision):
    """In every revision's layout (wrapped or not, narrow or wide wenet branch, 8- or
    16-frame window)."""
    torch.manual_seed(0)
    spec = GeneratorSpec(mode=mode, widths="mobile", revision=revision)
    teacher = Model(spec).eval()
    for m in teacher.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 1.5)
    same, note = init_from_teacher(teacher.state_dict(), spec, spec, Model(spec).state_dict())
    assert "L1-norm" in note
    for k, v in teacher.state_dict().items():
        assert torch.equal(same[k], v), k
    narrow = spec.with_widths(widths_for_ratio(spec, 4))
    student = Model(narrow)
    student.load_state_dict(init_from_teacher(teacher.state_dict(), spec, narrow, student.state_dict())[0])
    f, a = torch.rand(2, 6, 160, 160), torch.randn(spec.input_shapes(2)["audio"])
    with torch.no_grad():
        transferred = (teacher(f, a) - student.eval()(f, a)).abs().mean()
        fresh = (teacher(f, a) - Model(narrow).eval()(f, a)).abs().mean()
    assert transferred < fresh / 3


def test_distillation_beats_a_random_student_of_the_same_size(tmp_path, teacher, synth_hubert):
    # 12 steps: 23.7 against 17.7 dB (24 steps: 26.5 against 18.5)
    distilled = _distill(teacher, synth_hubert, tmp_path / "kd", steps=12)
    scratch = _distill(teacher, synth_hubert, tmp_path / "rand", init="random", steps=12)
    kd = distilled["best"]["generation"]["vs_teacher"]["psnr"]
    rnd = scratch["best"]["generation"]["vs_teacher"]["psnr"]
    assert kd > rnd + 3, (kd, rnd)
    out = tmp_path / "kd"
    student = load_checkpoint(out / "student.pt")
    assert student.spec.widths == (4, 8, 12, 16, 32)
    meta = student.metadata
    assert meta["teacher_sha256"] and meta["data_hash"] and meta["kind"] == "distill"
    report = json.loads((out / "report.json").read_text())
    assert report["ratios"]["macs"] > 5 and report["teacher"]["macs"] > report["model"]["macs"]
    lip_keys = {"lip_psnr", "lip_bgr", "lip_bgr_ref", "lip_color_diff"}
    for protocol in ("generation", "inference"):
        for against in ("vs_teacher", "vs_gt"):
            assert set(report["best"][protocol][against]) == {"psnr", "ssim", "mouth_psnr", "max_abs"} | lip_keys
    assert -1 <= report["best"]["generation"]["lip_sync"] <= 1 and report["ceiling"]["lip_sync"] > 0.5
    md = (out / "report.md").read_text()
    assert "teacher / student" in md and "PSNR" in md
    for png in ("curves.png", "strip.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # held-out frames are never trained on
    split = report["split"]
    assert split["train_frames"] + split["heldout_frames"] < 160


def test_same_seed_same_result(tmp_path, teacher, synth_hubert):
    a = _distill(teacher, synth_hubert, tmp_path / "a", steps=6)
    b = _distill(teacher, synth_hubert, tmp_path / "b", steps=6)
    assert a["history"] == b["history"]
    sa = load_checkpoint(tmp_path / "a" / "student.pt").model.state_dict()
    sb = load_checkpoint(tmp_path / "b" / "student.pt").model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_the_kept_student_is_the_moving_average_of_its_weights(tmp_path, teacher, synth_hubert):
    """With --ema the checkpoint holds the average, which follows the live weights: at a
    decay near 0 it is them, at 0.5 it lags behind them."""

    def kept_and_live(out, ema):
        _distill(teacher, synth_hubert, out, steps=6, ema=ema)
        state = torch.load(out / "resume.pt", weights_only=True)
        live = {k.removeprefix("student."): v for k, v in state["trainable"].items() if k.startswith("student.")}
        kept = load_checkpoint(out / "student.pt").model.state_dict()
        assert all(torch.equal(kept[k], state["ema"][k]) for k in kept)
        return kept, live

    kept, live = kept_and_live(tmp_path / "near0", 1e-6)
    assert all(torch.allclose(kept[k].float(), live[k].float(), atol=1e-5) for k in kept)
    kept, live = kept_and_live(tmp_path / "half", 0.5)
    assert "moving average of the trained ones (decay 0.5, --ema)" in (tmp_path / "half" / "report.md").read_text()
    floats = [k for k in kept if kept[k].is_floating_point()]
    assert sum(not torch.allclose(kept[k], live[k], atol=1e-5) for k in floats) > len(floats) // 2


def test_a_state_saved_before_ema_or_a_loss_term_existed_compares_as_0():
    from dhm.distill.loop import RunConfig

    base = dict(kind="distill", data="d", data_hash="h", student={}, teacher_sha256=None, steps=8, batch_size=4)
    base |= dict(lr=1e-3, seed=0, weights={}, eval_every=8, eval_frames=4, init="teacher")
    old = RunConfig(**base).to_dict()
    del old["ema"]
    assert RunConfig(**base, ema=0.0).first_difference(old) is None
    assert RunConfig(**base, ema=0.99).first_difference(old) == "ema: this run 0.99, saved run 0.0"
    # a loss term added since (border) had weight 0 in the saved run
    old["weights"] = {"pixel": 1.0}
    base["weights"] = {"pixel": 1.0, "border": 0.0}
    assert RunConfig(**base, ema=0.0).first_difference(old) is None
    base["weights"] = {"pixel": 1.0, "border": 1.0}
    diff = RunConfig(**base, ema=0.0).first_difference(old)
    assert diff == "weights: this run {'pixel': 1.0, 'border': 1.0}, saved run {'pixel': 1.0, 'border': 0.0}"


@pytest.mark.parametrize("pool", [[], ["--teacher-pool", "24"]], ids=["teacher-every-step", "teacher-pool"])
def test_ctrl_c_then_resume_equals_an_uninterrupted_run(tmp_path, teacher, synth_hubert, pool):
    args = [
        "distill",
        "--teacher",
        str(teacher),
        "--data",
        str(synth_hubert),
        "--student",
        STUDENT_W,
        "--steps",
        "10",
        "--batch-size",
        "4",
        "--lr",
        "0.003",
        "--eval-every",
        "5",
        "--eval-frames",
        "4",
        "--threads",
        "2",
        "--ema",
        "0.9",
        *pool,
    ]
    # The uninterrupted run and the resumed one run in this process (the CLI's entry point;
    # ~5 s of imports saved each); only the run that takes the Ctrl-C needs its own process.
    whole = tmp_path / "whole"
    r = run_cli(*args, "-o", whole)
    assert r.exit_code == 0, r.output

    cut = tmp_path / "cut"
    proc = subprocess.Popen([DHM, *args, "-o", str(cut)], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "distill step" in line:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "interrupted: state saved after step" in err and "--resume" in err
    saved_step = torch.load(cut / "resume.pt", weights_only=True)["step"]
    assert 0 < saved_step < 10

    r = run_cli(*args, "-o", cut, "--resume")
    assert r.exit_code == 0, r.output
    a = torch.load(whole / "resume.pt", weights_only=True)
    b = torch.load(cut / "resume.pt", weights_only=True)
    assert a["step"] == b["step"] == 10
    for part in ("trainable", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert a["history"] == b["history"]
    ra = json.loads((whole / "report.json").read_text())
    rb = json.loads((cut / "report.json").read_text())
    assert rb["training"]["resumed_from_step"] == saved_step
    assert ra["best"] == rb["best"]


# ---------------------------------------------------------------- bad input


def _fails_before_training(r, needle):
    assert r.exit_code != 0, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("dhm: error:")]
    assert len(lines) == 1 and needle in lines[0], r.output
    assert "distill step" not in r.output and "train step" not in r.output


def test_teacher_that_does_not_load(tmp_path, synth_hubert):
    bad = tmp_path / "t.pth"
    bad.write_bytes(b"nope" * 50)
    r = run_cli("distill", "--teacher", bad, "--data", synth_hubert, "-o", tmp_path / "o", "--quiet")
    _fails_before_training(r, "not a readable PyTorch checkpoint")


def test_student_widths_that_do_not_fit(tmp_path, teacher, synth_hubert):
    r = run_cli(
        "distill",
        "--teacher",
        teacher,
        "--data",
        synth_hubert,
        "-o",
        tmp_path / "o",
        "--student",
        "8,16,1,4,4",
        "--quiet",
    )
    _fails_before_training(r, "--student '8,16,1,4,4'")
    r = run_cli(
        "distill", "--teacher", teacher, "--data", synth_hubert, "-o", tmp_path / "o", "--student", "tiny", "--quiet"
    )
    _fails_before_training(r, "presets: x4, x10, x20, x30")


def test_dataset_too_small_for_the_split(tmp_path, teacher):
    from dhm.data.synth import write_synth_dataset

    small = write_synth_dataset(tmp_path / "small", frames=40, seed=1)
    r = run_cli("distill", "--teacher", teacher, "--data", small, "-o", tmp_path / "o", "--quiet")
    _fails_before_training(r, "too small for a held-out split")


def test_resume_with_other_settings_and_overwrite_protection(tmp_path, teacher, synth_hubert):
    out = tmp_path / "run"
    base = [
        "distill",
        "--teacher",
        teacher,
        "--data",
        synth_hubert,
        "-o",
        out,
        "--student",
        STUDENT_W,
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--eval-frames",
        "4",
        "--quiet",
    ]
    assert run_cli(*base).exit_code == 0
    r = run_cli(*base, "--lr", "0.01", "--resume")
    _fails_before_training(r, "--resume from a run with other settings (lr")
    r = run_cli(*base, "--lr", "0.01")
    _fails_before_training(r, "holds a different run")
    r = run_cli(*base)
    _fails_before_training(r, "use --resume to continue it or --force")
    assert run_cli(*base, "--lr", "0.01", "--force").exit_code == 0


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, teacher, synth_hubert):
    out = tmp_path / "nan"
    r = run_cli(
        "distill",
        "--teacher",
        teacher,
        "--data",
        synth_hubert,
        "-o",
        out,
        "--student",
        STUDENT_W,
        "--steps",
        "30",
        "--batch-size",
        "2",
        "--eval-every",
        "1",
        "--eval-frames",
        "2",
        "--lr",
        "1e12",
        "--quiet",
    )
    assert r.exit_code != 0
    line = [ln for ln in r.output.splitlines() if ln.startswith("dhm: error:")][0]
    assert "loss became nan at step" in line and "last good checkpoint is kept" in line
    ckpt = load_checkpoint(out / "student.pt")  # finite, loadable
    assert ckpt.metadata["step"] >= 1


@pytest.mark.slow
def test_train_writes_a_model_dhm_info_reads(tmp_path, synth_wenet):
    out = tmp_path / "t"
    r = run_cli(
        "train",
        "--data",
        synth_wenet,
        "-o",
        out,
        "--mode",
        "wenet",
        "--widths",
        "4,8,12,16,32",
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--eval-frames",
        "4",
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    info = json.loads(run_cli("info", out / "model.pt", "--json").output)
    assert info["mode"] == "wenet" and info["widths"] == [4, 8, 12, 16, 32] and info["form"] == "dhm"
    assert info["metadata"]["audio_frontend"] == "dhm-logmel-v1"


def test_torchrun_trains_with_distributed_data_parallel(tmp_path, teacher, synth_hubert):
    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "ddp"
    r = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node=2",
            "--master_port=29533",
            DHM,
            "distill",
            "--teacher",
            str(teacher),
            "--data",
            str(synth_hubert),
            "-o",
            str(out),
            "--student",
            STUDENT_W,
            "--steps",
            "4",
            "--batch-size",
            "2",
            "--eval-frames",
            "4",
            "--threads",
            "1",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["world_size"] == 2 and report["training"]["processes"] == 2
    assert load_checkpoint(out / "student.pt").spec.widths == (4, 8, 12, 16, 32)


def test_the_generation_protocol_hides_the_true_mouth(synth_hubert):
    """Held-out "generation" inputs carry another frame as reference (channels 0-2), so a
    model that copies its input cannot score; "inference" inputs carry the target itself."""
    import torch

    from dhm.data import SampleBuilder, open_dataset
    from dhm.distill.loop import HeldOut
    from dhm.spec import GeneratorSpec

    builder = SampleBuilder(open_dataset(synth_hubert), GeneratorSpec(widths=(4, 8, 8, 16, 16)))
    held = HeldOut(builder, [100, 110, 120, 130], teacher=None, dev=torch.device("cpu"))
    for protocol, copies in (("inference", True), ("generation", False)):
        batch = held.batches[protocol]
        same = [np.array_equal(face[:3], target) for face, target in zip(batch["face"], batch["target"], strict=True)]
        assert same == [copies] * 4, (protocol, same)


def test_distill_objective_watches_the_crop_frame_as_closely_as_its_inside():
    """The frame outside the mask rectangle is copied from the masked input and pasted at
    the face box's edge, where a wrong row is a line across the face (the demo's student
    of 2026-11-23 painted row 1 0.08 too bright). Per pixel, the distillation objective
    must pull a wrong frame pixel at least as hard as a wrong inner one; without the
    border term the SSIM window barely reaches the frame and the mouth weight halves it."""
    from dataclasses import replace

    from dhm.distill.loop import objective
    from dhm.distill.losses import border_mask, mouth_weight_map
    from dhm.distill.weights import DISTILL_DEFAULTS
    from dhm.spec import MOUTH_SLICE

    size = 160
    y0, y1, x0, x1 = MOUTH_SLICE
    frame = border_mask(size)
    assert int(frame.sum()) == size * size - (y1 - y0) * (x1 - x0)
    assert float(frame[..., 1, 80]) == 1.0 and float(frame[..., 80, 80]) == 0.0
    goal = torch.full((1, 3, size, size), 0.5)
    lips = torch.zeros(1, 1, size, size)

    def pull(w, rows: slice) -> float:
        """Mean |gradient| on logits that are wrong (by 0.1 after the sigmoid) in `rows` only."""
        logits = torch.zeros(1, 3, size, size)
        logits[:, :, rows] = 0.4  # sigmoid 0.599
        logits.requires_grad_(True)
        weight_map = mouth_weight_map(size, w.mouth)
        loss = objective(w, torch.sigmoid(logits), goal, lips, weight_map, logits=logits)
        (g,) = torch.autograd.grad(loss, logits)
        return float(g[:, :, rows, x0:x1].abs().mean())

    w = DISTILL_DEFAULTS
    assert w.border > 0
    # A wrong inner row is a structure SSIM punishes hard; the frame has only L1 and BCE.
    without = replace(w, border=0.0)
    assert pull(without, slice(1, 2)) < 0.2 * pull(without, slice(80, 81))  # what the term corrects
    assert pull(w, slice(1, 2)) >= 0.8 * pull(w, slice(80, 81))


@pytest.mark.parametrize("defaults", ["train", "distill"])
def test_objective_keeps_saturated_pixels_trainable(defaults):
    """A pixel whose logit ran to -20 (a black row the demo's teacher painted at its crop's
    edges) gets no gradient from terms measured after the sigmoid; the BCE term on the
    logits pulls it back with (sigmoid - target), as strong as for any wrong pixel."""
    from dataclasses import replace

    from dhm.distill.loop import objective
    from dhm.distill.losses import mouth_weight_map
    from dhm.distill.weights import DISTILL_DEFAULTS, TRAIN_DEFAULTS

    weights = TRAIN_DEFAULTS if defaults == "train" else DISTILL_DEFAULTS
    goal = torch.full((1, 3, 32, 32), 0.6)
    lips = torch.zeros(1, 1, 32, 32)

    def grad_at_saturated_row(w):
        logits = torch.zeros(1, 3, 32, 32)
        logits[:, :, 1:4] = -20.0  # saturated rows
        logits.requires_grad_(True)
        loss = objective(w, torch.sigmoid(logits), goal, lips, mouth_weight_map(32, w.mouth), logits=logits)
        (g,) = torch.autograd.grad(loss, logits)
        return float(g[:, :, 1:4].abs().mean()), float(g[:, :, 10:20].abs().mean())

    saturated, _ = grad_at_saturated_row(replace(weights, bce=0.0))
    assert saturated < 1e-9  # without it the rows are stuck for good
    saturated, healthy = grad_at_saturated_row(weights)
    # (at weight 0.1 a stuck pixel is pulled at about a fifth of a healthy wrong pixel's rate)
    assert weights.bce > 0 and saturated > 1e-5 and saturated > 0.1 * healthy


def test_teacher_pool_is_the_teacher_once_on_fixed_training_pairs(tmp_path, teacher, synth_hubert):
    """--teacher-pool N: the teacher's outputs and features on N (target, reference) pairs of
    training frames, computed before the first step; every batch is drawn from those pairs."""
    from dhm.data import SampleBuilder, open_dataset, split_frames
    from dhm.distill import loop
    from dhm.distill.loop import RunConfig, TeacherPool, _nhwc

    t = load_checkpoint(teacher)
    ds = open_dataset(synth_hubert, mode=t.spec.mode)
    train = np.asarray(split_frames(ds.n_frames, min_train=16, min_heldout=4).train)
    config = RunConfig(
        kind="distill", data="d", data_hash="h", student={}, teacher_sha256=None, steps=8, batch_size=4, lr=1e-3,
        seed=3, weights={}, eval_every=8, eval_frames=4, init="teacher", teacher_pool=12,
    )  # fmt: skip
    builder = SampleBuilder(ds, t.spec)
    model = t.model.eval()
    pool = TeacherPool.build(builder, model, train, config, torch.device("cpu"), report=False)
    assert pool.pairs.shape == (12, 2) and set(pool.pairs.ravel()) <= set(train.tolist())
    assert len({tuple(p) for p in pool.pairs}) > 6  # random pairs, not one frame repeated
    batch = builder.batch(pool.pairs[5:9, 0].tolist(), pool.pairs[5:9, 1].tolist())
    with torch.no_grad():
        logits, feats = model.features(*(_nhwc(torch.from_numpy(batch[k])) for k in ("face", "audio")))
    out, kept = pool.take(np.arange(5, 9), torch.device("cpu"))
    assert torch.allclose(out, torch.sigmoid(logits), atol=1e-3)
    assert set(kept) == set(feats) and all(torch.allclose(kept[k], feats[k], rtol=2e-3, atol=2e-3) for k in feats)
    again = TeacherPool.build(builder, model, train, config, torch.device("cpu"), report=False)
    assert np.array_equal(again.pairs, pool.pairs)  # the run's seed draws them: --resume finds the same pool

    # a step's targets are the teacher's outputs on that step's own inputs
    spec = GeneratorSpec(widths=STUDENT_W)
    run = loop_session(config, spec, t, ds, train)
    seen = {}
    real_batch = run.builder.batch
    run.builder.batch = lambda *a: seen.setdefault("batch", real_batch(*a))

    def objective(w, pred, target, lips, mouth_w, t_out, *rest):
        seen["t_out"] = t_out
        return pred.mean()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "objective", objective)
        run.step(0, train, 0)
    with torch.no_grad():
        expected = model(*(_nhwc(torch.from_numpy(seen["batch"][k])) for k in ("face", "audio")))
    assert torch.allclose(seen["t_out"], expected, atol=1e-3)

    pooled = _distill(teacher, synth_hubert, tmp_path / "pooled", teacher_pool=16)
    assert pooled["config"]["teacher_pool"] == 16
    assert "on 16 fixed training pairs" in (tmp_path / "pooled" / "report.md").read_text()
    r = run_cli("distill", "--teacher", str(teacher), "--data", str(synth_hubert), "-o", str(tmp_path / "x"),
                "--teacher-pool", "-1")  # fmt: skip
    assert r.exit_code != 0 and "--teacher-pool" in r.output
    # a pool larger than the free memory: one line, before the pool is filled, no output left
    r = run_cli("distill", "--teacher", str(teacher), "--data", str(synth_hubert), "-o", str(tmp_path / "huge"),
                "--teacher-pool", "1000000", "--eval-frames", "4")  # fmt: skip
    errors = [ln for ln in r.output.splitlines() if ln.startswith("dhm: error:")]
    assert r.exit_code != 0 and len(errors) == 1 and "GiB are free; use fewer pairs" in errors[0], r.output
    assert not (tmp_path / "huge").exists()


def loop_session(config, spec, teacher, ds, train):
    """A distillation session (the training loop's `_Session`) on `ds`, for stepping by hand."""
    from dhm.distill import loop

    return loop._session(
        config, Path("unused"), spec, teacher, ds, list(range(4)), train, None, None, 1, True, torch.device("cpu"),
        "student.pt", None,
    )  # fmt: skip
