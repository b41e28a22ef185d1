"""`dhm demo`: the whole pipeline on the built-in data, with cached stages.

synth data -> the teacher (shipped, or trained) -> distil a student -> quantize (FP16, INT8) -> export
ONNX and MNN -> render a side-by-side video (teacher | INT8 student) -> `dhm bench`
(parity and latency against the teacher) -> one summary table from the bench's figures.

Each stage records a fingerprint of its settings and of its inputs' outputs in
`<stage>/.stage.json`; a second run skips stages whose fingerprint is unchanged, and a
changed input re-runs it and everything downstream.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dhm.spec import JUDGE_FRAMES


STAGE_FILE = ".stage.json"
# The default demo's teacher, trained once by the demo's own recipe (`dhm train --widths mobile
# --steps 300` on the built-in data: 7-9 min on a 2-core host) and shipped with dhm, as a user
# arrives with a trained model; its weights in float16 (6 MB instead of 12). `dhm demo
# --train-teacher` trains it here instead; a changed recipe trains it too.
SHIPPED_TEACHER = Path(__file__).with_name("demo_teacher.pt")


@dataclass(frozen=True)
class DemoConfig:
    frames: int
    teacher_widths: str
    teacher_steps: int
    student: str
    student_steps: int
    calib_frames: int
    eval_frames: int  # the teacher's and quantize's held-out evaluation
    judge_frames: int  # the student's held-out evaluation and the bench's parity
    video_frames: int
    bench_threads: tuple[int, ...]
    bench_runs: int
    bench_e2e_frames: int
    audio_steps: int = 2000  # --full: the audio student (dhm-tcn size s)
    mnn_method: str = "auto"  # MNN INT8 calibration; auto tries EMA, KL, ADMM until one meets the target
    arm_frames: int | None = None  # parity frames rerun on MNN's aarch64 kernels (qemu: 0.6-2.5 s a frame)
    teacher_pool: int = 0  # distill --teacher-pool: the teacher's outputs on this many pairs, computed once
    bench_loop_frames: int = 100  # bench --loop-frames: frames timed per PCM -> frames loop
    # quantize's held-out frames and export's validation frames: every MNN file is also run on
    # MNN's aarch64 kernels under qemu, ~1 s a frame in FP32 and 2.5 s in FP16 for the demo's student
    quant_eval_frames: int | None = None  # None: eval_frames
    export_frames: int = 8
    student_eval_every: int = 0  # 0: distill's default, steps / 6
    teacher_eval_every: int = 0  # 0: train's default, steps / 6
    student_stem: str = "full"  # distill --student-stem


DEFAULT = DemoConfig(
    frames=500,
    teacher_widths="mobile",
    teacher_steps=300,
    # Widths in 8-channel packs, 5.1x fewer MACs than the teacher (163 MMACs): on the shipped
    # teacher, 1000 steps reach 30.75 dB in the lip box (4,16,20,36,76, 108 MMACs, reached
    # 28.83), and a step takes 536 against 706 ms (4 channels at 160x160 and widths off the
    # packs vectorize poorly; docs/measurements.md). The second level stays 16: it is also the
    # audio branch's first layer (16 input channels for an 8-frame HuBERT window); at 8 the
    # student misses the teacher's teeth in half-open mouths (distill/presets.py).
    # Not the s2d stem: its 8,16,36,68,136 after 1000 steps paints INT8 lips at 29.74 dB, under
    # the 30 the demo shows, and more steps take the time its faster steps save ("The s2d stem").
    student="8,16,24,48,96",
    # 1000 steps on a pool of 1024 teacher outputs computed once (docs/distill.md)
    student_steps=1000,
    teacher_pool=1024,
    student_eval_every=500,
    calib_frames=24,
    eval_frames=16,
    # Every frame of the evaluation blocks (50 of 500; dhm.spec.JUDGE_FRAMES): the student's
    # figures on 16 of them were 1.3 dB off its figures on all 50 in the lip box (28.6 against
    # 29.9 dB), as large as the differences being measured.
    judge_frames=JUDGE_FRAMES,
    video_frames=250,
    bench_threads=(1, 2),
    # 30 timed runs a candidate and thread count (6 in each of 5 rounds), 12 end-to-end frames, a
    # 50-frame PCM loop: the bench's figures on the demo's 9 candidates in about half its minutes
    bench_runs=30,
    bench_e2e_frames=12,
    bench_loop_frames=50,
    # INT8 calibration by EMA, the method `auto` chose on every demo run (docs/quantize.md), once
    mnn_method="EMA",
    # the aarch64 kernels under qemu take 0.6-2.5 s a frame and a model: 4 frames show the numerics
    arm_frames=4,
    quant_eval_frames=8,
    export_frames=4,
)
QUICK = DemoConfig(
    frames=160,
    teacher_widths="8,16,32,64,128",
    teacher_steps=20,
    student="4,8,12,16,32",
    student_stem="s2d",  # the demo's stem, through quantize, export, video and bench
    student_steps=10,
    student_eval_every=5,
    teacher_eval_every=20,  # once, at the end: its curve is not what the quick demo shows
    calib_frames=8,
    eval_frames=6,
    judge_frames=8,  # not eval_frames: the quick-demo test tells them apart
    video_frames=20,
    # 1 thread: a 2-thread MNN run waits on its pool's second thread, and on a loaded host (the
    # test suite's other process) that wait alone put the student's p50 above the teacher's
    bench_threads=(1,),
    # 12 runs in 4 rounds: a burst of load on one model's turn moves 3 of its 12 samples, not 3 of 6 (its median)
    bench_runs=12,
    bench_e2e_frames=3,
    audio_steps=10,
    mnn_method="EMA",  # the method search is quantize's own test's business
    teacher_pool=32,
    bench_loop_frames=1,  # one timed pass over the held-out speech
)


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Path):
            h.update(p.read_bytes() if p.is_file() else str(p).encode())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


class _Stages:
    def __init__(self, workdir: Path, log: Callable[[str], None]) -> None:
        self.workdir = workdir
        self.log = log
        self.ran: list[str] = []
        self.skipped: list[str] = []

    def run(self, name: str, fingerprint: str, fn: Callable[[Path], None], product: str) -> str:
        """Run `fn(folder)` unless its fingerprint matches; returns the product's digest."""
        folder = self.workdir / name
        record = folder / STAGE_FILE
        if record.is_file():
            saved = json.loads(record.read_text())
            if saved.get("fingerprint") == fingerprint and (folder / product).exists():
                self.skipped.append(name)
                self.log(f"[{name}] up to date, skipped")
                # the product's current digest: if someone replaced it, dependants re-run
                return _digest(folder / product)
        self.log(f"[{name}] running")
        t0 = time.perf_counter()
        fn(folder)
        digest = _digest(folder / product)
        record.write_text(
            json.dumps({"fingerprint": fingerprint, "product": digest, "seconds": round(time.perf_counter() - t0, 1)})
        )
        self.ran.append(name)
        return digest


def run_demo(
    workdir: str | Path,
    quick: bool = False,
    log: Callable[[str], None] = print,
    full: bool = False,
    train_teacher: bool = False,
) -> dict[str, Any]:
    """The recipe, a stage at a time (each reused when its fingerprint is unchanged):
    1 data, 2 teacher (the shipped one when its recipe is this one, unless `train_teacher`),
    3 student, 4 quant, 5 export, 6 video, 7 bench, then the summary."""
    from dhm.io import check_output, ensure_writable_dir, write_owner

    cfg = QUICK if quick else DEFAULT
    # Its stages replace their own folders: the workdir must be new, empty or an earlier demo's.
    check_output(workdir, kind="dir", command="demo")
    workdir = ensure_writable_dir(workdir)
    write_owner(workdir, "demo")
    st = _Stages(workdir, log)
    t0 = time.perf_counter()
    digests = _model_stages(st, cfg, workdir, train_teacher)
    result = _output_stages(st, cfg, workdir, digests, quick, log)
    threads = max(cfg.bench_threads)
    rows = _summary_rows(result, threads)
    audio = [(loop, a) for a in result.get("audio") or [] for loop in a["loop"] if loop["threads"] == threads]
    notes = _summary_notes(result, cfg, audio, threads)
    if full:
        data, teacher = workdir / "data", workdir / "teacher" / "model.pt"
        notes.append(
            _audio_student_stages(
                st, cfg, workdir, data, digests["data"], teacher, digests["teacher"], digests["quant"], log
            )
        )
    summary = {
        "workdir": str(workdir),
        "quick": quick,
        "ran": st.ran,
        "skipped": st.skipped,
        "seconds": round(time.perf_counter() - t0, 1),
        "rows": rows,
        "audio": [{"id": a["id"], **loop} for loop, a in audio],
        "table": "\n".join(_summary_table(rows, threads) + notes),
        "video": str(workdir / "video" / "teacher_vs_int8.mp4"),
        "bench_report": str(workdir / "bench" / "bench.md"),
    }
    (workdir / "summary.md").write_text("# dhm demo\n\n" + summary["table"] + "\n")
    (workdir / "summary.json").write_text(
        json.dumps({k: v for k, v in summary.items() if k != "table"}, indent=2, default=float) + "\n"
    )
    return summary


def teacher_recipe(cfg: DemoConfig) -> str:
    """What the demo's teacher is trained from, the data by its recipe (frames, seed) rather
    than its bytes, whose float rounding may differ between CPUs."""
    from dhm.distill.weights import TRAIN_DEFAULTS, TRAIN_LR

    return _digest("teacher", cfg.frames, 0, cfg.teacher_widths, cfg.teacher_steps, cfg.eval_frames, TRAIN_DEFAULTS,
                   TRAIN_LR)  # fmt: skip


def _shipped_teacher(cfg: DemoConfig) -> dict[str, Any] | None:
    """The shipped teacher's payload when it was trained by this recipe, else None."""
    import torch

    if not SHIPPED_TEACHER.is_file():
        return None
    payload = torch.load(SHIPPED_TEACHER, map_location="cpu", weights_only=True)
    return payload if payload["demo"]["recipe"] == teacher_recipe(cfg) else None


def pack_teacher(teacher_dir: Path, cfg: DemoConfig = DEFAULT, out: Path = SHIPPED_TEACHER) -> Path:
    """A demo workdir's trained teacher (`dhm demo --train-teacher`) as the file dhm ships."""
    import torch

    from dhm.models.checkpoint import write_torch
    from dhm.io import atomic_path

    payload = torch.load(teacher_dir / "model.pt", map_location="cpu", weights_only=True)
    payload["model"] = {k: v.half() if v.is_floating_point() else v for k, v in payload["model"].items()}
    payload["demo"] = {"recipe": teacher_recipe(cfg), "report": (teacher_dir / "report.json").read_text()}
    with atomic_path(out) as tmp:
        write_torch(payload, tmp, out)
    return out


def _unpack_teacher(payload: dict[str, Any], out: Path) -> None:
    """The shipped teacher as the checkpoint `dhm train` would have written, with its report."""
    from dhm.io import atomic_path
    from dhm.models.checkpoint import write_torch

    out.mkdir(parents=True, exist_ok=True)
    model = {k: v.float() if v.is_floating_point() else v for k, v in payload["model"].items()}
    with atomic_path(out / "model.pt") as tmp:
        write_torch({"model": model, "dhm": payload["dhm"]}, tmp, out / "model.pt")
    (out / "report.json").write_text(payload["demo"]["report"])


def _model_stages(st: "_Stages", cfg: DemoConfig, workdir: Path, train_teacher: bool = False) -> dict[str, str]:
    """1 data, 2 teacher, 3 student, 4 quant; their digests. A stage's fingerprint holds
    everything its result depends on, the objective's defaults included: a changed default
    retrains instead of reusing a stale cached model."""
    from dhm.data.synth import write_synth_dataset
    from dhm.distill import TrainingSettings, distill_student, train_generator
    from dhm.distill.weights import DISTILL_DEFAULTS, DISTILL_EMA, DISTILL_LR
    from dhm.quantize.api import quantize_model
    from dhm.quantize.config import QuantizeConfig
    from dhm.spec import GeneratorSpec

    data, teacher, student = workdir / "data", workdir / "teacher" / "model.pt", workdir / "student" / "student.pt"
    d = {}
    d["data"] = st.run(
        "data", _digest("synth", cfg.frames, 0),
        lambda o: write_synth_dataset(o, frames=cfg.frames, seed=0, force=True), "aud_hu.npy",
    )  # fmt: skip
    teacher_run = TrainingSettings(steps=cfg.teacher_steps, eval_frames=cfg.eval_frames,
                                   eval_every=cfg.teacher_eval_every)  # fmt: skip
    shipped = None if train_teacher else _shipped_teacher(cfg)

    def make_teacher(o: Path) -> None:
        if shipped is None:
            train_generator(data, o, GeneratorSpec(widths=cfg.teacher_widths), teacher_run, force=True)
            return
        _unpack_teacher(shipped, o)
        st.log(f"[teacher] the teacher dhm ships, trained by this recipe ({cfg.teacher_steps} steps of "
               f"`dhm train --widths {cfg.teacher_widths}`); --train-teacher trains it here")  # fmt: skip

    d["teacher"] = st.run(
        "teacher", _digest("teacher", d["data"], teacher_recipe(cfg), "shipped" if shipped else "trained"),
        make_teacher, "model.pt",
    )  # fmt: skip
    student_run = TrainingSettings(
        steps=cfg.student_steps, lr=DISTILL_LR, ema=DISTILL_EMA, eval_frames=cfg.judge_frames,
        teacher_pool=cfg.teacher_pool, eval_every=cfg.student_eval_every,
    )  # fmt: skip
    student_fp = _digest(
        "student", d["teacher"], cfg.student, cfg.student_steps, cfg.judge_frames, DISTILL_DEFAULTS, DISTILL_LR,
        DISTILL_EMA, cfg.teacher_pool, cfg.student_eval_every,
        *([cfg.student_stem] if cfg.student_stem != "full" else []),  # a full student's cache stays valid
    )  # fmt: skip
    d["student"] = st.run(
        "student", student_fp,
        lambda o: distill_student(
            teacher, data, o, student=cfg.student, student_stem=cfg.student_stem, settings=student_run, force=True
        ),
        "student.pt",
    )  # fmt: skip
    quant_eval = cfg.quant_eval_frames or cfg.eval_frames
    quant = QuantizeConfig(calib_frames=cfg.calib_frames, eval_frames=quant_eval, mnn_method=cfg.mnn_method)
    d["quant"] = st.run(
        "quant", _digest("quant", d["student"], cfg.calib_frames, quant_eval, cfg.mnn_method),
        lambda o: quantize_model(student, o, data, quant, force=True), "recipe.json",
    )  # fmt: skip
    return d


def _output_stages(
    st: "_Stages", cfg: DemoConfig, workdir: Path, d: dict[str, str], quick: bool, log: Callable[[str], None]
) -> dict[str, Any]:
    """5 export, 6 video, 7 bench; the bench's result."""
    from dhm.bench.api import BenchSettings, run_bench
    from dhm.export.config import ExportConfig
    from dhm.export.pipeline import export_model
    from dhm.runtime_py.video import render_video

    data, teacher = workdir / "data", workdir / "teacher" / "model.pt"
    quant, export = workdir / "quant", workdir / "export"
    # video and bench follow the export's product, so a hand-changed export reruns them too
    export_config = ExportConfig(variants=["fp32", "fp16", "int8"], data=data, frames=cfg.export_frames)
    export_fp = st.run(
        "export", _digest("export", d["quant"], cfg.export_frames),
        lambda o: export_model(quant, o, export_config, force=True), "manifest.json",
    )  # fmt: skip

    def video(o: Path) -> None:
        # PCM in, frames out: the teacher through dhm's numpy front end, the INT8 student
        # through its exported audio model (audio_fp32.mnn), both streamed in 20 ms chunks.
        from dhm.audio.frontend import SAMPLE_RATE, read_pcm, write_wav

        o.mkdir(parents=True, exist_ok=True)
        write_wav(o / "audio.wav", read_pcm(data / "aud.wav")[0][: cfg.video_frames * SAMPLE_RATE // 25])
        render_video(
            teacher, data, o / "teacher_vs_int8.mp4", wav=o / "audio.wav", side_by_side=export / "model_int8.mnn",
            log=log, force=True,
        )  # fmt: skip

    st.run("video", _digest("video", export_fp, d["teacher"], cfg.video_frames), video, "teacher_vs_int8.mp4")
    settings = BenchSettings(
        threads=cfg.bench_threads, runs=cfg.bench_runs, warmup=3, rounds=5 if not quick else 4,
        frames=cfg.judge_frames, arm_frames=cfg.arm_frames, e2e_frames=cfg.bench_e2e_frames,
        loop_frames=cfg.bench_loop_frames,
    )  # fmt: skip

    def bench(o: Path) -> None:
        o.mkdir(parents=True, exist_ok=True)
        run_bench(
            [f"student={export}"], teacher, data, settings, json_path=o / "bench.json", report_path=o / "bench.md",
            log=log,
        )  # fmt: skip

    bench_fp = _digest(
        "bench", export_fp, d["teacher"], cfg.bench_threads, cfg.bench_runs, cfg.judge_frames, cfg.arm_frames,
        cfg.bench_loop_frames,
    )  # fmt: skip
    st.run("bench", bench_fp, bench, "bench.json")
    return json.loads((workdir / "bench" / "bench.json").read_text())


def _threads(n: int) -> str:
    return f"{n} thread" + ("s" if n != 1 else "")


def _summary_rows(result: dict[str, Any], threads: int) -> list[dict[str, Any]]:
    """Every variant against the teacher, from the bench's same-run figures."""
    latency = {r["id"]: r for r in result["host"] if r["threads"] == threads}
    rows = []
    for e in result["entries"]:
        rec = latency[e["id"]]
        gen = e.get("generation", {})
        rows.append(
            {
                "model": e["model"],
                "engine": e["backend"],
                "variant": e["variant"],
                "file": Path(e["file"]).name,
                "macs": e["macs"],
                "size_bytes": e["size_bytes"],
                "latency_ms": rec["latency_ms"]["p50"],
                "end_to_end_fps": rec["end_to_end"]["fps"],
                "psnr_vs_teacher": e["parity"]["psnr"],
                "arm_psnr_vs_teacher": (e.get("parity_arm") or {}).get("psnr"),
                "lip_psnr_vs_teacher": e["parity"].get("lip_psnr"),
                "lip_color_diff": e["parity"].get("lip_color_diff"),
                "generation_psnr_vs_teacher": gen.get("psnr"),
                "lip_sync": gen.get("lip_sync"),
            }
        )
    return rows


def _summary_table(rows: list[dict[str, Any]], threads: int) -> list[str]:
    from dhm.io import human_size

    table = [
        f"| model | engine | variant | MACs/frame | size | host latency p50 ({_threads(threads)}) | end-to-end fps | "
        "PSNR vs teacher | PSNR on ARM | lip-box PSNR | lip colour Δ | generation PSNR | lip sync |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ps = _db(r["psnr_vs_teacher"])
        if rows[0] is not r and r["model"] == "teacher":
            ps += " (export)"
        table.append(
            f"| {r['model']} | {r['engine']} | {r['variant']} | {r['macs'] / 1e6:.1f} M | "
            f"{human_size(r['size_bytes'])} | {r['latency_ms']:.2f} ms | {r['end_to_end_fps']:.0f} | {ps} | "
            f"{_db(r['arm_psnr_vs_teacher'])} | "
            f"{_db(r['lip_psnr_vs_teacher'])} | {_num(r['lip_color_diff'], '.1f')} | "
            f"{_db(r['generation_psnr_vs_teacher'])} | {_num(r['lip_sync'], '.3f')} |"
        )
    return table


def _summary_notes(result: dict[str, Any], cfg: DemoConfig, audio: list, threads: int) -> list[str]:
    """What the table's figures are measured on, and the PCM loop's line."""
    gt_sync = result["data"].get("ground_truth_lip_sync")
    notes = [
        "",
        f"On {len(result['data']['parity_frames'])} held-out frames (never trained on). "
        "PSNR, lip-box PSNR and lip colour Δ (levels): inference protocol (reference frame = target, as the apps run). "
        "PSNR on ARM: the same MNN file on MNN's aarch64 kernels (qemu-user), as phones compute it (– where not "
        "measured: `make arm-env`)"
        + (
            f", on the first {cfg.arm_frames} of those frames (x86 on the same frames in the bench report). "
            if cfg.arm_frames
            else ". "
        )
        + "Generation PSNR and lip sync: reference = another held-out frame, so the mouth comes from the audio; "
        "lip sync "
        f"correlates the synth's true mouth opening with the generated one (ground truth: {_num(gt_sync, '.3f')}).",
    ]
    int8 = [(loop, a) for loop, a in audio if a["id"].endswith("/mnn/int8")]
    if int8:
        loop, a = int8[0]
        notes.append(
            f"\nAudio in, frames out ({a['id']}, {_threads(threads)}): PCM -> {a['audio_model']} -> generator -> "
            f"frames at {loop['fps']:.0f} fps; audio-to-frame latency p50 {loop['latency_ms']['p50']:.0f} ms, "
            f"p99 {loop['latency_ms']['p99']:.0f} ms ({a['lookahead_ms']:.0f} ms of it is the model's lookahead); the "
            f"audio model costs {a['ms_per_second_of_audio_1_thread']:.1f} ms per second of audio on 1 thread."
        )
    return notes


def _audio_student_stages(
    st, cfg, workdir: Path, data: Path, data_digest, teacher, teacher_digest, quant_digest, log
) -> str:
    """--full: distill-audio on the teacher's features, the INT8 student exported with that
    audio student, and a video from PCM through it; returns the summary's line."""
    from dhm.distill.audio import AudioDistillSettings, AudioStudentChoice, distill_audio
    from dhm.export.config import ExportConfig
    from dhm.export.pipeline import export_model
    from dhm.runtime_py.video import render_video

    from dhm.audio.frontend import SAMPLE_RATE, read_pcm, write_wav

    audio_fp = _digest("audio", data_digest, teacher_digest, cfg.audio_steps, AudioDistillSettings())
    audio_digest = st.run(
        "audio",
        audio_fp,
        lambda d: distill_audio(
            data, d, generator=teacher, student=AudioStudentChoice(size="s"),
            settings=AudioDistillSettings(steps=cfg.audio_steps), force=True, progress=False,
        ),
        "audio_student.pt",
    )  # fmt: skip
    student = workdir / "audio" / "audio_student.pt"
    export_fp = _digest("export_audio", quant_digest, audio_digest)
    st.run(
        "export_audio",
        export_fp,
        lambda d: export_model(
            workdir / "quant",
            d,
            ExportConfig(targets=["mnn"], variants=["int8"], data=data, audio_model=student),
            force=True,
        ),
        "manifest.json",
    )

    def video(d: Path) -> None:
        d.mkdir(parents=True, exist_ok=True)
        write_wav(d / "audio.wav", read_pcm(data / "aud.wav")[0][: cfg.video_frames * SAMPLE_RATE // 25])
        render_video(
            teacher, data, d / "teacher_vs_int8_audio_student.mp4", wav=d / "audio.wav",
            side_by_side=workdir / "export_audio" / "model_int8.mnn", log=log, force=True,
        )  # fmt: skip

    st.run("video_audio", _digest("video_audio", export_fp, teacher_digest, cfg.video_frames), video,
           "teacher_vs_int8_audio_student.mp4")  # fmt: skip
    r = json.loads((workdir / "audio" / "report.json").read_text())
    g, h, c = r["generator"], r["heldout"], r["cost"]
    am = json.loads((workdir / "export_audio" / "manifest.json").read_text())["audio_model"]
    return (
        f"\nAudio student (--full; `dhm distill-audio`, dhm-tcn s, {c['params'] / 1e6:.2f} M parameters, "
        f"{c['gmacs_per_second']:.3f} GMACs per second of audio, {c['lookahead_ms']:.0f} ms lookahead): on "
        f"{h['frames']} held-out frames its features score cosine {h['student']['cosine']:.3f} against the "
        f"teacher's (a student ignoring the audio: {h['mean_feature']['cosine']:.3f}); the teacher driven by them "
        f"scores {_db(g['student']['psnr'])} PSNR, {_db(g['student'].get('lip_psnr'))} in the lip box against "
        f"itself driven by the teacher's features (ignoring the audio: {_db(g['mean_feature']['psnr'])}). "
        f"Exported as {am['artifacts'][0]['file']} beside the INT8 student (max abs "
        f"{am['artifacts'][0]['parity']['max_abs']:.1e} vs torch); video from PCM through it: "
        f"{workdir / 'video_audio' / 'teacher_vs_int8_audio_student.mp4'}. The built-in features are a log-mel "
        "projection, the easiest teacher there is: this says nothing about HuBERT or wenet."
    )


def _db(v: Any) -> str:
    from dhm.manifest import format_figure

    return format_figure(v, ".2f", " dB")


def _num(v: Any, fmt: str) -> str:
    from dhm.manifest import format_figure

    return format_figure(v, fmt)
