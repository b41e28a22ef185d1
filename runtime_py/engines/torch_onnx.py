"""torch -> ONNX: static shapes, named I/O, checked, simplified only if still equal."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dhm.errors import ConversionError
from dhm.spec import GeneratorSpec

# Opset 17 is taken by onnxruntime >= 1.12 and by MNN's converter (3.x), and has the
# Resize semantics the bilinear align_corners upsampling needs.
DEFAULT_OPSET = 17


@dataclass(frozen=True)
class ModelIO:
    """Named static input shapes and output names of a network to export."""

    inputs: dict[str, tuple[int, ...]]
    outputs: list[str]

    @classmethod
    def of(cls, io: "GeneratorSpec | ModelIO") -> "ModelIO":
        if isinstance(io, ModelIO):
            return io
        return cls(inputs=dict(io.input_shapes(1)), outputs=list(io.output_shapes(1)))


@dataclass
class OnnxExport:
    path: Path
    opset: int
    simplified: bool
    nodes: int
    simplify_note: str


@contextlib.contextmanager
def _native_output_dropped() -> Iterator[None]:
    """The TorchScript exporter's C++ side prints the whole IR graph to the C stdout when
    an export fails (`_jit_onnx_log`, hundreds of lines); the failure's reason is in the
    exception, so the native output is dropped (dhm's stdout carries tables and JSON)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), 1)
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)


def _torch_export(model, model_io: ModelIO, path: Path, opset: int) -> None:
    import torch

    shapes = model_io.inputs
    args = tuple(torch.zeros(s) for s in shapes.values())
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _native_output_dropped():
        # The TorchScript exporter: the dynamo one needs onnxscript, which dhm does not
        # ship, and gains nothing for a static-shape CNN.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model.eval(),
                args,
                str(path),
                input_names=list(shapes),
                output_names=list(model_io.outputs),
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        except OSError:
            raise  # a full disk or an unwritable folder: the CLI says so in one line
        except Exception as exc:
            reason = str(exc).split("[Caused by")[0].split(" Please feel free")[0].strip().splitlines()[0]
            raise ConversionError(f"torch.onnx.export failed (opset {opset}): {reason}") from None


def _ort_outputs(path: Path, inputs: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    from dhm.runtime_py.engines import OrtEngine

    engine = OrtEngine(path, threads=1, precision="fp32")
    return [engine.run(x)[engine.outputs[0].name] for x in inputs]


def export_onnx(
    model,
    spec: GeneratorSpec | ModelIO,
    path: Path,
    check_inputs: list[dict[str, np.ndarray]],
    opset: int = DEFAULT_OPSET,
    simplify: bool = True,
    simplify_tolerance: float = 1e-5,
) -> OnnxExport:
    """Export, run onnx.checker, then simplify with onnxsim, keeping the simplified graph
    only if it matches the raw export on `check_inputs`."""
    import onnx

    _torch_export(model, ModelIO.of(spec), path, opset)
    try:
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        raise ConversionError(f"exported ONNX fails onnx.checker: {str(exc).splitlines()[0]}") from None
    simplified, note = False, "not attempted"
    if simplify:
        simplified, note = _simplify(path, proto, check_inputs, simplify_tolerance)
    final = onnx.load(str(path))
    return OnnxExport(path=path, opset=opset, simplified=simplified, nodes=len(final.graph.node), simplify_note=note)


def _simplify(path: Path, proto, check_inputs: list[dict[str, np.ndarray]], tolerance: float) -> tuple[bool, str]:
    import onnx
    import onnxsim

    raw_out = _ort_outputs(path, check_inputs)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            simp, ok = onnxsim.simplify(proto)
    except Exception as exc:  # onnxsim failing is not fatal: the raw graph is valid
        return False, f"onnxsim failed ({type(exc).__name__}); kept the raw export"
    if not ok:
        return False, "onnxsim could not verify its result; kept the raw export"
    candidate = path.with_suffix(".simplified.onnx")
    onnx.save(simp, str(candidate))
    try:
        onnx.checker.check_model(simp)
        simp_out = _ort_outputs(candidate, check_inputs)
        diff = max(float(np.max(np.abs(a - b))) for a, b in zip(raw_out, simp_out, strict=True))
    except Exception as exc:
        candidate.unlink(missing_ok=True)
        return False, f"simplified graph did not run ({type(exc).__name__}); kept the raw export"
    if diff > tolerance:
        candidate.unlink(missing_ok=True)
        return False, f"simplified graph differs by {diff:.2e} > {tolerance:.0e}; kept the raw export"
    candidate.replace(path)
    return True, f"{len(proto.graph.node)} -> {len(simp.graph.node)} nodes, max diff {diff:.1e}"
