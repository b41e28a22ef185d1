"""MNN's converter and quantizer, called through the compiled `_tools` module only.

MNN's console scripts and `MNN.tools.*` wrappers pip-install a logging SDK into the
user's environment and send usage data with the machine id, and the 3.6 `mnnquant`
wrapper aborts; dhm never imports them. `_tools.mnnconvert([...])` and
`_tools.mnnquant([...])` run in a child Python, so a native crash (the converter
segfaults on some malformed graphs) becomes a clear error instead of killing dhm.
The converter reports most failures only in its output (its return value is True even
then), so the output text and the written file are what decide success.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from dhm.errors import ConversionError

DEFAULT_TIMEOUT_S = 600

# -I: isolated mode (no user site, no PYTHONPATH, no cwd on sys.path). Only the compiled
# `_tools` extension is imported; the `MNN` package and its `tools` wrappers are not.
_CHILD = (
    "import json, sys\nimport _tools\nfn = getattr(_tools, sys.argv[1])\nargs = json.loads(sys.argv[2])\nfn(args)\n"
)


@dataclass
class ToolRun:
    tool: str
    args: list[str]
    output: str
    returncode: int


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"crashed with {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _tail(text: str, lines: int = 3) -> str:
    kept = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and "device supports" not in ln]
    return " | ".join(kept[-lines:])


def run_tool(tool: str, args: list[str], what: str, timeout_s: int = DEFAULT_TIMEOUT_S) -> ToolRun:
    """Run `_tools.<tool>(args)` in a child process; raise ConversionError on a crash."""
    if tool not in ("mnnconvert", "mnnquant"):
        raise ValueError(tool)
    cmd = [sys.executable, "-I", "-c", _CHILD, tool, json.dumps(args)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ConversionError(f"MNN {tool} timed out after {timeout_s}s {what}") from None
    output = (proc.stdout or "") + (proc.stderr or "")
    if proc.returncode != 0:
        detail = _tail(output)
        raise ConversionError(
            f"MNN {tool} {_describe_exit(proc.returncode)} {what}" + (f": {detail}" if detail else "")
        )
    return ToolRun(tool=tool, args=args, output=output, returncode=proc.returncode)


def convert_onnx(
    onnx_path: Path,
    mnn_path: Path,
    *,
    fp16: bool = False,
    biz_code: str = "",
    extra_args: list[str] | None = None,
    timeout_s: int = DEFAULT_TIMEOUT_S,
) -> ToolRun:
    """ONNX -> MNN. `fp16` stores conv weights as float16 (the converter's --fp16)."""
    args = ["mnnconvert", "-f", "ONNX", "--modelFile", str(onnx_path), "--MNNModel", str(mnn_path)]
    if biz_code:
        args += ["--bizCode", biz_code]
    if fp16:
        args.append("--fp16")
    args += list(extra_args or [])
    run = run_tool("mnnconvert", args, f"converting {onnx_path.name}", timeout_s)
    errors = [ln.strip() for ln in run.output.splitlines() if ln.strip().startswith("[ERROR]")]
    if errors or "Converted Success" not in run.output:
        raise ConversionError(
            f"MNN converter failed on {onnx_path.name}: " + (errors[0] if errors else _tail(run.output) or "no output")
        )
    if not mnn_path.is_file() or mnn_path.stat().st_size == 0:
        raise ConversionError(f"MNN converter reported success but wrote no {mnn_path.name}")
    return run


def quantize_mnn(src: Path, dst: Path, config: Path, timeout_s: int = DEFAULT_TIMEOUT_S) -> ToolRun:
    """MNN's offline quantizer: `_tools.mnnquant(["mnnquant", src, dst, config])`."""
    run = run_tool("mnnquant", ["mnnquant", str(src), str(dst), str(config)], f"quantizing {src.name}", timeout_s)
    if not dst.is_file() or dst.stat().st_size == 0:
        raise ConversionError(f"MNN quantizer wrote no {dst.name}: {_tail(run.output) or 'no output'}")
    return run
