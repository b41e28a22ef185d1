"""dhm bench: parsers on recorded MNN tool output, statistics, the host bench end to end,
bad input, and the device path through a local transport (everything short of a phone)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import arm_numerics, TESTS, run_cli
from dhm.bench.api import SCHEMA_ID, BenchSettings, run_bench
from dhm.bench.device import LocalTransport, parse_adb_devices, pick_device
from dhm.bench.modulebasic import (
    check_abi,
    elf_abi,
    modulebasic_args,
    parse_benchmark,
    parse_modulebasic,
    read_output_txt,
)
from dhm.bench.stats import MemoryProbe, interleaved_timings, speedup, summarize

from dhm.errors import DatasetError, DeviceError, SpecError

# Real MNN 3.6.1 tool transcripts (copied from ../shared/fixtures/mnn-tools so every checkout has them).
MNN_TOOLS = Path(__file__).resolve().parent / "fixtures" / "mnn-tools"
QUICK = BenchSettings(threads=(1,), warmup=1, runs=6, rounds=2, frames=4, e2e_frames=3)


def _fixture(name: str) -> str:
    path = MNN_TOOLS / name
    return path.read_text()


# ------------------------------------------------------------------ ModuleBasic output


def test_modulebasic_ok_transcript():
    run = parse_modulebasic(_fixture("modulebasic_ok.txt"))
    assert (run.avg_ms, run.min_ms, run.max_ms) == (5417.043457, 5191.115234, 5849.062988)
    assert run.load_ms == pytest.approx(98.944)
    assert run.memory_mb == pytest.approx(25.310318)
    assert (
        run.check_status == "passed" and run.checks[0].name == "out" and run.checks[0].diff_max == pytest.approx(1e-6)
    )
    assert run.output_files == ["output/0_0.txt", "output/1_0.txt"] and not run.errors


def test_modulebasic_failed_check_is_read_from_the_text_not_the_exit_code():
    text = _fixture("modulebasic_bad.txt")
    assert text.rstrip().endswith("rc=0")  # the tool exited 0 …
    run = parse_modulebasic(text)
    assert run.check_status == "failed"  # … but the check failed
    assert run.checks[0].diff_max == pytest.approx(0.500001)


def test_modulebasic_fp16_checks_nothing():
    run = parse_modulebasic(_fixture("modulebasic_ok_fp16.txt"))
    assert run.check_status == "skipped" and run.avg_ms == pytest.approx(14717.9375)


def test_benchmark_out_line():
    (line,) = parse_benchmark(_fixture("benchmark_out.txt"))
    assert (line.model, line.max_ms, line.min_ms, line.avg_ms) == ("mob.mnn", 14548.413, 14069.394, 14231.134)


def test_modulebasic_command_line_names_precision_and_backend_explicitly():
    assert modulebasic_args("m.mnn", ".", "cpu", 3, 2, "fp32") == ["m.mnn", ".", "128", "0", "3", "2", "1"]
    assert modulebasic_args("m.mnn", ".", "opencl", 10, 4, "fp16")[3:] == ["3", "10", "4", "2"]
    assert modulebasic_args("m.mnn", ".", "vulkan", 1, 1, "fp32")[3] == "7"
    with pytest.raises(DeviceError, match="device backend"):
        modulebasic_args("m.mnn", ".", "npu", 1, 1, "fp32")


def test_output_txt_value_count_is_checked():
    assert read_output_txt("0.5\n1e-3\n-2\n", 3) == [0.5, 0.001, -2.0]
    with pytest.raises(DeviceError, match="holds 2 values"):
        read_output_txt("1\n2\n", 3)


# ------------------------------------------------------------------ ELF / adb


def test_elf_abi_of_real_binaries(tmp_path):
    host = {"x86_64": "x86_64", "aarch64": "arm64-v8a"}.get(os.uname().machine)
    assert elf_abi(Path(sys.executable).resolve()) == host
    arm = tmp_path / "arm"
    arm.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 11 + (183).to_bytes(2, "little") + b"\0" * 40)
    assert elf_abi(arm) == "arm64-v8a"
    with pytest.raises(DeviceError, match=f"built for arm64-v8a, the phone runs {host}"):
        check_abi(arm, [host])
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(DeviceError, match="not an ELF executable"):
        elf_abi(script)


ADB_TWO = "List of devices attached\nR58M123ABC\tdevice\nemulator-5554\tdevice\n\n"


def test_adb_device_choice():
    assert pick_device(parse_adb_devices("List of devices attached\nR58M\tdevice\n"), None) == "R58M"
    with pytest.raises(DeviceError, match="no Android device connected"):
        pick_device(parse_adb_devices("* daemon started successfully\nList of devices attached\n\n"), None)
    with pytest.raises(
        DeviceError, match=r"several devices connected \(R58M123ABC, emulator-5554\).*--device adb:SERIAL"
    ):
        pick_device(parse_adb_devices(ADB_TWO), None)
    assert pick_device(parse_adb_devices(ADB_TWO), "emulator-5554") == "emulator-5554"
    with pytest.raises(DeviceError, match="device XYZ is not connected"):
        pick_device(parse_adb_devices(ADB_TWO), "XYZ")
    with pytest.raises(DeviceError, match="unauthorized: accept the USB debugging prompt"):
        pick_device(parse_adb_devices("List of devices attached\nR58M\tunauthorized\n"), None)


# ------------------------------------------------------------------ statistics


def test_summary_and_ratio_from_known_timings():
    s = summarize(list(range(1, 101)))
    assert s.p50 == pytest.approx(50.5) and s.p90 == pytest.approx(90.1) and s.p99 == pytest.approx(99.01)
    assert s.mean == pytest.approx(50.5) and s.min == 1 and s.max == 100
    fast = summarize([10, 10, 11, 12])
    slow = summarize([100, 100, 110, 120])
    r = speedup(fast, slow)
    assert r.value == pytest.approx(slow.p50 / fast.p50) and r.low <= r.value <= r.high


def test_interleaved_rounds_visit_every_call_in_turn():
    order: list[str] = []
    times = interleaved_timings({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, runs=4, rounds=2)
    assert order == ["a", "a", "b", "b", "a", "a", "b", "b"]
    assert [len(v) for v in times.values()] == [4, 4]


def test_memory_probe_sees_an_allocation():
    probe = MemoryProbe()
    if not probe.resettable:
        pytest.skip("peak RSS cannot be reset on this system")
    # 64 MiB of fresh pages, touched: an anonymous mapping, because a heap allocation may
    # reuse memory an earlier test freed but the allocator kept resident (seen in the full
    # suite: added 0 MB)
    import mmap

    block = mmap.mmap(-1, 64 * 2**20)
    block.write(b"\x01" * len(block))
    mem = probe.stop()
    block.close()
    assert mem["added_mb"] >= 56


# ------------------------------------------------------------------ the host bench


@pytest.fixture(scope="module")
def exported(tmp_path_factory, teacher, synth_hubert) -> Path:
    """The teacher exported as a 'student' folder: fp32 and fp16 on onnxruntime and MNN."""
    from dhm.export.config import ExportConfig
    from dhm.export.pipeline import export_model

    out = tmp_path_factory.mktemp("bench") / "export"
    export_model(teacher, out, ExportConfig(variants=["fp32", "fp16"], data=synth_hubert, frames=4))
    return out


@pytest.fixture(scope="module")
def host_result(tmp_path_factory, exported, teacher, synth_hubert):
    out = tmp_path_factory.mktemp("bench_out")
    with arm_numerics():
        r = _bench_cli(out, exported, teacher, synth_hubert)
    assert r.exit_code == 0, r.output
    return out, json.loads((out / "b.json").read_text()), r


def _bench_cli(out, exported, teacher, synth_hubert):
    return run_cli(
        "bench",
        f"student={exported}",
        "--reference",
        teacher,
        "--data",
        synth_hubert,
        "--threads",
        "1,2",
        "--runs",
        "6",
        "--rounds",
        "2",
        "--warmup",
        "1",
        "--frames",
        "4",
        "--arm-frames",
        "1",
        "--e2e-frames",
        "3",
        "--loop-frames",
        "30",
        "--json",
        out / "b.json",
        "--report",
        out / "b.md",
    )


def test_host_bench_record(host_result):
    _, result, _ = host_result
    assert result["schema"] == SCHEMA_ID
    ids = [e["id"] for e in result["entries"]]
    assert ids[:3] == ["teacher/torch/fp32", "teacher/onnxruntime/fp32", "teacher/mnn/fp32"]
    assert set(ids[3:]) == {f"student/{b}/{v}" for b in ("onnxruntime", "mnn") for v in ("fp32", "fp16")}
    by = {e["id"]: e for e in result["entries"]}
    assert by["teacher/torch/fp32"]["parity"]["psnr"] == "inf"
    for e in result["entries"]:
        p = e["parity"]
        psnr = float("inf") if p["psnr"] == "inf" else p["psnr"]
        assert psnr >= (45.0 if e["variant"] == "fp16" else 90.0), e["id"]
        assert p["frames"] == 4 and e["size_bytes"] > 0 and e["macs"] > 0
    assert by["student/mnn/fp16"]["size_bytes"] < 0.6 * by["student/mnn/fp32"]["size_bytes"]
    assert len(result["host"]) == 2 * len(ids)  # every candidate at 1 and 2 threads
    for r in result["host"]:
        assert r["latency_ms"]["runs"] == 6 and r["load_ms"] > 0
        e2e = r["end_to_end"]
        assert e2e["frames"] == 3 and e2e["infer_ms"] > 0 and e2e["crop_ms"] > 0 and e2e["paste_ms"] > 0
    # Every speed-up is the ratio of the named baseline's median to the entry's, both
    # from this record (a ratio against the wrong baseline or thread count shows here).
    p50 = {(r["id"], r["threads"]): r["latency_ms"]["p50"] for r in result["host"]}
    ratios = {(x["id"], x["threads"]): x for x in result["ratios"]}
    assert set(ratios) == {(i, t) for i in ids[3:] for t in (1, 2)}
    for (rid, threads), x in ratios.items():
        engine = by[rid]["backend"]
        for key, base in (
            ("vs_teacher_torch", "torch"),
            ("vs_teacher_onnxruntime", "onnxruntime"),
            ("vs_teacher_same_engine", engine),
        ):
            assert x[key]["value"] == pytest.approx(p50[(f"teacher/{base}/fp32", threads)] / p50[(rid, threads)]), (
                rid,
                key,
            )
    for x in result["engine_ratios"]:
        mnn = p50[(f"{x['model']}/mnn/{x['variant']}", x["threads"])]
        ort = p50[(f"{x['model']}/onnxruntime/{x['variant']}", x["threads"])]
        assert x["mnn_over_onnxruntime"] == pytest.approx(mnn / ort)
    assert {(x["model"], x["variant"], x["threads"]) for x in result["engine_ratios"]} >= {
        ("student", "fp32", 1),
        ("teacher", "fp32", 2),
    }
    assert result["targets"]["winners"] and result["versions"]["mnn"] and result["machine"]["cores"] >= 1
    # MNN candidates also ran on MNN's aarch64 kernels, except the teacher's own export (it
    # does not ship); the other engines have no ARM figure
    for e in result["entries"]:
        if e["backend"] == "mnn" and e["model"] == "teacher":
            assert e["parity_arm"] == {"measured": False, "why": "the reference does not ship to a phone"}
        elif e["backend"] == "mnn":
            arm = e["parity_arm"]
            assert arm["measured"] and "cortex-a76" in arm["kernels"], e["id"]
            floor = 45.0 if e["variant"] == "fp16" else 90.0
            assert _db_value(arm["psnr"]) >= floor, e["id"]
            # --arm-frames 1 of the 4 parity frames (qemu: 2-5 s a frame); the x86 figure beside it is on that frame
            assert arm["frames"] == 1 and _db_value(arm["x86_psnr"]) >= floor, e["id"]
        else:
            assert "parity_arm" not in e


def test_host_bench_audio_in_frames_out(host_result):
    """The student's export carries an audio model: its cost per second of audio and the
    PCM -> frames loop are benched; the teacher's bench-made exports have none and are skipped."""
    out, result, r = host_result
    audio = {a["id"]: a for a in result["audio"]}
    assert set(audio) == {f"student/{b}/{v}" for b in ("onnxruntime", "mnn") for v in ("fp32", "fp16")}
    for a in audio.values():
        assert a["audio_model"].startswith("audio_fp32.mnn" if "/mnn/" in a["id"] else "audio_fp32.onnx")
        assert a["calls_per_second"] == 50.0 and a["lookahead_ms"] == pytest.approx(126.0)
        assert a["ms_per_second_of_audio_1_thread"] == pytest.approx(50.0 * a["call_ms_1_thread"])
        assert [loop["threads"] for loop in a["loop"]] == [1, 2]
        for loop in a["loop"]:
            # every frame of the held-out run came out; none before its lookahead
            assert loop["frames"] == round(a["heldout_seconds"] * 25) and loop["fps"] > 0
            # timed warm, over whole utterances until --loop-frames frames; the untimed first pass beside it
            assert loop["passes"] == -(-30 // loop["frames"]) >= 2 and loop["cold"]["fps"] > 0
            assert loop["cold"]["first_frame_ms"] >= a["lookahead_ms"]
            assert (
                a["lookahead_ms"] <= loop["latency_ms"]["p50"] <= loop["latency_ms"]["p99"] <= loop["latency_ms"]["max"]
            )
            assert 0 < loop["audio_ms_per_frame"] < 1000.0 / loop["fps"]
    md = (out / "b.md").read_text()
    assert "## Audio in, frames out (host)" in md and "Moonshot: full audio -> frame loop" in md
    # the mouth in silence, for the engine that ships: footage in silence, none of it generated
    for rid, a in audio.items():
        q = a["silence"]
        if "/mnn/" not in rid:
            assert q is None
            continue
        assert q["frames"] > q["speech_frames_true"] > 0 and q["silent_frames_judged"] > 0
        assert 0 < q["inferred_share"] < 1 and 0 < q["audio_calls_share"] < 1
        s = q["silence"]
        assert s["idle"] == s["footage"]  # in silence the frames are the footage
        assert set(q["max_step"]) == {"idle_at_edges", "plain_at_edges", "plain_in_speech", "footage", "clip"}
    assert "## The mouth in silence (host)" in md


def test_host_bench_reports_both_protocols_with_lips(host_result, teacher, synth_hubert):
    """The generation block is a second, independent evaluation: its reference frames
    differ from the targets, its figures differ from the inference ones, and the lip
    figures are recomputed here from the teacher's own outputs."""
    import torch

    from dhm.data.inputs import heldout_inputs
    from dhm.models import load_checkpoint

    _, result, _ = host_result
    data = result["data"]
    assert len(data["generation_references"]) == len(data["parity_frames"])
    assert all(r != f for r, f in zip(data["generation_references"], data["parity_frames"], strict=True))
    assert set(result["protocols"]) == {"parity", "generation"}
    by = {e["id"]: e for e in result["entries"]}
    fp16 = by["student/onnxruntime/fp16"]
    assert fp16["generation"]["psnr"] != fp16["parity"]["psnr"]  # other inputs, other outputs
    for e in result["entries"]:
        for block in (e["parity"], e["generation"]):
            assert {"lip_psnr", "lip_color_diff", "lip_bgr"} <= set(block), e["id"]
    # The teacher's lip sync, recomputed from its torch outputs on the same inputs.
    ckpt = load_checkpoint(teacher)
    gen = heldout_inputs(synth_hubert, ckpt.spec, "eval", 4, protocol="generation")
    assert gen.frames == data["parity_frames"] and gen.references == data["generation_references"]
    with torch.inference_mode():
        out = np.concatenate([ckpt.model(*(torch.from_numpy(x[k]) for k in x)).numpy() for x in gen.inputs])
    sync = by["teacher/torch/fp32"]["generation"]["lip_sync"]
    assert sync is not None and sync == pytest.approx(gen.lip_sync(out), abs=1e-4)
    assert data["ground_truth_lip_sync"] == pytest.approx(gen.lip_sync(gen.targets), abs=1e-4)


def test_host_bench_report_and_plots(host_result):
    import cv2

    out, _, r = host_result
    md = (out / "b.md").read_text()
    for heading in (
        "## Parity against the teacher",
        "## Generation protocol",
        "## Latency on this host",
        "## End-to-end pipeline per frame",
        "## MNN / onnxruntime latency",
        "## Targets",
        "## Plots",
        "## Where MNN's time goes (2 thread(s), MNN's per-op callbacks)",
    ):
        assert heading in md
    assert "| student/mnn/fp16 | 2 |" in md
    assert "| GFLOPS |" in md and "Fastest on mnn at 2 thread(s) with PSNR ≥ 30 dB: `student/mnn/" in md
    ops = {p["id"]: p for p in host_result[1]["op_profile"]}
    assert {"teacher/mnn/fp32", "student/mnn/fp32", "student/mnn/fp16"} <= set(ops)
    for p in ops.values():  # the ops' times add up to about one run (callbacks cost a little)
        assert p["ops"]["Convolution"]["ms"] > 0 and p["total_ms"] > p["conversion_ms"] >= 0
    for png in ("b_latency.png", "b_pareto.png"):
        img = cv2.imread(str(out / png))
        assert img is not None and img.shape[0] >= 400
    assert "## Latency on this host" in r.stdout  # the report is printed too


def test_compare_two_runs(host_result, tmp_path):
    out, result, _ = host_result
    slower = json.loads(json.dumps(result))
    for rec in slower["host"]:
        rec["latency_ms"]["p50"] *= 2
    slower["entries"][3]["parity"]["psnr"] = 10.0
    (tmp_path / "after.json").write_text(json.dumps(slower))
    r = run_cli("bench", "--compare", out / "b.json", tmp_path / "after.json")
    assert r.exit_code == 0, r.output
    assert "+100.0%" in r.stdout and f"| {result['entries'][3]['id']} |" in r.stdout
    (tmp_path / "junk.json").write_text('{"schema": "other"}')
    r = run_cli("bench", "--compare", out / "b.json", tmp_path / "junk.json")
    assert r.exit_code == 1 and "schema 'other', expected 'dhm.bench/2'" in r.stderr


# ------------------------------------------------------------------ bad input


def _tiny_checkpoint(path: Path, mode: str) -> Path:
    import torch

    from dhm.models import build_model, save_checkpoint
    from dhm.spec import GeneratorSpec

    spec = GeneratorSpec(mode=mode, widths=(4, 8, 8, 16, 16))
    torch.manual_seed(0)
    return save_checkpoint(path, build_model(spec), spec)


def test_reference_of_another_mode_is_refused_before_timing(tmp_path, teacher, synth_hubert):
    wenet = _tiny_checkpoint(tmp_path / "wenet.pt", "wenet")
    r = run_cli("bench", wenet, "--reference", teacher, "--data", synth_hubert)
    assert r.exit_code == 1
    assert "is a wenet model, the reference teacher is hubert" in r.stderr and "[bench] timing" not in r.stderr


def test_models_with_different_input_specs_are_refused(tmp_path, teacher, synth_hubert):
    wenet = _tiny_checkpoint(tmp_path / "wenet.pt", "wenet")
    r = run_cli("bench", teacher, wenet, "--reference", teacher, "--data", synth_hubert)
    assert r.exit_code == 1 and "models with different input specs in one call" in r.stderr
    assert "Traceback" not in r.output


def test_dataset_too_small_to_bench(tmp_path, teacher):
    from dhm.data.synth import write_synth_dataset

    small = write_synth_dataset(tmp_path / "small", frames=40, seed=1)
    with pytest.raises(DatasetError, match="the bench needs at least 4"):
        run_bench([str(teacher)], teacher, small, QUICK)


def test_bench_needs_sane_settings(teacher, synth_hubert):
    with pytest.raises(SpecError, match="at least 5 timed runs"):
        run_bench([str(teacher)], teacher, synth_hubert, BenchSettings(runs=2))
    with pytest.raises(SpecError, match="--mnn-bin"):
        run_bench([str(teacher)], teacher, synth_hubert, BenchSettings(device="adb"))


def test_no_adb_says_how_to_install_it(tmp_path, teacher, synth_hubert, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no adb anywhere
    r = run_cli(
        "bench", teacher, "--reference", teacher, "--data", synth_hubert, "--device", "adb", "--mnn-bin", tmp_path
    )
    assert r.exit_code == 1 and "adb not found: install Android platform-tools" in r.stderr


# ------------------------------------------------------------------ the device path, short of the wire


@pytest.fixture(scope="module")
def mnn_bin(tmp_path_factory) -> Path:
    """A ModuleBasic.out for this machine: an ELF launcher running tests/tools/modulebasic_standin.py
    (the real MNN engine from the wheel), and the wheel's engine library as libMNN.so."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the ModuleBasic stand-in launcher")
    import MNN

    folder = tmp_path_factory.mktemp("mnn_bin")
    script = TESTS / "tools" / "modulebasic_standin.py"
    subprocess.run(
        [
            cc,
            "-O1",
            "-o",
            str(folder / "ModuleBasic.out"),
            str(TESTS / "tools" / "launcher.c"),
            f'-DPYTHON="{sys.executable}"',
            f'-DSCRIPT="{script}"',
        ],
        check=True,
    )
    engine = next(Path(MNN.__file__).resolve().parents[1].glob("_mnncengine*.so"))
    shutil.copy(engine, folder / "libMNN.so")
    return folder


def _device_settings(mnn_bin: Path, **kw) -> BenchSettings:
    return BenchSettings(
        backends=("mnn",), threads=(1, 2), warmup=1, runs=5, rounds=1, frames=4, device="adb", mnn_bin=mnn_bin, **kw
    )


@pytest.fixture
def fake_adb(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """`adb` on PATH is tests/tools/fake_adb.py: it records every argv and maps the phone's
    /data/local/tmp to a local folder. Returns (phone folder, argv log)."""
    bindir, phone, log = tmp_path / "adb_bin", tmp_path / "phone", tmp_path / "adb.log"
    bindir.mkdir()
    phone.mkdir()
    adb = bindir / "adb"
    adb.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{TESTS / "tools" / "fake_adb.py"}" "$@"\n')
    adb.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_ROOT", str(phone))
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_DEVICES", "FAKE1\tdevice\nOTHER2\toffline")
    monkeypatch.setenv("FAKE_ADB_ABI", LocalTransport(tmp_path).abis()[0])
    return phone, log


@pytest.fixture(scope="module")
def distinct_student(tmp_path_factory, synth_hubert) -> Path:
    """An export whose outputs are far from the teacher's (an untrained model of the same
    spec): a device check fed the teacher's outputs instead of the model's own fails on it."""
    import torch

    from dhm.export.config import ExportConfig

    from dhm.export.pipeline import export_model
    from dhm.models import build_model, save_checkpoint
    from dhm.spec import GeneratorSpec

    work = tmp_path_factory.mktemp("distinct")
    spec = GeneratorSpec(widths=(4, 8, 8, 16, 16))
    torch.manual_seed(1)
    ckpt = save_checkpoint(work / "student.pt", build_model(spec).eval(), spec)
    config = ExportConfig(targets=["mnn"], variants=["fp32", "fp16"], data=synth_hubert, frames=4)
    export_model(ckpt, work / "export", config)
    return work / "export"


def test_device_bench_through_adb(tmp_path, distinct_student, teacher, synth_hubert, mnn_bin, fake_adb):
    """The real AdbTransport end to end (device choice, getprop, push, shell, pull, clean-up)
    against a fake adb executable; ModuleBasic is the stand-in running the real MNN engine."""
    phone, log = fake_adb
    result = run_bench(
        [f"student={distinct_student}"],
        teacher,
        synth_hubert,
        _device_settings(mnn_bin),
        json_path=tmp_path / "d.json",
        report_path=tmp_path / "d.md",
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls[0] == ["devices"]
    assert all(c[:2] == ["-s", "FAKE1"] for c in calls[1:])  # the one ready device, on every call
    calls = calls[1:]
    pushed = [Path(c[3]).name for c in calls if c[2] == "push"]
    assert {"ModuleBasic.out", "libMNN.so", "input.mnn", "output.mnn", "model_fp32.mnn", "model_fp16.mnn"} <= set(
        pushed
    )
    assert pushed.count("input.mnn") == 4  # one per held-out frame, staged once for every model
    pulls = [c[3] for c in calls if c[2] == "pull"]
    assert len(pulls) == 3 * 4 and all(
        p.startswith("/data/local/tmp/dhm-bench-") and p.endswith("/output/0_0.txt") for p in pulls
    )
    shells = [c[3] for c in calls if c[2] == "shell"]
    assert shells[-2].startswith("rm -rf /data/local/tmp/dhm-bench-")  # clean-up, then a check that it worked
    assert list(phone.iterdir()) == []  # nothing left behind on the "phone"

    dev = result["device"]
    assert (
        dev["device"]["transport"] == "adb" and dev["device"]["model"] == "FP-1" and dev["device"]["serial"] == "FAKE1"
    )
    assert dev["abi"] == elf_abi(mnn_bin / "ModuleBasic.out") and dev["forward"] == "cpu"
    models = {m["id"]: m for m in dev["models"]}
    assert set(models) == {"teacher/mnn/fp32", "student/mnn/fp32", "student/mnn/fp16"}
    host = {e["id"]: e["parity"] for e in result["entries"]}
    for mid, m in models.items():
        assert [t["threads"] for t in m["timing"]] == [1, 2]
        # outputs pulled back as text (6 significant digits) match the host MNN run …
        assert m["parity"]["max_abs_vs_host_mnn"] < 5e-6, mid
        # … so the phone's parity against the teacher is the host's, within text rounding
        assert m["parity"]["max_abs"] == pytest.approx(host[mid]["max_abs"], abs=5e-6), mid
    # ModuleBasic compares the phone's outputs with the host outputs dhm pushed as
    # output.mnn: "passed" means dhm pushed the right ones; fp16 runs (precision 2) skip it.
    assert models["student/mnn/fp32"]["modulebasic_check"] == "passed"
    assert models["student/mnn/fp16"]["modulebasic_check"] == "skipped"
    teacher_ms = {t["threads"]: t["avg_ms"] for t in models["teacher/mnn/fp32"]["timing"]}
    for t in models["student/mnn/fp32"]["timing"]:
        assert t["speedup_vs_teacher_mnn"] == pytest.approx(teacher_ms[t["threads"]] / t["avg_ms"])
    assert result["host"] == [] and "## On the device: Fakephone FP-1" in (tmp_path / "d.md").read_text()


def test_adb_device_problems_are_one_line(tmp_path, teacher, synth_hubert, mnn_bin, fake_adb, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_DEVICES", "")
    r = run_cli(
        "bench", teacher, "--reference", teacher, "--data", synth_hubert, "--device", "adb", "--mnn-bin", mnn_bin
    )
    assert r.exit_code == 1 and "no Android device connected" in r.stderr and "Traceback" not in r.output
    monkeypatch.setenv("FAKE_ADB_DEVICES", "FAKE1\tunauthorized")
    r = run_cli(
        "bench", teacher, "--reference", teacher, "--data", synth_hubert, "--device", "adb:FAKE1", "--mnn-bin", mnn_bin
    )
    assert r.exit_code == 1 and "device FAKE1 is unauthorized: accept the USB debugging prompt" in r.stderr


def test_device_failures_are_clear_and_clean_up(tmp_path, exported, teacher, synth_hubert, mnn_bin, monkeypatch):
    phone = tmp_path / "phone"
    phone.mkdir()
    model = [f"student={exported / 'model_fp32.mnn'}"]
    monkeypatch.setenv("DHM_STANDIN_FAIL", "load")
    with pytest.raises(DeviceError, match="ModuleBasic.out failed on model_fp32.mnn: Error: can't load module"):
        run_bench(model, teacher, synth_hubert, _device_settings(mnn_bin), transport=LocalTransport(phone))
    assert list(phone.iterdir()) == []
    monkeypatch.delenv("DHM_STANDIN_FAIL")
    monkeypatch.setenv("DHM_STANDIN_SLEEP", "3")
    with pytest.raises(DeviceError, match="timed out after 1s"):
        run_bench(
            model,
            teacher,
            synth_hubert,
            _device_settings(mnn_bin, device_timeout_s=1.0),
            transport=LocalTransport(phone),
        )
    assert list(phone.iterdir()) == []


def test_device_refuses_a_binary_for_another_abi(tmp_path, exported, teacher, synth_hubert, mnn_bin):
    class ArmPhone(LocalTransport):
        def abis(self) -> list[str]:
            return ["arm64-v8a", "armeabi-v7a"]

    with pytest.raises(DeviceError, match="is built for x86_64, the phone runs arm64-v8a, armeabi-v7a"):
        run_bench(
            [str(exported / "model_fp32.mnn")],
            teacher,
            synth_hubert,
            _device_settings(mnn_bin),
            transport=ArmPhone(tmp_path),
        )
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    with pytest.raises(DeviceError, match="ModuleBasic.out: missing; build MNN for Android"):
        run_bench(
            [str(exported / "model_fp32.mnn")],
            teacher,
            synth_hubert,
            _device_settings(empty),
            transport=LocalTransport(tmp_path),
        )


def _db_value(v):
    return float("inf") if v == "inf" else float(v)


def test_arm_parity_on_the_first_frames_is_judged_on_those_frames(synth_hubert):
    """`arm_frames` (the demo's 8 of 50): qemu reruns only the first N samples, and the x86
    figure beside it is computed on the same N, with their lip regions."""
    from dhm.bench.host import _first
    from dhm.data.inputs import heldout_inputs
    from dhm.spec import GeneratorSpec

    full = heldout_inputs(synth_hubert, GeneratorSpec(widths=(8, 16, 32, 64, 128)), max_frames=6)
    head = _first(full, 2)
    assert len(head.inputs) == len(head.frames) == len(head.lips) == len(head.targets) == 2
    assert head.frames == full.frames[:2] and _first(full, None) is full and _first(full, 99) is full


def test_budget_probe_times_candidates_on_the_phone_path(tmp_path, mnn_bin):
    """--budget-device adb: the candidates go through the bench's device path (ModuleBasic's
    stand-in here, real MNN), cached under the phone's name, the phone left clean."""
    from dhm.bench.probe import ProbeSettings, probe_latency
    from dhm.spec import GeneratorSpec

    phone = tmp_path / "phone"
    phone.mkdir()
    settings = ProbeSettings(budget_device="adb", mnn_bin=mnn_bin, budget_runs=5, cache=tmp_path / "cache")
    specs = [GeneratorSpec(widths=(4, 8, 12, 16, 32)), GeneratorSpec(widths=(8, 16, 16, 24, 40))]
    rows = probe_latency(specs, settings, transport=LocalTransport(phone))
    assert [r["source"] for r in rows] == ["measured", "measured"] and all(r["p50_ms"] > 0 for r in rows)
    keys = list(json.loads((tmp_path / "cache" / "latency.json").read_text())["entries"])
    assert len(keys) == 2 and all(LocalTransport(phone).describe()["model"] in k for k in keys)
    assert list(phone.iterdir()) == []
    with pytest.raises(SpecError, match="needs --mnn-bin"):
        probe_latency(specs[:1], ProbeSettings(budget_device="adb", cache=tmp_path / "other"))
