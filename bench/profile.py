"""Where MNN's time goes: per-op-type time of each MNN candidate, from MNN's own callbacks.

MNN calls back before and after every op of a session (`runSessionWithCallBackInfo`), naming
its type (`Convolution`, `ConvolutionDepthwise [ DT_INT8 ]`, `Raster`, `FloatToInt8`…), so one
run split by type says whether a variant loses in its kernels, in layout copies (Raster) or in
conversions between float and int8. The callbacks cost a little each; shares are what count.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# op types that only move or convert data: no arithmetic a smaller model would save
CONVERSIONS = ("Raster", "FloatToInt8", "Int8ToFloat", "ConvertTensor")


def op_profile(path: Path, precision: str, threads: int, runs: int = 10) -> dict[str, Any]:
    """Per op type (int8 kernels marked as MNN marks them): ms per frame and op count."""
    import MNN

    interp = MNN.Interpreter(str(path))
    session = interp.createSession({"numThread": threads, "precision": "low" if precision == "fp16" else "high"})
    rng = np.random.default_rng(0)
    for tensor in interp.getSessionInputAll(session).values():
        shape = tensor.getShape()
        values = rng.uniform(0, 1, shape).astype(np.float32)
        tensor.copyFrom(MNN.Tensor(shape, MNN.Halide_Type_Float, values, MNN.Tensor_DimensionType_Caffe))
    for _ in range(3):
        interp.runSession(session)
    spent: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    started: dict[str, float] = {}

    def begin(_tensors: Any, info: Any) -> bool:
        started[info.getName()] = time.perf_counter()
        return True

    def end(_tensors: Any, info: Any) -> bool:
        kind = " ".join(info.getType().split())
        spent[kind] += time.perf_counter() - started[info.getName()]
        count[kind] += 1
        return True

    for _ in range(runs):
        interp.runSessionWithCallBackInfo(session, begin, end)
    ops = {k: {"ms": 1000.0 * v / runs, "ops": count[k] // runs} for k, v in spent.items()}
    total = sum(o["ms"] for o in ops.values())
    moving = sum(o["ms"] for k, o in ops.items() if k.split(" [")[0] in CONVERSIONS)
    return {"threads": threads, "runs": runs, "total_ms": total, "conversion_ms": moving, "ops": ops}


def profiles(cands: Sequence[Any], threads: int, log: Any, runs: int = 10) -> list[dict[str, Any]]:
    """Every MNN candidate's op profile at `threads`."""
    from dhm.runtime_py.engines import get

    out = []
    for c in cands:
        if get(c.backend).ships and Path(c.path).suffix == ".mnn":
            p = op_profile(Path(c.path), c.precision, threads, runs)
            out.append({"id": c.id, "variant": c.variant, "macs": c.macs, **p})
            log(f"[bench] op profile {c.id}: {p['total_ms']:.2f} ms, {p['conversion_ms']:.2f} ms moving data")
    return out


def _base(kind: str) -> str:
    return kind.split(" [")[0]


def markdown(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Op type x MNN candidate (ms per frame), then what each INT8 model loses against the FP32
    model of the same name, by op type."""
    if not rows:
        return []
    kinds = sorted(
        {k for r in rows for k in r["ops"]}, key=lambda k: -max(r["ops"].get(k, {}).get("ms", 0) for r in rows)
    )
    lines = [
        "",
        f"## Where MNN's time goes ({rows[0]['threads']} thread(s), MNN's per-op callbacks)",
        "",
        "ms per frame by op type (`[ DT_INT8 ]`: MNN's int8 kernel). Raster, FloatToInt8 and Int8ToFloat move or "
        "convert data and compute nothing.",
        "",
        "| op type | " + " | ".join(r["id"] for r in rows) + " |",
        "|---|" + "---:|" * len(rows),
    ]
    for k in kinds:
        cells = [f"{r['ops'][k]['ms']:.2f} ({r['ops'][k]['ops']})" if k in r["ops"] else "–" for r in rows]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(f"**{r['total_ms']:.2f}**" for r in rows) + " |")
    lines.append("| GFLOPS | " + " | ".join(f"{2 * r['macs'] / (r['total_ms'] * 1e6):.1f}" for r in rows) + " |")
    return lines + _int8_losses(rows)


def int8_losses(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per INT8 model with an FP32 twin: the op families it spends more time in, largest first."""
    by_id = {r["id"]: r for r in rows}
    out = []
    for r in rows:
        twin = by_id.get(r["id"].rsplit("/", 1)[0] + "/fp32")
        if r["variant"] != "int8" or twin is None:
            continue
        fam: dict[str, float] = defaultdict(float)
        for k, o in r["ops"].items():
            fam[_base(k)] += o["ms"]
        for k, o in twin["ops"].items():
            fam[_base(k)] -= o["ms"]
        extra = sorted(((k, v) for k, v in fam.items() if abs(v) >= 0.01), key=lambda kv: -kv[1])
        out.append({"id": r["id"], "fp32": twin["id"], "extra_ms": r["total_ms"] - twin["total_ms"], "by_op": extra})
    return out


def _int8_losses(rows: Sequence[dict[str, Any]]) -> list[str]:
    lines = []
    for loss in int8_losses(rows):
        parts = ", ".join(f"{k} {v:+.2f} ms" for k, v in loss["by_op"] if v > 0)
        lines += ["", f"`{loss['id']}` against `{loss['fp32']}`: {loss['extra_ms']:+.2f} ms per frame; " + parts + "."]
    return lines
