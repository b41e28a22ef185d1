"""MNN's device tools: command lines for `ModuleBasic.out`, parsers for its output and for
`benchmark.out`, and the ELF check that catches a binary built for the wrong ABI.

Facts from MNN 3.6.1's real output (`../shared/fixtures/mnn-tools/`, and the tool's source):
- `ModuleBasic.out MODEL DIR RUNMASK FORWARD LOOPS THREADS PRECISION`; run mask 128 reads
  `DIR/input.mnn` and `DIR/output.mnn` (made with `MNN.expr.save`, variables named by the
  model's input and output names) instead of JSON.
- It writes every output of repeat R to `output/R_I.txt` relative to its working folder,
  one value per line, so it must run inside a folder holding an `output/` directory.
- It exits 0 whether or not the check passed: the text is the only truth.
  `TESTERROR …` / `N run Error for output X` mean a failed check, `Skip check X` means no
  check at all (precision 2 = fp16 skips it), `For X, max = …, diffmax = …` is a check.
- Timing: `Avg= X ms, min= Y ms, max= Z ms`; load: `main, N, cost time: X ms`;
  MNN's own memory figure: `memoryInMB=f X`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from dhm.errors import DeviceError

BINARY = "ModuleBasic.out"
LIBRARY = "libMNN.so"
RUN_MASK_MNN_IO = 128  # read input.mnn / output.mnn

FORWARD_TYPES = {"cpu": 0, "opencl": 3, "vulkan": 7}
# ModuleBasic's precision argument: 0 normal, 1 high, 2 low. "normal" lets ARMv8.2 phones
# compute in fp16, so fp32 asks for "high" explicitly, as dhm's MNN runtime does.
PRECISION_CODES = {"fp32": 1, "fp16": 2}


def modulebasic_args(model: str, folder: str, forward: str, loops: int, threads: int, precision: str) -> list[str]:
    if forward not in FORWARD_TYPES:
        raise DeviceError(f"device backend {forward!r}: expected one of {sorted(FORWARD_TYPES)}")
    if precision not in PRECISION_CODES:
        raise DeviceError(f"precision {precision!r}: expected one of {sorted(PRECISION_CODES)}")
    return [
        model,
        folder,
        str(RUN_MASK_MNN_IO),
        str(FORWARD_TYPES[forward]),
        str(loops),
        str(threads),
        str(PRECISION_CODES[precision]),
    ]


@dataclass
class OutputCheck:
    name: str
    status: str  # "passed", "failed", "skipped"
    max_abs_expected: float | None = None
    diff_max: float | None = None


@dataclass
class ModuleBasicRun:
    """What one ModuleBasic run printed, parsed."""

    avg_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    load_ms: float | None = None
    memory_mb: float | None = None
    checks: list[OutputCheck] = field(default_factory=list)
    output_files: list[str] = field(default_factory=list)  # "output/R_I.txt", in the order written
    errors: list[str] = field(default_factory=list)

    @property
    def check_status(self) -> str:
        states = {c.status for c in self.checks}
        if "failed" in states:
            return "failed"
        if states == {"passed"}:
            return "passed"
        return "skipped"


_AVG = re.compile(r"Avg=\s*([\d.]+)\s*ms,\s*min=\s*([\d.]+)\s*ms,\s*max=\s*([\d.]+)\s*ms")
_LOAD = re.compile(r"^main, \d+, cost time: ([\d.]+) ms", re.M)
_MEMORY = re.compile(r"memoryInMB=f\s+([\d.]+)")
_FOR = re.compile(r"^For (\S+), max = ([\d.eE+-]+), diffmax = ([\d.eE+-]+)")
_TESTERROR_VALUE = re.compile(r"^TESTERROR (\S+) value error")
_RUN_ERROR = re.compile(r"^\d+ run Error for output (\S+)")
_SKIP = re.compile(r"^Skip check (\S+)")
_WRITE = re.compile(r"^Write (\S+) output to (\S+)")
_FATAL = ("Error: can't load module", "Error in forward", "Invalid json")


def parse_modulebasic(text: str) -> ModuleBasicRun:
    run = ModuleBasicRun()
    if m := list(_AVG.finditer(text)):
        a = m[-1]
        run.avg_ms, run.min_ms, run.max_ms = float(a.group(1)), float(a.group(2)), float(a.group(3))
    if m := _LOAD.search(text):
        run.load_ms = float(m.group(1))
    if mem := _MEMORY.findall(text):
        run.memory_mb = max(float(v) for v in mem)
    checks: dict[str, OutputCheck] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if m := _FOR.match(line):
            c = checks.setdefault(m.group(1), OutputCheck(m.group(1), "passed"))
            c.max_abs_expected, c.diff_max = float(m.group(2)), max(float(m.group(3)), c.diff_max or 0.0)
        elif (m := _TESTERROR_VALUE.match(line)) or (m := _RUN_ERROR.match(line)):
            checks.setdefault(m.group(1), OutputCheck(m.group(1), "failed")).status = "failed"
        elif m := _SKIP.match(line):
            checks.setdefault(m.group(1), OutputCheck(m.group(1), "skipped"))
        elif m := _WRITE.match(line):
            run.output_files.append(m.group(2))
        elif line.startswith("TESTERROR") or any(line.startswith(f) for f in _FATAL):
            run.errors.append(line)
    run.checks = list(checks.values())
    return run


@dataclass(frozen=True)
class BenchmarkLine:
    model: str
    max_ms: float
    min_ms: float
    avg_ms: float


_BENCH = re.compile(r"^\[ - \]\s+(\S+)\s+max =\s*([\d.]+) ms\s+min =\s*([\d.]+) ms\s+avg =\s*([\d.]+) ms", re.M)


def parse_benchmark(text: str) -> list[BenchmarkLine]:
    """`benchmark.out` lines. It feeds random data to the first input only, so dhm reads its
    format for users who bring its logs, but benches with ModuleBasic."""
    return [
        BenchmarkLine(m.group(1), float(m.group(2)), float(m.group(3)), float(m.group(4)))
        for m in _BENCH.finditer(text)
    ]


def read_output_txt(text: str, count: int) -> list[float]:
    values = text.split()
    if len(values) != count:
        raise DeviceError(f"ModuleBasic output holds {len(values)} values, the model's output has {count}")
    return [float(v) for v in values]


# ------------------------------------------------------------------------ ELF / ABI

# e_machine values and the Android ABI each one runs on.
_ELF_MACHINES = {3: "x86", 40: "armeabi-v7a", 62: "x86_64", 183: "arm64-v8a"}


def elf_abi(path: Path) -> str:
    """The Android ABI an ELF binary is built for, read from its header."""
    try:
        head = path.read_bytes()[:20]
    except OSError as exc:
        raise DeviceError(f"{path}: cannot read it ({exc.strerror})") from None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        raise DeviceError(
            f"{path}: not an ELF executable; pass the {BINARY} built for your phone by MNN's Android build"
        )
    order = "little" if head[5] == 1 else "big"
    machine = int.from_bytes(head[18:20], order)
    return _ELF_MACHINES.get(machine, f"e_machine {machine}")


def check_abi(binary: Path, device_abis: list[str]) -> str:
    abi = elf_abi(binary)
    if abi not in device_abis:
        raise DeviceError(
            f"{binary} is built for {abi}, the phone runs {', '.join(device_abis)}; "
            f"build MNN for {device_abis[0]} (ANDROID_ABI={device_abis[0]})"
        )
    return abi
