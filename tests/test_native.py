"""The native side, short of a phone: the C++ core against golden vectors from runtime_py,
the JNI glue on the JVM and the Objective-C++ bridge under GNUstep (the apps' own builds are
in test_apps.py). `make native-deps` installs the Debian packages these need."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "avatar_core"
ANDROID = ROOT / "android_demo"
IOS = ROOT / "ios_demo"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: run `make native-deps` (Debian packages for the native tests)")
    return path


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def _golden(work: Path, checkpoint: Path, data: Path, audio_model: Path | None = None) -> Path:
    from dhm.export.config import ExportConfig
    from dhm.export.pipeline import export_model

    config = ExportConfig(targets=["mnn"], variants=["fp32"], data=data, frames=4, audio_model=audio_model)
    export_model(checkpoint, work / "export", config)
    r = run_cli("golden", work / "export" / "model_fp32.mnn", "--data", data, "-o", work / "golden", "--frames", "6")
    assert r.exit_code == 0, r.output
    return work / "golden"


@pytest.fixture(scope="module")
def golden(tmp_path_factory, teacher, synth_hubert) -> Path:
    """Golden vectors: the teacher (2026-05-23 conventions: INTER_AREA crops, here enlarging
    a ~138 px box) exported to MNN, run by runtime_py on 6 frames."""
    return _golden(tmp_path_factory.mktemp("native"), teacher, synth_hubert)


@pytest.fixture(scope="module")
def core_build(tmp_path_factory) -> Path:
    need("cmake")
    build = tmp_path_factory.mktemp("core") / "build"
    run(["cmake", "-S", CORE, "-B", build, "-DCMAKE_BUILD_TYPE=Release"])
    # the fuzz and soak tests run in the sanitized build only
    run(["cmake", "--build", build, "-j2", "--target", "golden_test", "resize_tool", "manifest_tool"])
    return build


@pytest.fixture(scope="module")
def big_face(tmp_path_factory) -> Path:
    from dhm.data.synth import write_synth_dataset

    return write_synth_dataset(tmp_path_factory.mktemp("bigface") / "data", frames=80, seed=11, scale=1.6)


def _random_model(path: Path, revision: str) -> Path:
    """An untrained model of `revision`'s layout and conventions: the golden vectors test
    the pipeline around the engine (its outputs are recorded and replayed)."""
    import torch

    from dhm.models import build_model, save_checkpoint
    from dhm.spec import GeneratorSpec

    spec = GeneratorSpec(widths=(4, 8, 8, 16, 16), revision=revision)
    torch.manual_seed(0)
    return save_checkpoint(path, build_model(spec).eval(), spec)


def test_core_streams_pcm_of_a_wenet_model(tmp_path, core_build, synth_wenet):
    """wenet frames read hops 5i-8 … 5i+7: the stream's start (rows before 0) and tail (rows
    past the last mel hop are zeros) rules, which a hubert utterance never reaches."""
    import torch

    from dhm.audio.frontend import FRONTEND_ID
    from dhm.models import build_model, save_checkpoint
    from dhm.spec import GeneratorSpec

    spec = GeneratorSpec(mode="wenet", widths=(4, 8, 8, 16, 16))
    torch.manual_seed(0)
    model = save_checkpoint(tmp_path / "wenet.pt", build_model(spec).eval(), spec, audio_frontend=FRONTEND_ID)
    out = _check_golden(core_build, _golden(tmp_path, model, synth_wenet))
    assert "pcm: 5001 samples -> 6 frames" in out and "lookahead 186 ms" in out, out


@pytest.mark.parametrize("family", ["dhm-tcn", "featherhubert", "dhm-tcn-wenet"])
def test_core_streams_pcm_through_an_audio_student(tmp_path, core_build, teacher, synth_hubert, synth_wenet, family):
    """An audio student's geometry (one stateless call per frame, its own pad and window)
    in the C++ PcmFeatureStream: the core's frames equal runtime_py's for every chunking,
    for hubert students of both families and a wenet student beside a wenet generator."""
    import torch

    from dhm.models import build_model, save_checkpoint
    from dhm.audio.student import SIZES, StudentConfig, build_student, save_student
    from dhm.audio.feather_hubert import FEATHER_SIZES, FeatherConfig, build_feather
    from dhm.spec import GeneratorSpec

    torch.manual_seed(0)
    generator, data = teacher, synth_hubert
    if family == "featherhubert":
        config = FeatherConfig(context=1, **FEATHER_SIZES["s"])
        model = build_feather(config)[1]
    else:
        mode = "wenet" if family.endswith("wenet") else "hubert"
        config = StudentConfig(mode=mode, **SIZES["s"])
        model = build_student(config)
        if mode == "wenet":
            spec = GeneratorSpec(mode="wenet", widths=(4, 8, 8, 16, 16))
            generator = save_checkpoint(tmp_path / "wenet.pt", build_model(spec).eval(), spec)
            data = synth_wenet
    save_student(tmp_path / "student.pt", model.eval(), config, {})
    out = _check_golden(core_build, _golden(tmp_path, generator, data, audio_model=tmp_path / "student.pt"))
    assert re.search(r"pcm: \d+ samples -> 6 frames for chunks of 1, 97, 320 and all; frames max [01] LSB", out), out


def _check_golden(build: Path, golden: Path) -> str:
    out = run([build / "golden_test", golden]).stdout
    assert out.strip().endswith("OK"), out
    face = float(re.search(r"face input: max abs ([\d.]+)", out).group(1))
    lsb = float(re.search(r"pasted frame: max ([\d.]+) LSB", out).group(1))
    assert face <= 1 / 255 + 1e-6 and lsb <= 1, out
    assert "golden cases: 6" in out
    return out


def test_core_matches_runtime_py_on_golden_vectors(golden, core_build):
    out = _check_golden(core_build, golden)
    assert "crop filter: area" in out and "audio window 8 frames" in out
    # PCM -> audio model -> frames: the core's PcmSession reproduces runtime_py's
    assert re.search(r"pcm: 4041 samples -> 6 frames for chunks of 1, 97, 320 and all; frames max [01] LSB", out), out
    sides = re.search(r"crop boxes (\d+)\.\.(\d+) px", out)
    assert int(sides.group(2)) < 168, out  # INTER_AREA enlarging: OpenCV's area-weighted bilinear


def test_core_cross_built_for_aarch64_matches_under_qemu(golden, tmp_path):
    """The core as phones compile it (aarch64, GCC fuses multiply-adds there by default;
    the core builds with -ffp-contract=off) runs the golden vectors under qemu-aarch64:
    the same inputs, frames and PCM frames as runtime_py."""
    cxx = need("aarch64-linux-gnu-g++")
    qemu = need("qemu-aarch64-static")
    need("cmake")
    toolchain = tmp_path / "aarch64.cmake"
    toolchain.write_text(
        f"set(CMAKE_SYSTEM_NAME Linux)\nset(CMAKE_SYSTEM_PROCESSOR aarch64)\nset(CMAKE_CXX_COMPILER {cxx})\n"
    )
    build = tmp_path / "build"
    run(["cmake", "-S", CORE, "-B", build, "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_TOOLCHAIN_FILE={toolchain}"])
    run(["cmake", "--build", build, "-j2", "--target", "golden_test"])
    assert (build / "golden_test").read_bytes()[18:20] == b"\xb7\x00"  # ELF e_machine: EM_AARCH64
    out = run([qemu, "-L", "/usr/aarch64-linux-gnu", build / "golden_test", golden]).stdout
    assert out.strip().endswith("OK"), out
    assert "face input: max abs 0.000000" in out and re.search(r"pasted frame: max [01] LSB", out), out
    assert re.search(r"pcm: 4041 samples -> 6 frames .* frames max [01] LSB", out), out


MNN_HEADERS = os.environ.get("DHM_MNN_INCLUDE")


@pytest.mark.skipif(
    not MNN_HEADERS, reason="DHM_MNN_INCLUDE is not set: MNN's C++ headers are on no registry CI reaches"
)
def test_mnn_engine_on_the_wheels_mnn(golden, tmp_path):
    """src/mnn_engine.cpp compiled against MNN's headers (DHM_MNN_INCLUDE=<MNN>/include, the
    same release as the installed wheel) and linked to the engine inside MNN's Python wheel:
    it must reproduce runtime_py's MNN outputs bit for bit and refuse a manifest whose output
    shape is not the model's."""
    import sysconfig

    import MNN

    need("cmake")
    ext = next(Path(MNN.__file__).parents[1].glob("_mnncengine*.so"))
    libs = Path(MNN.__file__).parents[1] / "mnn.libs"
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libMNN.so").symlink_to(ext)  # no SONAME: give it a library's name
    (tmp_path / "lib" / "mnn.libs").symlink_to(libs)  # its RPATH is $ORIGIN/mnn.libs (libgomp)
    libpython = Path(sysconfig.get_config_var("LIBDIR")) / str(sysconfig.get_config_var("LDLIBRARY"))
    build = tmp_path / "build"
    run(
        [
            "cmake", "-S", CORE, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DDHM_WITH_MNN=ON",
            f"-DMNN_INCLUDE_DIR={MNN_HEADERS}", f"-DMNN_LIBRARY={tmp_path / 'lib' / 'libMNN.so'}",
            f"-DMNN_EXTRA_LIBRARIES={libpython};-Wl,-rpath,{libpython.parent}",
            # the manylinux wheel is built with the pre-C++11 std::string ABI
            "-DCMAKE_CXX_FLAGS=-D_GLIBCXX_USE_CXX11_ABI=0",
        ]
    )  # fmt: skip
    run(["cmake", "--build", build, "-j2", "--target", "mnn_engine_test"])
    out = run([build / "mnn_engine_test", golden, golden.parent / "export" / "model_fp32.mnn"]).stdout
    assert "max abs 0 against dhm.runtime_py" in out and out.strip().endswith("all checks passed"), out
    # PCM -> audio_fp32.mnn -> model_fp32.mnn in C++ reproduces runtime_py's PcmSession
    assert re.search(r"pcm with MNN .*: 6 frames, features max abs [0-9e.-]+, frames max [01] LSB", out), out
    # and with the mouth at rest: the export's vad.mnn decides as in runtime_py, footage in silence
    idle = re.search(r"idle with MNN \(vad.mnn\): (\d+) frames, (\d+) in silence without a model, shares as", out)
    assert idle and int(idle.group(2)) >= 10 and int(idle.group(1)) > int(idle.group(2)), out


@pytest.mark.parametrize("revision,crop,window", [("2026-05-23", "area", 8), ("2024-10-14", "linear", 16)])
def test_core_on_a_face_larger_than_the_crop(tmp_path, core_build, big_face, revision, crop, window):
    """A ~220 px face box: INTER_AREA averages (a non-integer ratio) where the 2026 layout
    asks for it, bilinear where the older revisions crop that way; with a 16-frame window."""
    model = _random_model(tmp_path / "m.pt", revision)
    golden = _golden(tmp_path, model, big_face)
    out = _check_golden(core_build, golden)
    assert f"crop filter: {crop}" in out and f"audio window {window} frames" in out
    assert int(re.search(r"crop boxes (\d+)\.\.", out).group(1)) > 168, out


def test_core_resize_matches_opencv(tmp_path, core_build):
    """The core's kernels against cv2.resize: crops larger and smaller than 168 px, integer
    (2x, 3x) and non-integer ratios, clipped (non-square) boxes, and paste-back sizes."""
    import cv2
    import numpy as np

    from dhm.runtime_py.golden import write_u8

    rng = np.random.default_rng(3)
    worst = {"linear": 0, "area": 0}
    for k, (w, h) in enumerate(
        [(138, 138), (220, 220), (336, 336), (504, 504), (227, 215), (100, 80), (167, 167), (169, 169), (341, 337)]
    ):
        smooth = cv2.resize(rng.integers(0, 256, (9, 9, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
        img = np.clip(smooth.astype(int) + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)
        write_u8(tmp_path / f"src{k}.u8", img)
        sizes = [(168, 168), (w, h), (w + 7, h - 3), (w // 2, h // 2), (113, 97)]
        jobs = [(interp, dw, dh) for interp in ("linear", "area") for dw, dh in sizes]
        outdir = tmp_path / f"out{k}"
        outdir.mkdir()
        subprocess.run(
            [str(core_build / "resize_tool"), str(tmp_path / f"src{k}.u8"), str(outdir)],
            check=True,
            input="".join(f"{i} {a} {b}\n" for i, a, b in jobs),
            text=True,
            capture_output=True,
        )
        for n, (interp, dw, dh) in enumerate(jobs):
            raw = (outdir / f"{n}.u8").read_bytes()
            ours = np.frombuffer(raw[12:], np.uint8).reshape(dh, dw, 3)
            flag = cv2.INTER_AREA if interp == "area" else cv2.INTER_LINEAR
            diff = int(np.abs(ours.astype(int) - cv2.resize(img, (dw, dh), interpolation=flag).astype(int)).max())
            worst[interp] = max(worst[interp], diff)
    # (with OpenCV 5.0 here INTER_AREA was bit-exact; INTER_LINEAR differs by 1 LSB on ~0.1%
    # of values, where OpenCV's scalar tail rounds differently from its vector loop)
    assert worst["linear"] <= 1 and worst["area"] <= 1, worst


def test_jni_glue_on_the_jvm(golden, tmp_path, synth_hubert):
    from dhm.data import open_dataset

    need("cmake")
    javac = Path(need("javac")).resolve()
    java_home = javac.parents[1]
    build = tmp_path / "jni"
    env = {**os.environ, "JAVA_HOME": str(java_home)}
    run(["cmake", "-S", ANDROID / "app/src/main/cpp", "-B", build, "-DCMAKE_BUILD_TYPE=Release"], env=env)
    run(["cmake", "--build", build, "-j2"], env=env)
    assert (build / "libdhm_jni.so").is_file()
    classes = tmp_path / "classes"
    run(
        [
            javac,
            "-d",
            classes,
            ANDROID / "app/src/main/java/ai/dhm/demo/DhmNative.java",
            ANDROID / "host_test/ai/dhm/demo/DhmNativeHostTest.java",
        ]
    )
    n_images = open_dataset(synth_hubert).n_frames  # the ping-pong schedule runs over the clip's frames
    out = run(
        [
            java_home / "bin/java",
            f"-Djava.library.path={build}",
            "-cp",
            classes,
            "ai.dhm.demo.DhmNativeHostTest",
            golden,
            str(n_images),
        ]
    ).stdout
    assert out.strip().endswith("OK"), out
    assert "worst difference 0 LSB" in out or "worst difference 1 LSB" in out
    assert re.search(r"pcm: 6 frames from 4041 samples, worst difference [01] LSB, lookahead 126 ms", out), out
    m = re.search(r"idle: 76 frames, (\d+) footage without a model, worst difference [01] LSB", out)
    assert m and 0 < int(m.group(1)) < 76, out  # runtime_py's decisions and frames, replayed
    # A golden folder with no cases compares nothing: the host test must fail, not pass.
    empty = tmp_path / "empty_golden"
    shutil.copytree(golden, empty)
    (empty / "cases.txt").write_text("\n \n")
    proc = subprocess.run(
        [
            java_home / "bin/java",
            f"-Djava.library.path={build}",
            "-cp",
            classes,
            "ai.dhm.demo.DhmNativeHostTest",
            empty,
            str(n_images),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "FAIL: cases.txt lists no frames to render" in proc.stdout, proc.stdout


def test_objc_bridge_under_gnustep(golden, core_build, tmp_path, synth_hubert):
    from dhm.data import open_dataset

    gnustep = need("gnustep-config")
    gxx = need("g++")
    objc_flags = run([gnustep, "--objc-flags"]).stdout.split()
    libs = run([gnustep, "--base-libs"]).stdout.split()
    objs = []
    for src in (IOS / "DhmDemo/DHMAvatar.mm", IOS / "host_test/bridge_test.mm"):
        obj = tmp_path / (src.stem + ".o")
        run(
            [
                gxx,
                "-x",
                "objective-c++",
                *objc_flags,
                "-std=gnu++17",
                "-O2",
                "-Wno-subobject-linkage",
                "-Werror=return-type",
                f"-I{IOS / 'DhmDemo'}",
                f"-I{CORE / 'include'}",
                "-c",
                src,
                "-o",
                obj,
            ]
        )
        objs.append(obj)
    exe = tmp_path / "bridge_test"
    # the core as CMake builds it for every target (no mnn_engine.cpp: that is compiled only against MNN)
    run([gxx, *objs, core_build / "libdhm_avatar_core.a", "-o", exe, *libs])
    out = run([exe, golden, str(open_dataset(synth_hubert).n_frames)]).stdout
    assert out.strip().endswith("OK"), out
    assert re.search(r"pcm: 6 frames from 4041 samples, worst difference [01] LSB, lookahead 126 ms", out), out
    m = re.search(r"idle: 76 frames, (\d+) footage without a model, worst difference [01] LSB", out)
    assert m and 0 < int(m.group(1)) < 76, out  # runtime_py's decisions and frames, replayed


def test_bridge_source_stays_valid_under_arc():
    """ARC forbids retain/release/autorelease calls and NSAutoreleasePool; the bridge may
    call [super dealloc] only behind the objc_arc feature test."""
    text = (IOS / "DhmDemo/DHMAvatar.mm").read_text() + (IOS / "DhmDemo/DHMAvatar.h").read_text()
    for banned in ("retain]", "release]", "autorelease]", "NSAutoreleasePool", "retainCount"):
        assert banned not in text, banned
    assert "#if !__has_feature(objc_arc)\n    [super dealloc];\n#endif" in text


def test_app_assets_bundle(tmp_path, teacher, synth_hubert, golden):
    export = golden.parent / "export"
    out = tmp_path / "assets" / "dhm"
    r = run_cli("app-assets", export, "--data", synth_hubert, "-o", out, "--variant", "fp32", "--frames", "30")
    assert r.exit_code == 0, r.output
    import json

    m = json.loads((out / "manifest.json").read_text())
    assert [a["file"] for a in m["artifacts"]] == ["model.mnn"] and (out / "model.mnn").stat().st_size > 0
    clip = json.loads((out / "clip" / "clip.json").read_text())
    assert clip["frames"] == 30 and clip["fps"] == 25
    assert len(list((out / "clip").glob("*.jpg"))) == 30
    # the app turns audio into frames itself: the audio model ships, precomputed features do not
    assert m["audio_model"]["artifacts"][0]["file"] == "audio.mnn" and (out / "audio.mnn").stat().st_size > 0
    assert clip["pcm"] and not (out / "clip" / "features.f32").exists()
    # and the voice detector that rests the mouth in silence, MNN only
    assert [a["file"] for a in m["vad"]["artifacts"]] == ["vad.mnn"] and (out / "vad.mnn").stat().st_size > 0
    idle = clip["idle_footage"]  # the clip frames shown in silence, found in the clip's own audio
    assert idle["frames"] and all(0 <= f < 30 for f in idle["frames"]) and idle["note"]
    from dhm.audio.frontend import read_wav

    pcm, rate = read_wav(out / "clip" / "audio.wav")
    assert rate == 16000 and pcm.size == 30 * 640
    from dhm.manifest import validate

    validate(m)
    r = run_cli("app-assets", export, "--data", synth_hubert, "-o", tmp_path / "x", "--variant", "int8")
    assert r.exit_code == 1 and "no MNN int8 model" in r.stderr


# ------------------------------------------------------------------ hostile input


@pytest.fixture(scope="module")
def sanitized_build(tmp_path_factory) -> Path:
    """The core and its tests with AddressSanitizer and UndefinedBehaviorSanitizer."""
    need("cmake")
    build = tmp_path_factory.mktemp("asan") / "build"
    run(["cmake", "-S", CORE, "-B", build, "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DDHM_SANITIZE=ON"])
    run(["cmake", "--build", build, "-j2", "--target", "fuzz_test", "golden_test", "soak_test"])
    return build


def test_sanitized_soak_of_the_core(sanitized_build, golden):
    """Half a minute of tone bursts and silence through the core's PcmSession resting the mouth,
    then 30 create/destroy cycles, under ASan/UBSan (LSan at exit): every frame delivered,
    resident memory flat after warm-up (the hour runs in Python: `dhm bench --soak`)."""
    asan = "detect_leaks=1:abort_on_error=0:quarantine_size_mb=0"  # freed memory goes back: RSS is memory in use
    env = {**os.environ, "ASAN_OPTIONS": asan, "UBSAN_OPTIONS": "print_stacktrace=1"}
    cmd = [str(sanitized_build / "soak_test"), str(golden), "30", "30"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    m = re.search(r"soak: 30 s of audio, (\d+) frames of (\d+) expected, (\d+) painted", proc.stdout)
    assert m and m.group(1) == m.group(2) == "750" and 0 < int(m.group(3)) < 750, proc.stdout
    assert "soak: OK" in proc.stdout and "Sanitizer" not in proc.stderr, proc.stderr[-3000:]


def test_sanitized_fuzz_of_manifest_landmarks_and_frame_loop(sanitized_build, golden):
    """Seeded mutations of the manifest and the landmarks, hostile feature counts and frame
    indices, and every crash found so far as a regression input: each must render or be
    refused with dhm::Error; ASan/UBSan abort on anything else."""
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"}
    proc = subprocess.run(
        [str(sanitized_build / "fuzz_test"), str(golden), "3000", "20261122", "50"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    m = re.search(
        r"fuzz: (\d+) inputs in [\d.]+ s: (\d+) parsed, (\d+) rendered, (\d+) refused with dhm::Error, 0 findings",
        proc.stdout,
    )
    assert m, proc.stdout
    inputs, parsed, rendered, refused = map(int, m.groups())
    assert inputs >= 2000 and rendered > 100 and refused > 1000, proc.stdout
    assert "Sanitizer" not in proc.stderr, proc.stderr[-3000:]
    # the golden test passes under the sanitizers too
    out = run([sanitized_build / "golden_test", golden]).stdout
    assert out.strip().endswith("OK"), out


def _mutations(text: str):
    """(name, mutated manifest JSON text) on fields both runtimes bound the same way."""
    import json

    m0 = json.loads(text)

    def edit(fn):
        m = json.loads(text)
        fn(m)
        return json.dumps(m, indent=2)

    pre = lambda k, v: edit(lambda m: m["preprocess"].__setitem__(k, v))  # noqa: E731
    aud = lambda k, v: edit(lambda m: m["audio"].__setitem__(k, v))  # noqa: E731
    lm = lambda k, v: edit(lambda m: m["preprocess"]["landmarks"].__setitem__(k, v))  # noqa: E731
    inner = m0["preprocess"]["inner_size"]
    yield "unchanged", text
    for v in (-5, 0, 31, 1023, 1024, 2**31):
        yield f"landmark left {v}", lm("left", v)
    for x, y, w, h in (
        (5, 5, 150, 145),
        (-1, 5, 150, 145),
        (5, 5, -150, 145),
        (5, 5, 0, 145),
        (10, 10, inner - 10, 1),
        (11, 10, inner - 10, 1),
        (0, 0, inner, inner),
    ):
        yield f"mask {x},{y},{w},{h}", pre("mask_rect", [x, y, w, h])
    for v in (168, 170, 1e300, 2**31):
        yield f"crop_size {v}", pre("crop_size", v)
    yield "inner 20000", edit(lambda m: m["preprocess"].update(inner_size=20000, crop_size=20008))
    yield "border -1", edit(lambda m: m["preprocess"].update(border=-1, crop_size=inner - 2))
    yield "border 65", edit(lambda m: m["preprocess"].update(border=65, crop_size=inner + 130))
    for v in (0.5, 0.0, -1.0, 2.0):
        yield f"scale {v}", pre("scale", v)
    for v in ("area", "linear", "nearest"):
        yield (
            f"crop {v}",
            edit(
                lambda m, v=v: (
                    m["preprocess"].__setitem__("crop_interpolation", v),
                    m["generator"].__setitem__("crop_interpolation", v),
                )
            ),
        )
    # (fps and window also follow from the generator, which Python checks as well: only
    # values outside the bounds are mutations both sides judge by the same rule)
    for v in (0, 241):
        yield f"fps {v}", aud("fps", v)
    for v in (-1, 0, 33):
        yield f"window_before {v}", aud("window_before", v)
    for v in (0, 33):
        yield f"window_after {v}", aud("window_after", v)
    yield "per_frame 0", aud("per_frame_shape", [0, m0["audio"]["per_frame_shape"][1]])
    yield "input_shape 2 dims", aud("input_shape", m0["audio"]["input_shape"][:2])
    yield "audio input 65537", edit(lambda m: m["io"]["inputs"][1].__setitem__("shape", [1, 65537, 1, 1]))
    yield "face shape", edit(lambda m: m["io"]["inputs"][0].__setitem__("shape", [1, 6, inner, inner + 1]))
    yield "output shape", edit(lambda m: m["io"]["outputs"][0].__setitem__("shape", [1, 3, inner, 1]))
    yield "schema 9", edit(lambda m: m.__setitem__("schema", "dhm.manifest/9"))
    if "audio_model" in m0:
        am = lambda fn: edit(lambda m: fn(m["audio_model"]))  # noqa: E731
        yield "no audio model", edit(lambda m: m.pop("audio_model"))
        yield "audio rows 4", am(lambda a: a["frame_rows"].__setitem__("count", 4))
        yield "audio offset -2000", am(lambda a: a["frame_rows"].__setitem__("offset", -2000))
        yield "audio stride 3", am(lambda a: a["frame_rows"].__setitem__("stride", 3))
        yield "audio row_hop 0", am(lambda a: a.__setitem__("row_hop", 0))
        yield "audio pad = window", am(lambda a: a.__setitem__("pad_left", a["input"]["shape"][2]))
        yield "audio mode wenet", am(lambda a: a.__setitem__("mode", "wenet"))
        yield "audio 8 kHz", am(lambda a: a.__setitem__("sample_rate", 8000))
        yield "audio input 2 dims", am(lambda a: a["input"].__setitem__("shape", [1, 672]))
        yield "audio row size", am(lambda a: a["output"].__setitem__("shape", [1, 1, 1023]))
        yield "audio file path", am(lambda a: a["artifacts"][0].__setitem__("file", "../audio.mnn"))
        yield "audio tail 0", am(lambda a: a["tail"].__setitem__("hop", 0))
    yield "nan", text.replace('"fps": 25', '"fps": NaN')
    yield "infinity", text.replace('"fps": 25', '"fps": Infinity')
    yield "hex", text.replace('"fps": 25', '"fps": 0x19')
    yield "plus", text.replace('"fps": 25', '"fps": +25')
    yield "1e400", text.replace('"fps": 25', '"fps": 1e400')
    yield "deep", text.replace('"fps": 25', '"fps": ' + "[" * 100 + "]" * 100)
    yield "control char", text.replace('"mode": "hubert"', '"mode": "hub\\u0001ert"', 1).replace("\\u0001", "\x01")
    yield "truncated", text[: len(text) // 2]


def test_python_and_the_core_accept_and_refuse_the_same_manifests(golden, core_build, tmp_path):
    """One set of rules: dhm.manifest (Python) and Manifest::parse (C++) agree on every
    mutation of the fields both bound."""
    from dhm.errors import SpecError
    from dhm.manifest import read_manifest

    text = (golden / "manifest.json").read_text()
    cases = list(_mutations(text))
    paths = []
    for k, (_name, body) in enumerate(cases):
        p = tmp_path / f"m{k}.json"
        p.write_text(body)
        paths.append(p)
    native = run([core_build / "manifest_tool", *paths]).stdout.splitlines()
    assert len(native) == len(cases)
    verdicts = []
    for (name, _), path, line in zip(cases, paths, native, strict=True):
        try:
            read_manifest(path)
            python_ok = True
        except SpecError:
            python_ok = False
        verdicts.append((name, python_ok, line.startswith("OK")))
    disagree = [v for v in verdicts if v[1] != v[2]]
    assert not disagree, disagree
    accepted = {name for name, ok, _ in verdicts if ok}
    assert {"unchanged", "landmark left 1023", "mask 10,10,150,1", "crop area", "crop linear", "scale 0.5"} <= accepted
    assert "no audio model" in accepted and not any(n.startswith("audio ") for n in accepted), accepted
    assert len(accepted) < len(verdicts) - 30  # most mutations are refused, by both


def _read_f32(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    ndim = int(np.frombuffer(raw[:4], "<i4")[0])
    shape = np.frombuffer(raw[4 : 4 + 4 * ndim], "<i4")
    return np.frombuffer(raw[4 + 4 * ndim :], "<f4").reshape(shape)


def test_core_follows_the_manifest_colour_order_and_scale(tmp_path, core_build, golden, teacher, synth_hubert):
    """preprocess.color_order and .scale are read, not assumed: with a manifest saying RGB
    planes scaled by 1/127.5, runtime_py packs the BGR / 255 golden's planes swapped and
    doubled, and the C++ core must pack the same to match its golden vectors."""
    import json

    export = tmp_path / "export"
    shutil.copytree(golden.parent / "export", export)
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["preprocess"].update(color_order="RGB", scale=1 / 127.5)
    (export / "manifest.json").write_text(json.dumps(manifest, indent=2))
    rgb = tmp_path / "golden"
    r = run_cli("golden", export / "model_fp32.mnn", "--data", synth_hubert, "-o", rgb, "--frames", "6")
    assert r.exit_code == 0, r.output
    assert (rgb / "cases.txt").read_text() == (golden / "cases.txt").read_text()
    for k in range(6):
        bgr_255, rgb_127 = _read_f32(golden / f"face_{k}.f32"), _read_f32(rgb / f"face_{k}.f32")
        np.testing.assert_allclose(rgb_127, 2 * bgr_255[:, [2, 1, 0, 5, 4, 3]], rtol=0, atol=1e-6)
    _check_golden(core_build, rgb)
