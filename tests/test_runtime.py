import json

import numpy as np
import pytest
from conftest import run_cli
from helpers import one_error_line
from dhm.runtime_py.engines import load
from dhm.runtime_py.pipeline import AvatarPipeline, StreamSession, pingpong

from dhm.data import open_dataset
from dhm.errors import SpecError


def test_pingpong_follows_ultralight_inference():
    # Ultralight: idx starts at 0, steps before use, turns at len_img-1 and at 0
    assert pingpong(4, 10) == [1, 2, 3, 2, 1, 0, 1, 2, 3, 2]
    assert pingpong(1, 3) == [0, 0, 0]
    # the closed form against Ultralight's loop (inference.py: step, then use, turn at the ends)
    for n in range(1, 30):
        last, idx, step, want = n - 1, 0, 0, []
        for _ in range(200):
            if last > 0:
                if idx >= last:
                    step = -1
                elif idx < 1:
                    step = 1
                idx += step
            want.append(idx)
        assert pingpong(n, 200) == want, n


def test_packing_follows_scale_and_colour_order():
    """x / 255 in float32 bit for bit (not x * rounded(1/255)); RGB swaps the planes both
    ways; the layout is checked."""
    from dataclasses import replace

    from dhm.data.preprocess import to_chw_float, to_uint8_image
    from dhm.spec import PREPROCESS

    img = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    chw = to_chw_float(img)
    assert np.array_equal(chw, img.transpose(2, 0, 1).astype(np.float32) / np.float32(255))
    assert np.array_equal(to_uint8_image(chw), img)
    rgb = replace(PREPROCESS, color_order="RGB", scale=1 / 127.5)
    assert np.array_equal(
        to_chw_float(img, rgb), img[..., ::-1].transpose(2, 0, 1).astype(np.float32) / np.float32(127.5)
    )
    assert np.array_equal(to_uint8_image(to_chw_float(img, rgb), rgb), img)
    with pytest.raises(SpecError, match="layout 'NHWC'"):
        to_chw_float(img, replace(PREPROCESS, layout="NHWC"))


@pytest.fixture(scope="module")
def pipeline(teacher, synth_hubert):
    engine = load(teacher, threads=1)
    return AvatarPipeline(engine, open_dataset(synth_hubert), engine.conventions)


def test_stream_equals_offline_bit_for_bit(pipeline, synth_hubert):
    feats = np.load(synth_hubert / "aud_hu.npy")[:23]
    offline = list(pipeline.frames(feats))
    session = StreamSession(pipeline)
    streamed, sizes = [], []
    for chunk in (feats[:1], feats[1:6], feats[6:7], feats[7:19], feats[19:]):
        got = session.push(chunk)
        sizes.append(len(got))
        streamed += got
    assert sizes[0] == 0  # frame 0 needs frames up to 3: nothing before the lookahead arrives
    streamed += session.finish()
    assert len(streamed) == len(offline) == 23
    for a, b in zip(streamed, offline, strict=True):
        assert np.array_equal(a, b)
    assert session.lookahead == 3
    assert pipeline.times.frames == 46 and set(pipeline.times.per_frame_ms()) == {
        "load",
        "crop",
        "pack",
        "infer",
        "paste",
    }


def test_offline_frames_change_only_inside_the_face_box(pipeline, synth_hubert):
    ds = open_dataset(synth_hubert)
    feats = np.load(synth_hubert / "aud_hu.npy")[:2]
    frame = next(pipeline.frames(feats))
    ref = ds.frame(1)  # the ping-pong schedule's first reference
    box = ds.boxes[1]
    outside = np.ones(ref.shape[:2], bool)
    outside[box.y0 : box.y1, box.x0 : box.x1] = False
    assert np.array_equal(frame[outside], ref[outside])
    assert not np.array_equal(frame[~outside], ref[~outside])


def test_run_writes_a_side_by_side_video(tmp_path, teacher, synth_hubert):
    from dhm.runtime_py.mp4 import read_mp4

    feats = tmp_path / "f.npy"
    np.save(feats, np.load(synth_hubert / "aud_hu.npy")[:12])
    out = tmp_path / "v.mp4"
    r = run_cli("run", teacher, "--data", synth_hubert, "--audio-features", feats, "-o", out, "--side-by-side", teacher)
    assert r.exit_code == 0, r.output
    info = read_mp4(out)
    assert (info.video_codec, info.pixel_format, info.frames, info.fps) == ("h264", "yuv420p", 12, 25)
    assert info.size == (512, 320)
    # the dataset's aud.wav under the 12 frames: 0.48 s of AAC, to one AAC frame (1024 samples)
    assert info.audio_codec == "aac" and abs(info.audio_seconds - 12 / 25) < 1024 / 16000
    assert "per generated frame:" in r.output and "(with audio)" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npy", "v.mp4"]


def test_run_from_wav(tmp_path, teacher, synth_hubert):
    import cv2

    from dhm.runtime_py.mp4 import read_mp4

    out = tmp_path / "w.mp4"
    r = run_cli("run", teacher, "--data", synth_hubert, "--wav", synth_hubert / "aud.wav", "-o", out)
    assert r.exit_code == 0, r.output
    info = read_mp4(out)
    frames = len(list((synth_hubert / "full_body_img").iterdir()))
    assert (info.video_codec, info.frames, info.audio_codec) == ("h264", frames, "aac")
    assert abs(info.audio_seconds - frames / 25) < 1024 / 16000
    # the clip opens in silence: the first frame is the speaker's idle footage (no model ran), not
    # a blank encoder output
    from dhm.data.dataset import open_dataset
    from dhm.runtime_py.idle import IdleSettings, idle_footage

    first = idle_footage(open_dataset(synth_hubert), 25, IdleSettings()).reference(0)
    source = cv2.imread(str(synth_hubert / "full_body_img" / f"{first}.jpg"))
    assert np.abs(info.first_frame_bgr.astype(int) - source.astype(int)).mean() < 8
    assert "idle: silero-vad" in r.output


def test_mp4_sound_is_in_sync_with_the_frames(tmp_path):
    """A white frame at frame 20 and a tone starting at 20/25 s: decoded, both fall at 0.8 s.
    Odd sizes are padded to even (yuv420p), and audio longer than the video is cut."""
    import av

    from dhm.runtime_py.mp4 import Mp4Writer, read_mp4

    fps, rate, flash = 25, 16000, 20
    pcm = np.zeros(rate * 3, np.float32)  # 3 s of sound under 2 s of video
    onset = flash * rate // fps
    pcm[onset : onset + 480] = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(480) / rate)
    with Mp4Writer(tmp_path / "s.mp4", fps, (161, 97), pcm, rate) as writer:
        for i in range(50):
            writer.write(np.full((97, 161, 3), 255 if i == flash else 0, np.uint8))
    info = read_mp4(tmp_path / "s.mp4")
    assert (info.frames, info.size, info.audio_codec) == (50, (162, 98), "aac")
    assert abs(info.audio_seconds - 2.0) < 1024 / rate
    with av.open(str(tmp_path / "s.mp4")) as c:
        white = [f.time for f in c.decode(video=0) if f.to_ndarray(format="gray").mean() > 128]
    with av.open(str(tmp_path / "s.mp4")) as c:
        decoded = [(f.time, f.to_ndarray()[0]) for f in c.decode(audio=0)]
    assert decoded[0][0] == 0.0  # the first sample plays with the first frame
    sound = np.concatenate([a for _, a in decoded])
    heard = int(np.argmax(np.abs(sound) > 0.25)) / rate
    assert white == [0.8] and abs(heard - 0.8) < 0.005


def test_run_bad_input(tmp_path, teacher, synth_hubert):
    wrong = tmp_path / "wenet.npy"
    np.save(wrong, np.zeros((10, 16, 512), np.float32))
    one_error_line(
        run_cli("run", teacher, "--data", synth_hubert, "--audio-features", wrong, "-o", tmp_path / "v.mp4"),
        "does not fit the hubert mode",
    )
    one_error_line(
        run_cli("run", teacher, "--data", synth_hubert, "--audio-features", wrong, "-o", tmp_path / "nope" / "v.mp4"),
        "does not exist",
    )
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(synth_hubert / "full_body_img", bare / "full_body_img")
    one_error_line(
        run_cli("run", teacher, "--data", bare, "--wav", synth_hubert / "aud.wav", "-o", tmp_path / "v.mp4"),
        "missing landmarks/",
    )
    assert not (tmp_path / "v.mp4").exists()


def test_pipeline_refuses_a_model_of_the_other_mode(teacher, synth_wenet):
    from dhm.spec import GeneratorSpec

    with pytest.raises(SpecError, match="wenet 8-frame windows are"):
        AvatarPipeline(load(teacher), open_dataset(synth_wenet), GeneratorSpec(mode="wenet").conventions)


def test_stream_lookahead_follows_the_models_window(tmp_path, synth_hubert):
    """A 16-frame model renders frame i once frame i+7 has arrived, and the stream still
    equals offline rendering."""
    import torch

    from dhm.models import build_model, save_checkpoint
    from dhm.spec import GeneratorSpec

    spec = GeneratorSpec(widths=(4, 8, 8, 16, 16), revision="2024-10-14")
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "w16.pt", build_model(spec).eval(), spec)
    engine = load(tmp_path / "w16.pt", threads=1)
    pipe = AvatarPipeline(engine, open_dataset(synth_hubert), engine.conventions)
    feats = np.load(synth_hubert / "aud_hu.npy")[:12]
    session = StreamSession(pipe)
    assert session.lookahead == 7 and session.push(feats[:7]) == []
    streamed = session.push(feats[7:8]) + session.push(feats[8:]) + session.finish()
    offline = list(pipe.frames(feats))
    assert len(streamed) == 12 and all(np.array_equal(a, b) for a, b in zip(streamed, offline, strict=True))


@pytest.mark.slow
def test_demo_quick_caches_stages_and_reruns_what_changed(tmp_path, monkeypatch):
    from dhm.app.demo import run_demo

    work = tmp_path / "demo"
    first = run_demo(work, quick=True, full=True, log=lambda m: None)
    assert first["ran"] == [
        "data", "teacher", "student", "quant", "export", "video", "bench", "audio", "export_audio", "video_audio"
    ]  # fmt: skip
    # --full: the audio student, exported into the INT8 student's audio-model slot, rendered from PCM
    am = json.loads((work / "export_audio" / "manifest.json").read_text())["audio_model"]
    assert am["frontend"] == "dhm-audio-student-v1:dhm-tcn" and am["artifacts"][0]["parity"]["passed"]
    from dhm.runtime_py.mp4 import read_mp4

    from dhm.app.demo import QUICK

    for video in (work / "video" / "teacher_vs_int8.mp4", work / "video_audio" / "teacher_vs_int8_audio_student.mp4"):
        info = read_mp4(video)  # what a person plays: H.264 frames with the clip's sound under them
        assert (info.video_codec, info.audio_codec, info.frames) == ("h264", "aac", QUICK.video_frames), video
        assert abs(info.audio_seconds - QUICK.video_frames / 25) < 0.1, video
    assert "Audio student (--full" in first["table"] and "ignoring the audio" in first["table"]
    variants = {(r["engine"], r["variant"]) for r in first["rows"]}
    assert variants >= {("torch", "fp32"), ("onnxruntime", "int8"), ("mnn", "int8"), ("mnn", "fp16")}
    # latency against a same-run reference: the student (a fraction of the teacher's MACs) is faster
    # than the teacher on the same engine (a shared host slows both alike), and no row is an order
    # of magnitude off the others
    p50 = {(r["model"], r["engine"], r["variant"]): r["latency_ms"] for r in first["rows"]}
    assert p50[("student", "mnn", "fp32")] < p50[("teacher", "mnn", "fp32")], p50
    assert max(p50.values()) < 20 * min(p50.values()), p50
    # the student and the bench are judged on QUICK.judge_frames, the teacher on eval_frames
    assert "On 8 held-out frames (never trained on)." in first["table"]
    split = json.loads((work / "student" / "report.json").read_text())["split"]
    assert len(split["eval_frames"]) == 8
    assert len(json.loads((work / "teacher" / "report.json").read_text())["split"]["eval_frames"]) == 6
    assert "| student | mnn | int8 |" in first["table"]
    assert all(r["end_to_end_fps"] > 0 for r in first["rows"])
    bench = json.loads((work / "bench" / "bench.json").read_text())
    assert bench["schema"] == "dhm.bench/2" and (work / "bench" / "bench_pareto.png").is_file()
    # the student's export carries its audio model; the summary reports the PCM -> frames loop
    assert json.loads((work / "export" / "manifest.json").read_text())["audio_model"]["frontend"] == "dhm-logmel-v1"
    assert {a["id"] for a in first["audio"]} >= {"student/mnn/int8"}
    assert "Audio in, frames out (student/mnn/int8" in first["table"]

    again = run_demo(work, quick=True, full=True, log=lambda m: None)
    assert again["ran"] == [] and len(again["skipped"]) == 10

    # a stage's product changed by hand (the manifest the video and the bench read, rewritten with
    # the same content): that stage is kept, and everything built from it runs again. The bench
    # ran for real above; here only whether the demo calls it again is the question, so its
    # second run hands back the first one's record (20 s of timing saved).
    import shutil

    import dhm.bench.api

    manifest = work / "export" / "manifest.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()), indent=4))
    record = tmp_path / "bench.json"
    shutil.copy(work / "bench" / "bench.json", record)
    benched = []

    def bench_again(models, teacher, data, settings, json_path, report_path, log):
        benched.append(models)
        shutil.copy(record, json_path)

    monkeypatch.setattr(dhm.bench.api, "run_bench", bench_again)
    third = run_demo(work, quick=True, log=lambda m: None)
    assert benched == [[f"student={work / 'export'}"]]
    assert third["ran"] == ["video", "bench"]
    assert third["skipped"] == ["data", "teacher", "student", "quant", "export"]


def test_the_shipped_demo_teacher_is_this_recipes_teacher(tmp_path):
    """`make demo` starts from the teacher dhm ships (trained once by the demo's own recipe) instead
    of training it for 7-9 minutes; a changed recipe (training defaults, widths, steps) must ship a
    new one, or every demo trains it again."""
    import torch

    from dhm.app.demo import DEFAULT, QUICK, _shipped_teacher, _unpack_teacher
    from dhm.models.checkpoint import load_checkpoint

    payload = _shipped_teacher(DEFAULT)
    assert payload is not None, (
        "dhm/app/demo_teacher.pt was trained by another recipe: `dhm demo --train-teacher --workdir W`, then "
        "`python -c 'from pathlib import Path; from dhm.app.demo import pack_teacher; "
        'pack_teacher(Path("W/teacher"))\'`'
    )
    assert _shipped_teacher(QUICK) is None  # the quick demo trains its own
    _unpack_teacher(payload, tmp_path / "teacher")
    loaded = load_checkpoint(tmp_path / "teacher" / "model.pt")
    assert loaded.spec.widths == (16, 32, 64, 128, 256) and loaded.metadata["kind"] == "train"
    assert all(v.dtype == torch.float32 for v in loaded.model.state_dict().values() if v.is_floating_point())
    report = json.loads((tmp_path / "teacher" / "report.json").read_text())
    assert report["kind"] == "train" and report["config"]["steps"] == DEFAULT.teacher_steps
