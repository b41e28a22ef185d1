"""Inference backends behind one small interface: named numpy arrays in and out.

    engine = load("student.mnn", threads=2, precision="fp32")
    out = engine.run({"face": face, "audio": audio})["out"]

`load` picks the backend by file: .pt/.pth -> torch, .onnx -> onnxruntime, .mnn -> MNN.
MNN's precision is always named explicitly ("high" for fp32, "low" for fp16): MNN
silently ignores the string "normal" and falls back to its own default.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dhm.errors import SpecError

PRECISIONS = ("fp32", "fp16")
_MNN_PRECISION = {"fp32": "high", "fp16": "low"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


class Engine(Protocol):
    backend: str
    path: Path
    threads: int
    precision: str

    @property
    def inputs(self) -> list[TensorSpec]: ...

    @property
    def outputs(self) -> list[TensorSpec]: ...

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


@contextlib.contextmanager
def native_stdout_to_stderr() -> Iterator[None]:
    """MNN prints banners ("The device supports…", "MNN use high precision") to the C
    stdout; route them to stderr so dhm's own stdout (JSON, tables) stays clean."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise SpecError(f"precision {precision!r}: expected one of {list(PRECISIONS)}")


def _check_inputs(engine: Engine, inputs: Mapping[str, np.ndarray]) -> None:
    for spec in engine.inputs:
        if spec.name not in inputs:
            raise SpecError(f"{engine.path.name}: missing input {spec.name!r}")
        got = tuple(inputs[spec.name].shape)
        if got != spec.shape:
            raise SpecError(f"{engine.path.name}: input {spec.name!r} has shape {list(got)}, the model takes {list(spec.shape)}")


class TorchEngine:
    backend = "torch"

    def __init__(self, path: Path, threads: int, precision: str) -> None:
        import torch

        from dhm.models import load_checkpoint

        if precision != "fp32":
            raise SpecError("the torch backend runs fp32 only (CPU)")
        self.path, self.threads, self.precision = path, threads, precision
        self._torch = torch
        torch.set_num_threads(threads)
        ckpt = load_checkpoint(path)
        self.spec = ckpt.spec
        self.model = ckpt.model.eval()

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec(k, v) for k, v in self.spec.input_shapes(1).items()]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec(k, v) for k, v in self.spec.output_shapes(1).items()]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            args = [torch.from_numpy(np.ascontiguousarray(inputs[s.name], dtype=np.float32)) for s in self.inputs]
            out = self.model(*args)
        return {self.outputs[0].name: out.numpy()}


class OrtEngine:
    backend = "onnxruntime"

    def __init__(self, path: Path, threads: int, precision: str) -> None:
        import onnxruntime as ort

        self.path, self.threads, self.precision = path, threads, precision
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise SpecError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0]})") from None

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec(i.name, tuple(i.shape)) for i in self.session.get_inputs()]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec(o.name, tuple(o.shape)) for o in self.session.get_outputs()]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {s.name: np.ascontiguousarray(inputs[s.name], dtype=np.float32) for s in self.inputs}
        values = self.session.run(None, feeds)
        return {s.name: v for s, v in zip(self.outputs, values)}


class MnnEngine:
    backend = "mnn"

    def __init__(self, path: Path, threads: int, precision: str, input_shapes: Mapping[str, tuple[int, ...]] | None) -> None:
        with native_stdout_to_stderr():
            import MNN
            import MNN.expr as F
            import MNN.nn as nn

            self._F = F
            self.path, self.threads, self.precision = path, threads, precision
            config = {"backend": "CPU", "precision": _MNN_PRECISION[precision], "numThread": threads}
            self.runtime = nn.create_runtime_manager((config,))
            # The bizCode written by `dhm export` names the I/O; fall back to the file's info.
            probe = nn.load_module_from_file(str(path), [], [], runtime_manager=self.runtime)
            info = probe.get_info()
        self.version = MNN.version()
        self.biz = _parse_biz(info.get("bizCode", ""))
        in_names = list(info.get("inputNames") or [])
        out_names = list(info.get("outputNames") or [])
        # Static models carry their input shapes; a dhm bizCode also names output shapes.
        shapes = {n: tuple(int(d) for d in v.shape) for n, v in zip(in_names, info.get("inputs") or [])}
        shapes.update(input_shapes or {})
        out_shapes = {t["name"]: tuple(t["shape"]) for t in self.biz.get("outputs", [])}
        unknown = [n for n in in_names if not shapes.get(n) or min(shapes[n]) < 1]
        if unknown:
            raise SpecError(f"{path}: input {unknown[0]!r} has no fixed shape; pass input_shapes")
        self._inputs = [TensorSpec(n, shapes[n]) for n in in_names]
        self._outputs = [TensorSpec(n, out_shapes.get(n, ())) for n in out_names]
        with native_stdout_to_stderr():
            self.module = nn.load_module_from_file(str(path), in_names, out_names, runtime_manager=self.runtime)

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        F = self._F
        args = [
            F.const(np.ascontiguousarray(inputs[s.name], dtype=np.float32), list(s.shape), F.NCHW) for s in self._inputs
        ]
        values = self.module.forward(args)
        out = {}
        for spec, v in zip(self._outputs, values):
            v = F.convert(v, F.NCHW)
            out[spec.name] = np.array(v.read(), dtype=np.float32, copy=True).reshape(v.shape)
        return out


def _parse_biz(text: str) -> dict[str, Any]:
    import json

    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def backend_for(path: str | os.PathLike[str]) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in (".pt", ".pth"):
        return "torch"
    if suffix == ".onnx":
        return "onnxruntime"
    if suffix == ".mnn":
        return "mnn"
    raise SpecError(f"{path}: unknown model type {suffix!r}; expected .pt/.pth (torch), .onnx or .mnn")


def load(
    path: str | os.PathLike[str],
    threads: int = 1,
    precision: str = "fp32",
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    check_manifest: bool = True,
) -> Engine:
    """Load a model with the backend its file type calls for.

    With check_manifest, a `manifest.json` beside the model is read and the model is
    refused if its inputs or outputs disagree with the manifest's entry for it.
    """
    path = Path(path)
    _check_precision(precision)
    if threads < 1:
        raise SpecError(f"threads must be at least 1, got {threads}")
    if not path.is_file():
        raise SpecError(f"{path}: no such model file")
    backend = backend_for(path)
    engine: Engine
    if backend == "torch":
        engine = TorchEngine(path, threads, precision)
    elif backend == "onnxruntime":
        engine = OrtEngine(path, threads, precision)
    else:
        engine = MnnEngine(path, threads, precision, input_shapes)
    if check_manifest:
        from dhm.manifest import check_engine_against_manifest

        check_engine_against_manifest(engine)
    return engine


def run_checked(engine: Engine, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run with input names and shapes checked first (one clear error, not a crash)."""
    _check_inputs(engine, inputs)
    return engine.run(inputs)
