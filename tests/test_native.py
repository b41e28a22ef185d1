"""The native side, short of a phone: the C++ core against golden vectors from runtime_py,
the JNI glue on the JVM, the Objective-C++ bridge under GNUstep, and the Android manifest
and resources under aapt. `make native-deps` installs the Debian packages these need."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "avatar_core"
ANDROID = ROOT / "android_demo"
IOS = ROOT / "ios_demo"
FRAMEWORK_RES = Path("/usr/share/android-framework-res/framework-res.apk")


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: run `make native-deps` (Debian packages for the native tests)")
    return path


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def golden(tmp_path_factory, teacher, synth_hubert) -> Path:
    """Golden vectors: the teacher exported to MNN, run by runtime_py on 6 frames."""
    from dhm.export.pipeline import export_model

    work = tmp_path_factory.mktemp("native")
    export_model(teacher, work / "export", targets=["mnn"], variants=["fp32"], data=synth_hubert, frames=4)
    r = run_cli("golden", work / "export" / "model_fp32.mnn", "--data", synth_hubert, "-o", work / "golden", "--frames", "6")
    assert r.exit_code == 0, r.output
    return work / "golden"


def test_core_matches_runtime_py_on_golden_vectors(golden, tmp_path):
    need("cmake")
    build = tmp_path / "build"
    run(["cmake", "-S", CORE, "-B", build, "-DCMAKE_BUILD_TYPE=Release", f"-DDHM_GOLDEN_DIR={golden}"])
    run(["cmake", "--build", build, "-j2"])
    out = run([build / "golden_test", golden]).stdout
    assert out.strip().endswith("OK"), out
    face = float(re.search(r"face input: max abs ([\d.]+)", out).group(1))
    lsb = float(re.search(r"pasted frame: max ([\d.]+) LSB", out).group(1))
    assert face <= 1 / 255 + 1e-6 and lsb <= 1, out
    assert "golden cases: 6" in out


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
    run([javac, "-d", classes, ANDROID / "app/src/main/java/ai/dhm/demo/DhmNative.java",
         ANDROID / "host_test/ai/dhm/demo/DhmNativeHostTest.java"])
    n_images = open_dataset(synth_hubert).n_frames  # the ping-pong schedule runs over the clip's frames
    out = run([java_home / "bin/java", f"-Djava.library.path={build}", "-cp", classes, "ai.dhm.demo.DhmNativeHostTest", golden,
               str(n_images)]).stdout
    assert out.strip().endswith("OK"), out
    assert "worst difference 0 LSB" in out or "worst difference 1 LSB" in out


def test_objc_bridge_under_gnustep(golden, tmp_path, synth_hubert):
    from dhm.data import open_dataset

    gnustep = need("gnustep-config")
    gxx = need("g++")
    objc_flags = run([gnustep, "--objc-flags"]).stdout.split()
    libs = run([gnustep, "--base-libs"]).stdout.split()
    objs = []
    for src in sorted((CORE / "src").glob("*.cpp")):
        if src.name == "mnn_engine.cpp":
            continue  # compiled only in app builds, against MNN
        obj = tmp_path / (src.stem + ".o")
        run([gxx, "-std=c++17", "-O2", "-c", f"-I{CORE / 'include'}", src, "-o", obj])
        objs.append(obj)
    for src in (IOS / "DhmDemo/DHMAvatar.mm", IOS / "host_test/bridge_test.mm"):
        obj = tmp_path / (src.stem + ".o")
        run([gxx, "-x", "objective-c++", *objc_flags, "-std=gnu++17", "-O2", "-Wno-subobject-linkage", "-Werror=return-type",
             f"-I{IOS / 'DhmDemo'}", f"-I{CORE / 'include'}", "-c", src, "-o", obj])
        objs.append(obj)
    exe = tmp_path / "bridge_test"
    run([gxx, *objs, "-o", exe, *libs])
    out = run([exe, golden, str(open_dataset(synth_hubert).n_frames)]).stdout
    assert out.strip().endswith("OK"), out


def test_bridge_source_stays_valid_under_arc():
    """ARC forbids retain/release/autorelease calls and NSAutoreleasePool; the bridge may
    call [super dealloc] only behind the objc_arc feature test."""
    text = (IOS / "DhmDemo/DHMAvatar.mm").read_text() + (IOS / "DhmDemo/DHMAvatar.h").read_text()
    for banned in ("retain]", "release]", "autorelease]", "NSAutoreleasePool", "retainCount"):
        assert banned not in text, banned
    assert "#if !__has_feature(objc_arc)\n    [super dealloc];\n#endif" in text


def test_android_manifest_and_resources_compile_with_aapt(tmp_path):
    aapt = need("aapt")
    assert FRAMEWORK_RES.is_file(), "android-framework-res is not installed: run `make native-deps`"
    gradle = (ANDROID / "app/build.gradle.kts").read_text()
    namespace = re.search(r'namespace = "([\w.]+)"', gradle).group(1)
    min_sdk = re.search(r"minSdk = (\d+)", gradle).group(1)
    target_sdk = re.search(r"targetSdk = (\d+)", gradle).group(1)
    # AGP takes the package and SDK levels from Gradle; aapt needs them in the manifest.
    manifest = (ANDROID / "app/src/main/AndroidManifest.xml").read_text()
    manifest = manifest.replace('<manifest xmlns:android="http://schemas.android.com/apk/res/android">',
                                f'<manifest xmlns:android="http://schemas.android.com/apk/res/android" package="{namespace}">\n'
                                f'    <uses-sdk android:minSdkVersion="{min_sdk}" android:targetSdkVersion="{target_sdk}" />')
    merged = tmp_path / "AndroidManifest.xml"
    merged.write_text(manifest)
    gen = tmp_path / "gen"
    gen.mkdir()
    run([aapt, "package", "-f", "-m", "-M", merged, "-S", ANDROID / "app/src/main/res", "-I", FRAMEWORK_RES, "-J", gen,
         "-F", tmp_path / "res.apk"])
    badging = run([aapt, "dump", "badging", tmp_path / "res.apk"]).stdout
    assert f"package: name='{namespace}'" in badging and "launchable-activity: name='ai.dhm.demo.MainActivity'" in badging
    # Every R.<type>.<name> the Kotlin code uses exists in the compiled resources.
    r_java = (gen / namespace.replace(".", "/") / "R.java").read_text()
    used = set()
    for kt in (ANDROID / "app/src/main/java").rglob("*.kt"):
        used |= set(re.findall(r"\bR\.(\w+)\.(\w+)", kt.read_text()))
    assert used, "the Kotlin sources use no resources?"
    for kind, name in sorted(used):
        assert re.search(rf"class {kind} \{{[^}}]*\b{name}\b", r_java, re.S), f"R.{kind}.{name} is used but not defined"


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
    assert len(list((out / "clip").glob("*.jpg"))) == 30 and (out / "clip" / "features.f32").is_file()
    r = run_cli("app-assets", export, "--data", synth_hubert, "-o", tmp_path / "x", "--variant", "int8")
    assert r.exit_code == 1 and "no MNN int8 model" in r.stderr
