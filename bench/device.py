"""Benchmarks on an Android phone over adb, with MNN's own `ModuleBasic.out`.

Everything up to the wire goes through `Transport` (shell, push, pull, ABI list), so the
staging, the command lines, the parsing, the pulling and the parity run against a local
transport in the tests; `AdbTransport` is the one that needs a phone.

Per model: push the model once; per held-out frame, push `input.mnn` (the real network
inputs, saved with `MNN.expr.save`) and `output.mnn` (what dhm's host MNN runtime computes
for them), run ModuleBasic once, pull `output/0_*.txt` and score it against the teacher on
the host. ModuleBasic's own check (device vs host within 1% of the output's range) is
recorded as it printed it; with fp16 it prints `Skip check` and checks nothing, so the
host-side parity is the one that counts. Then one timing run per thread count. The
remote folder is removed afterwards, also when a step fails.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from dhm.bench.modulebasic import BINARY, LIBRARY, check_abi, modulebasic_args, parse_modulebasic, read_output_txt

from dhm.errors import DeviceError

REMOTE_ROOT = "/data/local/tmp"
DEFAULT_TIMEOUT_S = 300.0
ADB_HELP = (
    "adb not found: install Android platform-tools (Debian/Ubuntu: `apt-get install adb`; "
    "others: https://developer.android.com/tools/releases/platform-tools) and put adb on PATH"
)


class Transport(Protocol):
    name: str
    root: str  # a writable folder on the device

    def shell(self, command: str, timeout_s: float) -> tuple[int, str]: ...

    def push(self, local: Path, remote: str, timeout_s: float) -> None: ...

    def pull(self, remote: str, local: Path, timeout_s: float) -> None: ...

    def abis(self) -> list[str]: ...

    def describe(self) -> dict[str, str]: ...


def _run(cmd: list[str], timeout_s: float, what: str) -> tuple[int, str]:
    """Run a command in its own process group, so a timeout stops everything it started."""
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise DeviceError(ADB_HELP if Path(cmd[0]).name == "adb" else f"{cmd[0]}: not found") from None
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise DeviceError(f"{what} timed out after {timeout_s:.0f}s") from None
    return proc.returncode, out or ""


class AdbTransport:
    """A phone reached with the `adb` tool."""

    name = "adb"
    root = REMOTE_ROOT

    def __init__(self, serial: str, adb: str) -> None:
        self.serial, self.adb = serial, adb

    @classmethod
    def connect(cls, serial: str | None = None, adb: str | None = None, timeout_s: float = 30.0) -> AdbTransport:
        adb = adb or shutil.which("adb")
        if not adb:
            raise DeviceError(ADB_HELP)
        rc, text = _run([adb, "devices"], timeout_s, "adb devices")
        if rc != 0:
            raise DeviceError(f"adb devices failed: {text.strip().splitlines()[-1] if text.strip() else f'exit {rc}'}")
        devices = parse_adb_devices(text)
        return cls(pick_device(devices, serial), adb)

    def _adb(self, args: list[str], timeout_s: float, what: str) -> tuple[int, str]:
        return _run([self.adb, "-s", self.serial, *args], timeout_s, what)

    def shell(self, command: str, timeout_s: float) -> tuple[int, str]:
        return self._adb(["shell", command], timeout_s, f"`{command[:60]}` on {self.serial}")

    def push(self, local: Path, remote: str, timeout_s: float) -> None:
        rc, text = self._adb(["push", str(local), remote], timeout_s, f"pushing {local.name}")
        if rc != 0:
            raise DeviceError(f"adb push {local.name} failed: {text.strip().splitlines()[-1] if text.strip() else rc}")

    def pull(self, remote: str, local: Path, timeout_s: float) -> None:
        rc, text = self._adb(["pull", remote, str(local)], timeout_s, f"pulling {remote}")
        if rc != 0:
            raise DeviceError(f"adb pull {remote} failed: {text.strip().splitlines()[-1] if text.strip() else rc}")

    def getprop(self, key: str) -> str:
        _, text = self.shell(f"getprop {key}", 30.0)
        return text.strip()

    def abis(self) -> list[str]:
        abis = [a for a in self.getprop("ro.product.cpu.abilist").split(",") if a]
        return abis or [self.getprop("ro.product.cpu.abi")]

    def describe(self) -> dict[str, str]:
        props = {
            "manufacturer": "ro.product.manufacturer",
            "model": "ro.product.model",
            "android": "ro.build.version.release",
            "sdk": "ro.build.version.sdk",
            "soc": "ro.soc.model",
            "hardware": "ro.hardware",
        }
        return {"transport": "adb", "serial": self.serial, **{k: self.getprop(v) for k, v in props.items()}}


def parse_adb_devices(text: str) -> list[tuple[str, str]]:
    """(serial, state) pairs from `adb devices`."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("List of devices", "*")):
            continue
        parts = line.split()
        if len(parts) >= 2:
            out.append((parts[0], parts[1]))
    return out


def pick_device(devices: list[tuple[str, str]], serial: str | None) -> str:
    if serial:
        states = dict(devices)
        if serial not in states:
            listed = ", ".join(s for s, _ in devices) or "none"
            raise DeviceError(f"device {serial} is not connected (adb devices lists: {listed})")
        devices = [(serial, states[serial])]
    if not devices:
        raise DeviceError(
            "no Android device connected: `adb devices` lists none (enable USB debugging and accept the prompt on "
            "the phone)"
        )
    ready = [(s, st) for s, st in devices if st == "device"]
    if not ready:
        s, st = devices[0]
        hint = "accept the USB debugging prompt on the phone" if st == "unauthorized" else "reconnect it"
        raise DeviceError(f"device {s} is {st}: {hint}")
    if len(ready) > 1:
        raise DeviceError(
            f"several devices connected ({', '.join(s for s, _ in ready)}): pick one with --device adb:SERIAL"
        )
    return ready[0][0]


class LocalTransport:
    """This machine standing in for a phone: the same commands, run with `sh` in a folder.

    It exists so that everything short of the USB wire is exercised in the tests."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = str(root)

    def shell(self, command: str, timeout_s: float) -> tuple[int, str]:
        return _run(["sh", "-c", command], timeout_s, f"`{command[:60]}`")

    def push(self, local: Path, remote: str, timeout_s: float) -> None:
        shutil.copy(local, remote)

    def pull(self, remote: str, local: Path, timeout_s: float) -> None:
        if not Path(remote).exists():
            raise DeviceError(f"pull {remote}: no such file on the device")
        shutil.copy(remote, local)

    def abis(self) -> list[str]:
        return [
            {"x86_64": "x86_64", "aarch64": "arm64-v8a", "armv7l": "armeabi-v7a"}.get(
                platform.machine(), platform.machine()
            )
        ]

    def describe(self) -> dict[str, str]:
        return {"transport": "local", "model": platform.node(), "abi": self.abis()[0]}


# ------------------------------------------------------------------------ staging


def save_mnn_vars(arrays: dict[str, np.ndarray], path: Path) -> None:
    """Named NCHW variables in MNN's own file format (what ModuleBasic reads with mask 128)."""
    from dhm.runtime_py.engines import native_stdout_to_stderr

    with native_stdout_to_stderr():
        import MNN.expr as F

        variables = []
        for name, value in arrays.items():
            v = F.const(np.ascontiguousarray(value, dtype=np.float32), list(value.shape), F.NCHW)
            v.name = name
            variables.append(v)
        F.save(variables, str(path))


@dataclass(frozen=True)
class DeviceSettings:
    mnn_bin: Path
    forward: str = "cpu"  # cpu, opencl, vulkan
    threads: tuple[int, ...] = (1, 2)
    runs: int = 50
    timeout_s: float = DEFAULT_TIMEOUT_S


def check_mnn_bin(folder: Path) -> tuple[Path, list[Path]]:
    if not folder.is_dir():
        raise DeviceError(
            f"--mnn-bin {folder}: no such folder (it must hold {BINARY} and {LIBRARY} from MNN's Android build)"
        )
    binary = folder / BINARY
    if not binary.is_file():
        raise DeviceError(
            f"{binary}: missing; build MNN for Android with -DMNN_BUILD_TOOLS=ON (project/android/build_64.sh) "
            f"and pass its build folder as --mnn-bin"
        )
    libs = sorted(folder.glob("*.so"))
    if not any(p.name == LIBRARY for p in libs):
        raise DeviceError(f"{folder / LIBRARY}: missing; copy it from the same MNN build as {BINARY}")
    return binary, libs


def bench_on_device(
    transport: Transport,
    models: Sequence[tuple[str, Path, str, dict[str, Any]]],
    inputs: Sequence[dict[str, np.ndarray]],
    host_outputs: dict[str, np.ndarray],
    reference: np.ndarray,
    settings: DeviceSettings,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """models: (id, .mnn path, precision, output spec {name: shape}). host_outputs[id] holds
    the host MNN outputs for `inputs` (stacked), reference the teacher's."""
    from dhm.manifest import json_number

    binary, libs = check_mnn_bin(settings.mnn_bin)
    abi = check_abi(binary, transport.abis())
    device = transport.describe()
    remote = f"{transport.root}/dhm-bench-{uuid.uuid4().hex[:10]}"
    t = settings.timeout_s
    lib_env = f"LD_LIBRARY_PATH={shlex.quote(remote)}"
    results: list[dict[str, Any]] = []
    log(f"[bench] device: {device.get('model', '?')} ({abi}), MNN {settings.forward}, staging in {remote}")
    with tempfile.TemporaryDirectory(prefix="dhm-device-") as tmp_name:
        tmp = Path(tmp_name)
        _checked(transport.shell(f"mkdir -p {shlex.quote(remote)}", t), "creating the work folder")
        try:
            for f in [binary, *libs]:
                transport.push(f, f"{remote}/{f.name}", t)
            _checked(
                transport.shell(f"chmod 755 {shlex.quote(remote + '/' + BINARY)}", t), f"making {BINARY} executable"
            )
            for k, x in enumerate(inputs):
                stage = tmp / f"f{k}"
                stage.mkdir()
                save_mnn_vars(x, stage / "input.mnn")
                transport.shell(f"mkdir -p {shlex.quote(f'{remote}/f{k}/output')}", t)
                transport.push(stage / "input.mnn", f"{remote}/f{k}/input.mnn", t)
            for mid, path, precision, out_shapes in models:
                results.append(
                    _bench_model(
                        transport,
                        remote,
                        lib_env,
                        tmp,
                        mid,
                        path,
                        precision,
                        out_shapes,
                        inputs,
                        host_outputs[mid],
                        reference,
                        settings,
                        log,
                    )
                )
        finally:
            rc, text = transport.shell(f"rm -rf {shlex.quote(remote)}", t)
            left = transport.shell(f"ls -d {shlex.quote(remote)} 2>/dev/null", t)[1].strip()
            if rc != 0 or left:
                log(f"[bench] warning: could not remove {remote} from the device: {text.strip()}")
    for r in results:
        if "parity" in r:
            r["parity"] = {k: json_number(v) if isinstance(v, float) else v for k, v in r["parity"].items()}
    return {
        "device": device,
        "abi": abi,
        "forward": settings.forward,
        "runs": settings.runs,
        "tool": BINARY,
        "models": results,
    }


def _checked(result: tuple[int, str], what: str) -> str:
    rc, text = result
    if rc != 0:
        raise DeviceError(
            f"{what} on the device failed (exit {rc}): {text.strip().splitlines()[-1] if text.strip() else ''}"
        )
    return text


def _bench_model(
    transport: Transport,
    remote: str,
    lib_env: str,
    tmp: Path,
    mid: str,
    path: Path,
    precision: str,
    out_shapes: dict[str, tuple[int, ...]],
    inputs: Sequence[dict[str, np.ndarray]],
    host_out: np.ndarray,
    reference: np.ndarray,
    settings: DeviceSettings,
    log: Callable[[str], None],
) -> dict[str, Any]:
    from dhm.metrics import image_quality

    t = settings.timeout_s
    model_remote = f"{remote}/{path.name}"
    transport.push(path, model_remote, t)
    ((out_name, out_shape),) = out_shapes.items()
    count = int(np.prod(out_shape))
    preds, checks, runs_text = [], [], []
    for k in range(len(inputs)):
        expected = tmp / f"f{k}" / "output.mnn"
        save_mnn_vars({out_name: host_out[k : k + 1]}, expected)
        transport.push(expected, f"{remote}/f{k}/output.mnn", t)
        args = modulebasic_args(model_remote, ".", settings.forward, 0, settings.threads[0], precision)
        cmd = (
            f"cd {shlex.quote(f'{remote}/f{k}')} && {lib_env} {shlex.quote(remote + '/' + BINARY)} "
            f"{' '.join(map(shlex.quote, args))}"
        )
        rc, text = transport.shell(cmd, t)
        run = parse_modulebasic(text)
        _require_ran(run, rc, text, path.name)
        first = [f for f in run.output_files if f.startswith("output/0_")]
        if not first:
            raise DeviceError(f"{BINARY} wrote no output for {path.name}: {_tail(text)}")
        local = tmp / f"{mid.replace('/', '_')}_{k}.txt"
        transport.pull(f"{remote}/f{k}/{first[0]}", local, t)
        preds.append(np.asarray(read_output_txt(local.read_text(), count), dtype=np.float32).reshape(out_shape))
        checks.append(run.check_status)
        transport.shell(f"rm -f {shlex.quote(f'{remote}/f{k}')}/output/*", t)
        runs_text.append(text)
    pred = np.concatenate(preds)
    q = image_quality(pred, reference)
    vs_host = image_quality(pred, host_out)
    timing = [_device_timing(transport, remote, lib_env, mid, path, precision, threads, settings, log)
              for threads in settings.threads]  # fmt: skip
    check = "failed" if "failed" in checks else ("passed" if set(checks) == {"passed"} else "skipped")
    if check == "failed":
        log(
            f"[bench] warning: {BINARY}'s own check FAILED for {mid}: the phone's outputs differ from the host's by "
            "> 1% of range"
        )
    transport.shell(f"rm -f {shlex.quote(model_remote)}", t)
    return {
        "id": mid,
        "file": str(path),
        "precision": precision,
        "modulebasic_check": check,
        "parity": {
            **q.to_dict(),
            "frames": len(inputs),
            "psnr_vs_host_mnn": vs_host.psnr,
            "max_abs_vs_host_mnn": vs_host.max_abs,
        },
        "timing": timing,
    }


def _device_timing(
    transport: Transport, remote: str, lib_env: str, mid: str, path: Path, precision: str, threads: int,
    settings: DeviceSettings, log: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    """ModuleBasic's own timing of the model on the phone at `threads`."""
    model_remote = f"{remote}/{path.name}"
    args = modulebasic_args(model_remote, ".", settings.forward, settings.runs, threads, precision)
    cmd = (
        f"cd {shlex.quote(f'{remote}/f0')} && {lib_env} {shlex.quote(remote + '/' + BINARY)} "
        f"{' '.join(map(shlex.quote, args))}"
    )
    rc, text = transport.shell(cmd, settings.timeout_s)
    run = parse_modulebasic(text)
    _require_ran(run, rc, text, path.name)
    if run.avg_ms is None:
        raise DeviceError(f"{BINARY} printed no timing line for {path.name}: {_tail(text)}")
    transport.shell(f"rm -f {shlex.quote(f'{remote}/f0')}/output/*", settings.timeout_s)
    log(
        f"[bench] device {mid} at {threads} thread(s): avg {run.avg_ms:.2f} ms (min {run.min_ms:.2f}, max "
        f"{run.max_ms:.2f})"
    )
    return {
        "threads": threads,
        "avg_ms": run.avg_ms,
        "min_ms": run.min_ms,
        "max_ms": run.max_ms,
        "fps": 1000.0 / run.avg_ms if run.avg_ms else None,
        "load_ms": run.load_ms,
        "mnn_memory_mb": run.memory_mb,
    }


def _tail(text: str, n: int = 2) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) or "no output"


def _require_ran(run: Any, rc: int, text: str, model: str) -> None:
    if rc in (126, 127) or ("not found" in text and not run.output_files):
        raise DeviceError(f"{BINARY} did not start on the device (exit {rc}): {_tail(text)}")
    if rc == 132 or "Bad system call" in text or "not executable" in text or "Exec format error" in text:
        raise DeviceError(f"{BINARY} cannot run on this device (wrong ABI?): {_tail(text)}")
    if run.errors:
        raise DeviceError(f"{BINARY} failed on {model}: {run.errors[0]}")
    if rc != 0:
        raise DeviceError(f"{BINARY} exited with {rc} on {model}: {_tail(text)}")
