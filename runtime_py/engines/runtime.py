"""Inference backends behind one small interface: named numpy arrays in and out.

    engine = load("student.mnn", threads=2, precision="fp32")
    out = engine.run({"face": face, "audio": audio})["out"]

`load` (the registry's) picks the backend by file: .pt/.pth -> torch, .onnx -> onnxruntime, .mnn -> MNN.
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
from dhm.spec import AUDIO_INPUT, AUDIO_MODES, INTERPOLATIONS, WINDOWS, Conventions, GeneratorSpec

PRECISIONS = ("fp32", "fp16")
_MNN_PRECISION = {"fp32": "high", "fp16": "low"}
# MNN's CPU backend keeps one thread pool per process, sized by the first runtime that asks for
# more than one thread; a later runtime asking for more gets the pool's size (ThreadPool::init).
_MNN_POOL = {"threads": 0}


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
    # What the model expects of its inputs (crop filter, audio window), when known: from
    # the checkpoint, the manifest beside the file, or an MNN file's bizCode.
    conventions: Conventions | None

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


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise SpecError(f"precision {precision!r}: expected one of {list(PRECISIONS)}")


def _check_inputs(engine: Engine, inputs: Mapping[str, np.ndarray]) -> None:
    for spec in engine.inputs:
        if spec.name not in inputs:
            raise SpecError(f"{engine.path.name}: missing input {spec.name!r}")
        got = tuple(inputs[spec.name].shape)
        if got != spec.shape:
            raise SpecError(
                f"{engine.path.name}: input {spec.name!r} has shape {list(got)}, the model takes {list(spec.shape)}"
            )


class TorchEngine:
    backend = "torch"

    def __init__(self, path: Path, threads: int, precision: str, crop_interpolation: str | None = None) -> None:
        import torch

        from dhm.models import load_checkpoint

        if precision != "fp32":
            raise SpecError("the torch backend runs fp32 only (CPU)")
        self.path, self.threads, self.precision = path, threads, precision
        self._torch = torch
        torch.set_num_threads(threads)
        ckpt = load_checkpoint(path, crop_interpolation=crop_interpolation)
        self.spec: GeneratorSpec | None = ckpt.spec
        self.conventions: Conventions | None = ckpt.spec.conventions
        self.frontend: str | None = ckpt.metadata.get("audio_frontend")  # the features it was trained on
        # MobileOne runs reparameterized, as after export.
        self.model = ckpt.inference_model().eval()

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec(k, v) for k, v in self.spec.input_shapes(1).items()]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec(k, v) for k, v in self.spec.output_shapes(1).items()]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        if torch.get_num_threads() != self.threads:  # torch's count is process-wide: each engine its own
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            args = [torch.from_numpy(np.ascontiguousarray(inputs[s.name], dtype=np.float32)) for s in self.inputs]
            out = self.model(*args)
        return {self.outputs[0].name: out.numpy()}


class OrtEngine:
    backend = "onnxruntime"

    def __init__(self, path: Path, threads: int, precision: str) -> None:
        import onnxruntime as ort

        self.path, self.threads, self.precision = path, threads, precision
        self.spec: GeneratorSpec | None = None
        self.conventions: Conventions | None = None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise SpecError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0]})") from None
        dynamic = [i for i in self.session.get_inputs() if not all(isinstance(d, int) and d > 0 for d in i.shape)]
        if dynamic:
            raise SpecError(
                f"{path}: input {dynamic[0].name!r} has a dynamic shape {dynamic[0].shape}; "
                "dhm runs static-shape models (export them with `dhm export`)"
            )

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec(i.name, tuple(i.shape)) for i in self.session.get_inputs()]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec(o.name, tuple(o.shape)) for o in self.session.get_outputs()]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {s.name: np.ascontiguousarray(inputs[s.name], dtype=np.float32) for s in self.inputs}
        values = self.session.run(None, feeds)
        return {s.name: v for s, v in zip(self.outputs, values, strict=True)}


_MNN_INFO: dict[tuple[str, int, int], dict[str, Any]] = {}


def _mnn_info(path: Path, runtime: Any) -> dict[str, Any]:
    """The file's I/O names, shapes and bizCode, read once per file version: MNN's `get_info`
    keeps ~0.3 MB each call, which a session reopening its model (switching avatars) would pile up."""
    import MNN.nn as nn

    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _MNN_INFO:
        try:
            probe = nn.load_module_from_file(str(path), [], [], runtime_manager=runtime)
            info = probe.get_info()
        except Exception:  # MNN verifies the flatbuffer and raises SystemError on a bad one
            raise SpecError(f"{path}: MNN cannot load it (not a valid .mnn model file)") from None
        shapes = [tuple(int(d) for d in v.shape) for v in info.get("inputs") or []]
        _MNN_INFO[key] = {
            "bizCode": info.get("bizCode", ""),
            "inputNames": list(info.get("inputNames") or []),
            "outputNames": list(info.get("outputNames") or []),
            "input_shapes": shapes,
        }
    return _MNN_INFO[key]


def reserve_mnn_threads(threads: int) -> int:
    """Size MNN's thread pool for `threads` unless a runtime already sized it (a process that
    times several thread counts calls this first, with the largest, not the core count: every
    worker of the pool spins while any runtime runs); returns the pool's size."""
    if threads > 1 and not _MNN_POOL["threads"]:
        with native_stdout_to_stderr():
            import MNN.nn as nn

            nn.create_runtime_manager(({"backend": "CPU", "numThread": threads},))
        _MNN_POOL["threads"] = threads
    return _MNN_POOL["threads"]


class MnnEngine:
    backend = "mnn"

    def __init__(
        self, path: Path, threads: int, precision: str, input_shapes: Mapping[str, tuple[int, ...]] | None
    ) -> None:
        with native_stdout_to_stderr():
            import MNN
            import MNN.expr as F
            import MNN.nn as nn

            self._F = F
            pool = reserve_mnn_threads(threads)
            if threads > pool > 1:  # say so rather than time or report threads the model never had
                print(
                    f"dhm: warning: {path.name} runs on {pool} threads, not {threads}: MNN sized its thread pool "
                    f"for the first model this process loaded with more than one thread",
                    file=sys.stderr,
                )
                threads = pool
            self.path, self.threads, self.precision = path, threads, precision
            config = {"backend": "CPU", "precision": _MNN_PRECISION[precision], "numThread": threads}
            self.runtime = nn.create_runtime_manager((config,))
            # The bizCode written by `dhm export` names the I/O; fall back to the file's info.
            info = _mnn_info(path, self.runtime)
        self.version = MNN.version()
        self.biz = _parse_biz(info.get("bizCode", ""))
        self.spec: GeneratorSpec | None = None
        self.conventions: Conventions | None = None
        in_names = list(info.get("inputNames") or [])
        out_names = list(info.get("outputNames") or [])
        # Static models carry their input shapes; a dhm bizCode also names output shapes.
        shapes = dict(zip(in_names, info["input_shapes"], strict=False))
        shapes.update(input_shapes or {})
        try:
            out_shapes = {str(t["name"]): tuple(int(d) for d in t["shape"]) for t in self.biz.get("outputs", [])}
        except (TypeError, KeyError, ValueError):  # a bizCode that is not dhm's
            out_shapes = {}
        unknown = [n for n in in_names if not shapes.get(n) or min(shapes[n]) < 1]
        if unknown:
            raise SpecError(f"{path}: input {unknown[0]!r} has no fixed shape; pass input_shapes")
        self._inputs = [TensorSpec(n, shapes[n]) for n in in_names]
        self._outputs = [TensorSpec(n, out_shapes.get(n, ())) for n in out_names]
        with native_stdout_to_stderr():
            try:
                self.module = nn.load_module_from_file(str(path), in_names, out_names, runtime_manager=self.runtime)
            except Exception:
                raise SpecError(f"{path}: MNN cannot load it with inputs {in_names} and outputs {out_names}") from None

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
        for spec, v in zip(self._outputs, values, strict=True):
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


def biz_conventions(engine: Any) -> None:
    """An MNN file without a manifest carries its spec and conventions in its bizCode."""
    biz = getattr(engine, "biz", {})
    if not {"generator", "preprocess", "audio"} <= set(biz):
        return
    from dhm.manifest import conventions, generator_spec

    try:
        engine.spec, engine.conventions = generator_spec(biz), conventions(biz)
    except (SpecError, KeyError, TypeError, ValueError):
        engine.spec, engine.conventions = None, None


def adopt_manifest(engine: Engine, manifest: dict[str, Any], manifest_path: Path) -> None:
    """The manifest's inputs must be the engine's; its spec and conventions become the engine's."""
    from dhm.manifest import conventions, generator_spec

    _check_io(engine, manifest, manifest_path)
    engine.spec, engine.conventions = generator_spec(manifest), conventions(manifest)  # type: ignore[attr-defined]
    engine.manifest, engine.manifest_path = manifest, manifest_path  # type: ignore[attr-defined]


def manifest_entry(path: Path) -> tuple[dict[str, Any], Path] | None:
    """The manifest beside `path` (if any), after checking that it lists the file with
    this file's sha256: a changed or corrupt model is named here, before a native parser
    reads it."""
    from dhm.manifest import MANIFEST_FILE, read_manifest
    from dhm.models.checkpoint import file_sha256

    manifest_path = path.parent / MANIFEST_FILE
    if not manifest_path.is_file():
        return None
    manifest = read_manifest(manifest_path)
    entries = [a for a in manifest["artifacts"] if a["file"] == path.name]
    if not entries:
        raise SpecError(f"{path}: not listed in {manifest_path}")
    if file_sha256(path) != entries[0]["sha256"]:
        raise SpecError(f"{path}: sha256 differs from {manifest_path}: the file was changed or replaced")
    return manifest, manifest_path


def _check_io(engine: Engine, manifest: dict[str, Any], manifest_path: Path) -> None:
    """Refuse a model whose inputs disagree with its manifest."""
    expected = {t["name"]: tuple(t["shape"]) for t in manifest["io"]["inputs"]}
    got = {t.name: tuple(t.shape) for t in engine.inputs}
    if set(expected) != set(got):
        raise SpecError(f"{engine.path}: inputs {sorted(got)} disagree with {manifest_path} ({sorted(expected)})")
    for name, shape in expected.items():
        if got[name] != shape:
            raise SpecError(f"{engine.path}: input {name!r} is {list(got[name])}, {manifest_path} says {list(shape)}")


def apply_crop_override(engine: Engine, crop_interpolation: str) -> None:
    if crop_interpolation not in INTERPOLATIONS:
        raise SpecError(f"--crop-interpolation {crop_interpolation!r}: expected one of {', '.join(INTERPOLATIONS)}")
    known = engine.conventions
    if known is not None:
        if known.preprocess.crop_interpolation != crop_interpolation:
            raise SpecError(
                f"{engine.path}: its manifest says {known.preprocess.crop_interpolation} crops; "
                f"--crop-interpolation {crop_interpolation} contradicts it"
            )
        return
    from dataclasses import replace

    from dhm.spec import PREPROCESS

    mode, window = audio_of(engine)
    engine.conventions = Conventions(replace(PREPROCESS, crop_interpolation=crop_interpolation), mode, window)


def audio_of(engine: Engine):
    """(audio mode, window) an engine's audio input shape implies."""
    shape = next((tuple(t.shape[1:]) for t in engine.inputs if t.name == AUDIO_INPUT), None)
    for mode in AUDIO_MODES.values():
        for window in WINDOWS:
            if mode.input_shape(window) == shape:
                return mode, window
    raise SpecError(
        f"{engine.path.name}: audio input {list(shape) if shape else None} matches no audio mode and window"
    )


def conventions_of(engine: Engine) -> Conventions:
    """The engine's conventions, or one clear line saying how to supply them."""
    if engine.conventions is None:
        raise SpecError(
            f"{engine.path}: no manifest.json beside it says which crop filter the model was trained with; "
            "keep the file in its `dhm export` folder, or pass --crop-interpolation linear|area"
        )
    return engine.conventions


def run_checked(engine: Engine, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run with input names and shapes checked first (one clear error, not a crash)."""
    _check_inputs(engine, inputs)
    return engine.run(inputs)
