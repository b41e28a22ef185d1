"""How fast a generator of given widths runs on the target engine, before anyone trains it.

Latency depends on the shapes, not the weights, so an untrained generator (seeded random
weights, MobileOne reparameterized, exported and converted exactly as `dhm export` does) is
timed: on this host through dhm's own engines, or on a phone through the bench's adb transport
and MNN's ModuleBasic. Every figure is cached per engine, machine, thread count and precision
(~/.cache/dhm/latency.json), so a second run, and `dhm info`, reuse it.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from dhm.errors import SpecError
from dhm.settings import setting
from dhm.spec import GeneratorSpec

ENGINES = ("mnn", "onnxruntime")  # the engines a budget can be measured on
CACHE_VERSION = 1


@dataclass(frozen=True)
class ProbeSettings:
    """Where and how candidates are timed (the distill options --budget-*)."""

    budget_engine: str = setting("mnn", "Engine the latency budget is measured on.", choices=ENGINES)
    budget_threads: int = setting(2, "Threads the budget is measured at.", lo=1, hi=64)
    budget_precision: str = setting("fp32", "Precision the budget is measured in.", choices=("fp32", "fp16"))
    budget_runs: int = setting(40, "Timed runs per candidate (interleaved).", lo=5, hi=100_000)
    budget_device: str = setting(
        "host",
        "Where: host, or adb[:SERIAL] (MNN's ModuleBasic on a phone; needs --mnn-bin).",
    )
    mnn_bin: Path | None = setting(
        None, "With --budget-device adb: folder holding ModuleBasic.out and libMNN.so built for the phone.", path=True
    )
    rounds: int = 8
    cache: Path | None = None  # default: $DHM_CACHE or ~/.cache/dhm, file latency.json

    def check(self) -> None:
        from dhm.runtime_py.engines import get

        if self.budget_engine not in ENGINES:
            raise SpecError(f"--budget-engine {self.budget_engine!r}: expected one of {', '.join(ENGINES)}")
        if not 1 <= self.budget_threads <= 64:
            raise SpecError(f"--budget-threads {self.budget_threads}: expected 1 … 64")
        if self.budget_device != "host" and not get(self.budget_engine).ships:
            raise SpecError(f"--budget-device {self.budget_device}: phones run MNN; pass --budget-engine mnn")
        if self.budget_device != "host" and not self.budget_device.startswith("adb"):
            raise SpecError(f"--budget-device {self.budget_device!r}: expected host, adb or adb:SERIAL")

    @property
    def cache_file(self) -> Path:
        root = self.cache or Path(os.environ.get("DHM_CACHE") or Path.home() / ".cache" / "dhm")
        return root / "latency.json"


def host_machine() -> str:
    """This machine as the cache knows it: CPU model, cores, engine library versions."""
    from dhm.bench.api import machine

    m = machine()
    return f"{m['cpu']} x{m['cores']} {platform.machine()} {_versions()}"


def _versions() -> str:
    import onnxruntime

    try:
        import MNN

        mnn = MNN.version()
    except Exception:  # noqa: BLE001 - a missing MNN shows in the key, the probe fails later
        mnn = "?"
    return f"MNN {mnn} ORT {onnxruntime.__version__}"


def cache_key(spec: GeneratorSpec, settings: ProbeSettings, machine: str) -> str:
    widths = ",".join(map(str, spec.widths))
    return "|".join(
        [
            settings.budget_engine,
            machine,
            f"t{settings.budget_threads}",
            settings.budget_precision,
            spec.arch if not spec.folded else f"{spec.arch}/{spec.stem}",  # full keeps the keys cached before
            spec.mode,
            spec.revision,
            widths,
        ]
    )


def read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data.get("entries", {}) if data.get("version") == CACHE_VERSION else {}


def write_cache(path: Path, entries: dict[str, Any]) -> None:
    """Temp file then rename: two runs at once lose an entry at worst, never the file."""
    from dhm.io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=1, sort_keys=True))


def untrained_model_file(spec: GeneratorSpec, folder: Path, engine: str, precision: str) -> Path:
    """The generator with seeded random weights, in the form `dhm export` ships: ONNX, or MNN."""
    import torch

    from dhm.data.inputs import random_inputs
    from dhm.models.build import build_model, fold_batchnorm, inference_model
    from dhm.runtime_py.engines import get
    from dhm.runtime_py.engines.configs import Fp16, Fp32
    from dhm.runtime_py.engines.torch_onnx import export_onnx

    torch.manual_seed(0)
    model = fold_batchnorm(inference_model(build_model(spec).eval()))
    name = "g" + "_".join(map(str, spec.widths)) + spec.arch[0] + spec.stem
    onnx_path = folder / f"{name}.onnx"
    export_onnx(model, spec, onnx_path, list(random_inputs(spec, n=1).inputs))
    backend = get(engine)
    dst = folder / f"{name}.{precision}.{backend.format}"
    backend.build(Fp16() if precision == "fp16" else Fp32(), onnx_path, dst)
    return dst


def probe_latency(
    specs: Sequence[GeneratorSpec],
    settings: ProbeSettings,
    log: Callable[[str], None] = lambda _m: None,
    transport: Any = None,
) -> list[dict[str, Any]]:
    """Per spec: p50/p90 ms per frame on the target, MACs and the GFLOPS they imply, from the
    cache where this machine timed it before, else measured now (all new ones in one run,
    interleaved, so a burst of load slows every candidate alike). `transport` replaces the adb
    connection of --budget-device adb."""
    from dhm.metrics import generator_cost

    settings.check()
    transport = transport or _transport(settings)  # the tests pass a local one
    machine = _phone_machine(transport) if transport is not None else host_machine()
    cache = read_cache(settings.cache_file)
    keys = [cache_key(s, settings, machine) for s in specs]
    todo = [s for s, k in zip(specs, keys, strict=True) if k not in cache]
    if todo:
        log(
            f"[probe] timing {len(todo)} untrained candidate(s) on {settings.budget_engine} at "
            f"{settings.budget_threads} thread(s), {len(specs) - len(todo)} known ({machine})"
        )
        fresh = _measure(todo, settings, transport, log)
        cache = read_cache(settings.cache_file)  # another run may have added entries meanwhile
        cache.update({cache_key(s, settings, machine): t for s, t in zip(todo, fresh, strict=True)})
        write_cache(settings.cache_file, cache)
    out = []
    for spec, key in zip(specs, keys, strict=True):
        macs = generator_cost(spec)[0]
        t = cache[key]
        out.append(
            {
                "arch": spec.arch,
                "stem": spec.stem,
                "widths": list(spec.widths),
                "macs": macs,
                "p50_ms": t["p50_ms"],
                "p90_ms": t["p90_ms"],
                "gflops": 2.0 * macs / (t["p50_ms"] * 1e6),
                "source": "measured" if spec in todo else "cache",
            }
        )
    return out


def _measure(
    specs: Sequence[GeneratorSpec], settings: ProbeSettings, transport: Any, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="dhm-probe-") as tmp_name:
        files = []
        for k, spec in enumerate(specs):
            folder = Path(tmp_name) / str(k)
            folder.mkdir()
            files.append(untrained_model_file(spec, folder, settings.budget_engine, settings.budget_precision))
        if transport is not None:
            return _on_phone(specs, files, settings, transport, log)
        return _on_host(files, settings)


def _on_host(files: Sequence[Path], settings: ProbeSettings) -> list[dict[str, Any]]:
    from dhm.bench.stats import interleaved_timings, summarize
    from dhm.runtime_py.engines import load

    engines = [load(f, threads=settings.budget_threads, precision=settings.budget_precision) for f in files]
    sample = _sample(engines[0])
    for e in engines:
        for _ in range(3):
            e.run(sample)
    calls = {str(k): (lambda e=e: e.run(sample)) for k, e in enumerate(engines)}
    times = interleaved_timings(calls, settings.budget_runs, settings.rounds)
    stats = [summarize(times[str(k)]) for k in range(len(files))]
    return [{"p50_ms": s.p50, "p90_ms": s.p90, "runs": s.runs} for s in stats]


def _sample(engine: Any) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    return {t.name: rng.uniform(0, 1, t.shape).astype(np.float32) for t in engine.inputs}


def _transport(settings: ProbeSettings) -> Any:
    if settings.budget_device == "host":
        return None
    from dhm.bench.device import AdbTransport

    if settings.mnn_bin is None:
        raise SpecError("--budget-device adb needs --mnn-bin (ModuleBasic.out and libMNN.so built for the phone)")
    serial = settings.budget_device.partition(":")[2] or None
    return AdbTransport.connect(serial)


def _phone_machine(transport: Any) -> str:
    d = transport.describe()
    return " ".join(str(d.get(k, "?")) for k in ("manufacturer", "model", "soc", "abi", "android")) + " " + _versions()


def _on_phone(
    specs: Sequence[GeneratorSpec],
    files: Sequence[Path],
    settings: ProbeSettings,
    transport: Any,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """MNN's ModuleBasic on the phone (the bench's own path): its average per run."""
    from dhm.bench.device import DeviceSettings, bench_on_device
    from dhm.runtime_py.engines import load

    engine = load(files[0], threads=1, precision=settings.budget_precision)
    sample = _sample(engine)
    outs, models = {}, []
    for k, f in enumerate(files):
        e = load(f, threads=1, precision=settings.budget_precision)
        ((name, value),) = e.run(sample).items()
        outs[str(k)] = value
        models.append((str(k), f, settings.budget_precision, {name: tuple(value.shape)}))
    device = DeviceSettings(mnn_bin=settings.mnn_bin, threads=(settings.budget_threads,), runs=settings.budget_runs)
    result = bench_on_device(transport, models, [sample], outs, next(iter(outs.values())), device, log)
    timed = {m["id"]: m["timing"][0] for m in result["models"]}
    return [
        {
            "p50_ms": timed[str(k)]["avg_ms"],
            "p90_ms": timed[str(k)]["max_ms"],
            "runs": settings.budget_runs,
            "note": "ModuleBasic average",
        }
        for k in range(len(specs))
    ]
