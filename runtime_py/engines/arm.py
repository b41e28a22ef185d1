"""Phone numerics on this host: MNN models on MNN's own aarch64 kernels under qemu-user.

Phones run MNN's aarch64 kernels, whose arithmetic differs from the x86 ones dhm's other
figures come from (int8 dot-product paths, fp16 arithmetic with precision "low"). This
runs the same .mnn file with the PyPI aarch64 MNN wheel, in Debian's arm64 Python, under
`qemu-aarch64-static -cpu cortex-a76` (ARMv8.2 with dot product and fp16 arithmetic, as in
most phones since 2019; MNN reports "i8sdot:1, fp16:1"). Figures from it are numerics only:
emulated timings mean nothing and are never reported.

The environment (an arm64 sysroot from Debian packages and the aarch64 wheels, all from the
package registries) is prepared once by `python -m dhm.runtime_py.engines.arm setup` (`make arm-env`,
which `make test` runs) into `$DHM_ARM_ROOT` or `~/.cache/dhm/arm64`; nothing here installs
or downloads anything.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from dhm.errors import DhmError, SpecError

ARM_CPU = "cortex-a76"
KERNELS = f"MNN aarch64 ({ARM_CPU} under qemu-aarch64: i8sdot, fp16 arithmetic)"
QEMU = "qemu-aarch64-static"
TIMEOUT_S = 900
# Debian bookworm arm64 packages: Python 3.11 and what it and MNN's wheel link against.
PACKAGES = (
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "libc6",
    "libexpat1",
    "zlib1g",
    "libffi8",
    "libssl3",
    "libgcc-s1",
    "libstdc++6",
    "libgomp1",
    "libbz2-1.0",
    "liblzma5",
    "libuuid1",
    "libcrypt1",
    "libtinfo6",
    "libncursesw6",
)


class ArmError(DhmError):
    pass


def arm_root() -> Path:
    return Path(os.environ.get("DHM_ARM_ROOT") or Path.home() / ".cache" / "dhm" / "arm64")


def unavailable() -> str | None:
    """Why ARM numerics cannot be measured here (None: they can). DHM_ARM=off turns them
    off (each run costs ~2 s of emulator start and ~1 s per frame of a small model)."""
    if os.environ.get("DHM_ARM", "").lower() in ("off", "0", "no"):
        return "turned off (DHM_ARM=off)"
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed (apt-get install qemu-user-static, or `make native-deps`)"
    if not (arm_root() / "ready.json").is_file():
        return f"no arm64 environment in {arm_root()} (run `make arm-env`)"
    return None


def _command(root: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    sysroot = root / "sysroot"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONHOME": str(sysroot / "usr"),
        "PYTHONPATH": str(root / "site"),
        "PYTHONNOUSERSITE": "1",
        "HOME": os.environ.get("HOME", "/tmp"),
    }
    child = Path(__file__).with_name("arm_child.py")
    cmd = [QEMU, "-cpu", ARM_CPU, "-L", str(sysroot), str(sysroot / "usr/bin/python3.11"), str(child), *args]
    return cmd, env


def _run(args: list[str], what: str, timeout_s: int = TIMEOUT_S) -> str:
    root = arm_root()
    cmd, env = _command(root, *args)
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ArmError(f"{what} under {QEMU}: timed out after {timeout_s} s") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ArmError(f"{what} under {QEMU} failed (exit {proc.returncode}): {tail[0]}")
    return proc.stdout


def run_mnn(
    model: str | Path, inputs: list[dict[str, np.ndarray]], output_names: list[str], precision: str = "fp32"
) -> list[dict[str, np.ndarray]]:
    """Outputs of `model` for every input, computed by MNN's aarch64 kernels (2 threads)."""
    reason = unavailable()
    if reason:
        raise ArmError(f"ARM numerics: {reason}")
    if not inputs:
        return []
    key = _cache_key(Path(model), inputs, output_names, precision)
    if key not in _CACHE:
        if len(_CACHE) >= 32:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = _run_mnn(Path(model), inputs, output_names, precision)
    return [{k: v.copy() for k, v in out.items()} for out in _CACHE[key]]


# The same bytes on the same inputs give the same outputs: quantize re-judges the INT8 file
# it keeps, and export rebuilds byte-identical INT8 files from a recipe.
_CACHE: dict[str, list[dict[str, np.ndarray]]] = {}


def _cache_key(model: Path, inputs: list[dict[str, np.ndarray]], output_names: list[str], precision: str) -> str:
    import hashlib

    h = hashlib.sha256(model.read_bytes())
    h.update(json.dumps([output_names, precision]).encode())
    for x in inputs:
        for k in sorted(x):
            h.update(k.encode())
            h.update(np.ascontiguousarray(x[k], np.float32).tobytes())
    return h.hexdigest()


def _run_mnn(
    model: Path, inputs: list[dict[str, np.ndarray]], output_names: list[str], precision: str
) -> list[dict[str, np.ndarray]]:
    names = list(inputs[0])
    with tempfile.TemporaryDirectory(prefix="dhm-arm-") as tmp:
        work = Path(tmp)
        np.savez(
            work / "in.npz", **{f"{k}_{i}": np.asarray(x[k], np.float32) for i, x in enumerate(inputs) for k in names}
        )
        spec = {
            "model": str(Path(model).resolve()),
            "inputs": str(work / "in.npz"),
            "outputs": str(work / "out.npz"),
            "input_names": names,
            "input_shapes": {k: list(np.shape(inputs[0][k])) for k in names},
            "output_names": output_names,
            "precision": "low" if precision == "fp16" else "high",
            "count": len(inputs),
            # two threads as the x86 parity runs use; the outputs equal one thread's
            # (checked: max abs 0 for FP32 and INT8), the emulation takes ~25 % less time
            "threads": 2,
        }
        (work / "spec.json").write_text(json.dumps(spec))
        _run(["run", str(work / "spec.json")], f"running {Path(model).name}")
        with np.load(work / "out.npz") as out:
            return [{n: np.array(out[f"{n}_{i}"]) for n in output_names} for i in range(len(inputs))]


# ----------------------------------------------------------------- setup


def setup(root: Path | None = None, log=print) -> dict[str, Any]:
    """Prepare the arm64 environment (once): Debian arm64 packages unpacked into a sysroot
    and the aarch64 MNN (this host's version) and numpy wheels unpacked beside it."""
    import MNN

    root = root or arm_root()
    ready = root / "ready.json"
    mnn_version = str(MNN.version())
    if ready.is_file() and json.loads(ready.read_text()).get("mnn") == mnn_version:
        log(f"arm64 environment ready in {root}")
        return json.loads(ready.read_text())
    if shutil.which(QEMU) is None:
        raise ArmError(f"{QEMU} is not installed: apt-get install qemu-user-static (or `make native-deps`)")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dhm-arm-setup-", dir=root) as tmp:
        work = Path(tmp)
        arches = subprocess.run(
            ["dpkg", "--print-foreign-architectures"], capture_output=True, text=True
        ).stdout.split()
        if "arm64" not in arches:
            log("adding the arm64 architecture to apt (packages are downloaded, never installed)")
            subprocess.run(["dpkg", "--add-architecture", "arm64"], check=True)
            subprocess.run(["apt-get", "update", "-qq"], check=True)
        debs = work / "debs"
        debs.mkdir()
        proc = subprocess.run(
            ["apt-get", "download", *(f"{p}:arm64" for p in PACKAGES)], cwd=debs, capture_output=True, text=True
        )
        if proc.returncode != 0:  # a stale package list: refresh once
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(["apt-get", "download", *(f"{p}:arm64" for p in PACKAGES)], cwd=debs, check=True)
        sysroot = work / "sysroot"
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg", "-x", str(deb), str(sysroot)], check=True)
        wheels = work / "wheels"
        subprocess.run(
            [
                sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps",
                "--platform", "manylinux2014_aarch64", "--platform", "manylinux_2_17_aarch64",
                "--platform", "manylinux_2_28_aarch64", "--python-version", "3.11", "--implementation", "cp",
                "--abi", "cp311", f"MNN=={mnn_version}", f"numpy=={np.__version__}", "-d", str(wheels),
            ],
            check=True,
        )  # fmt: skip
        site = work / "site"
        for whl in sorted(wheels.glob("*.whl")):
            with zipfile.ZipFile(whl) as z:
                z.extractall(site)
        for so in site.rglob("*.so*"):  # zipfile drops the executable bit
            so.chmod(0o755)
        for name in ("sysroot", "site"):
            if (root / name).exists():
                shutil.rmtree(root / name)
            (work / name).replace(root / name)
    out = _run(["probe"], "probing the arm64 environment", 300)
    # MNN prints its CPU banner ("The device supports: i8sdot:1, fp16:1, …") before the JSON
    info = json.loads(next(ln for ln in reversed(out.splitlines()) if ln.startswith("{")))
    info["features"] = next((ln.strip() for ln in out.splitlines() if "i8sdot" in ln), "")
    if info.get("mnn") != mnn_version:
        raise ArmError(f"the arm64 environment has MNN {info.get('mnn')}, this host {mnn_version}")
    info["cpu"] = ARM_CPU
    ready.write_text(json.dumps(info, indent=1) + "\n")
    log(f"arm64 environment ready in {root}: {info}")
    return info


def main(argv: list[str]) -> int:
    if argv[:1] != ["setup"]:
        print("usage: python -m dhm.runtime_py.engines.arm setup", file=sys.stderr)
        return 2
    try:
        setup()
    except (ArmError, SpecError, subprocess.CalledProcessError) as exc:
        print(f"dhm: error: arm64 environment: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
