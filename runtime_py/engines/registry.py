"""The backends dhm runs and builds (NNCF-style dispatch): torch, onnxruntime and MNN.

Each backend says what it is (name, file format and suffixes, version, whether it is an export
a manifest lists and whether the phone apps run it), opens and runs its files, builds variants
from a config (`dhm.runtime_py.engines.configs`), and checks their structure (is an INT8 file
really INT8?). MNN's aarch64 kernels under qemu are a run-only backend registered as MNN's
mirror: every parity check gets its ARM figure from `mirror_of`. Stages ask the registry
instead of branching on engine names.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dhm.errors import ConversionError, SpecError
from dhm.runtime_py.engines.configs import BuildConfig, Fp16, Fp32, MnnInt8, OnnxInt8
from dhm.spec import OUTPUT

if TYPE_CHECKING:  # the engines (numpy, and each its library) load when a file is opened
    import numpy as np

    from dhm.runtime_py.engines.runtime import Engine


class Backend:
    name: str
    format: str  # the file suffix without the dot
    suffixes: tuple[str, ...]  # the file suffixes it opens
    builds: tuple[type[BuildConfig], ...] = ()
    exported = True  # built from the ONNX graph and listed in a manifest (not the checkpoint itself)
    ships = False  # the format the phone apps run
    fp16_low_precision = False  # FP16 files run with the engine's low precision, as a phone runs them
    self_describing = False  # a file carries its generator spec without a manifest (MNN's bizCode)

    def version(self) -> str:
        raise NotImplementedError

    def open(
        self, path: Path, threads: int, precision: str, input_shapes: Mapping[str, tuple[int, ...]] | None,
        crop_interpolation: str | None,
    ) -> Engine:  # fmt: skip
        raise NotImplementedError

    def load(self, path: str | Path, threads: int = 1, precision: str = "fp32") -> Any:
        """The engine for one file, without a manifest check (`load` below does those)."""
        return load(path, threads=threads, precision=precision, check_manifest=False)

    def reserve_threads(self, threads: int) -> None:
        """Prepare the process for runs on up to `threads` threads (before any file is opened)."""

    def run_precision(self, variant: str) -> str:
        """The precision a file of `variant` runs with."""
        return "fp16" if variant == "fp16" and self.fp16_low_precision else "fp32"

    def build(
        self,
        config: BuildConfig,
        onnx_fp32: Path,
        dst: Path,
        *,
        calib: Any = None,
        header: dict[str, Any] | None = None,
        verify: bool = True,
        cache: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write the variant `config` describes to `dst`; returns its structure record.

        `verify=False` skips the INT8 structure check (for trial builds whose result is
        checked once kept); `cache` (a dict and a "dir" folder) lets repeated builds of
        one graph reuse intermediates such as MNN's calibration folder."""
        raise ConversionError(f"{self.name} does not build {config.kind} files")

    def structure(self, path: Path) -> Any:
        return None

    def require_int8(self, path: Path) -> dict[str, Any]:
        """The file's structure if it is really INT8 (int8 weights *and* integer kernels);
        a weight-only or float file stops the run."""
        st = self.structure(path)
        if st is None or st.label != "int8":
            label = st.label if st is not None else "unknown"
            raise ConversionError(f"{path.name}: not really INT8 ({label}: {st.to_dict() if st is not None else {}})")
        return st.to_dict()


class TorchBackend(Backend):
    name, format, suffixes = "torch", "pt", (".pt", ".pth")
    exported = False

    def open(self, path, threads, precision, input_shapes, crop_interpolation) -> Engine:
        from dhm.runtime_py.engines.runtime import TorchEngine

        return TorchEngine(path, threads, precision, crop_interpolation)

    def version(self) -> str:
        import torch

        return torch.__version__


class OnnxBackend(Backend):
    name, format, suffixes = "onnxruntime", "onnx", (".onnx",)
    builds = (Fp32, Fp16, OnnxInt8)

    def open(self, path, threads, precision, input_shapes, crop_interpolation) -> Engine:
        from dhm.runtime_py.engines.runtime import OrtEngine

        return OrtEngine(path, threads, precision)

    def version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__

    def build(
        self,
        config: BuildConfig,
        onnx_fp32: Path,
        dst: Path,
        *,
        calib: Any = None,
        header: dict[str, Any] | None = None,
        verify: bool = True,
        cache: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if isinstance(config, Fp32):
            if Path(dst) != Path(onnx_fp32):
                shutil.copyfile(onnx_fp32, dst)
            return {}
        if isinstance(config, Fp16):
            from dhm.runtime_py.engines.onnx_fp16 import convert_to_fp16

            convert_to_fp16(onnx_fp32, dst)
            return {}
        if isinstance(config, OnnxInt8):
            from dhm.runtime_py.engines.onnx_int8 import quantize_qdq

            if calib is None:
                raise SpecError("an INT8 build needs a calibration set")
            quantize_qdq(
                onnx_fp32, dst, calib, config.method, list(config.exclude), config.act_symmetric, config.weight_type
            )
            return self.require_int8(dst) if verify else {}
        return super().build(config, onnx_fp32, dst)

    def structure(self, path: Path) -> Any:
        from dhm.runtime_py.engines.onnx_int8 import structure

        return structure(path)


class MnnBackend(Backend):
    name, format, suffixes = "mnn", "mnn", (".mnn",)
    builds = (Fp32, Fp16, MnnInt8)
    ships = fp16_low_precision = self_describing = True

    def open(self, path, threads, precision, input_shapes, crop_interpolation) -> Engine:
        from dhm.runtime_py.engines.runtime import MnnEngine, biz_conventions

        engine = MnnEngine(path, threads, precision, input_shapes)
        biz_conventions(engine)
        return engine

    def version(self) -> str:
        from dhm.runtime_py.engines.runtime import native_stdout_to_stderr

        with native_stdout_to_stderr():
            import MNN

            return str(MNN.version())

    def reserve_threads(self, threads: int) -> None:
        from dhm.runtime_py.engines.runtime import reserve_mnn_threads

        reserve_mnn_threads(threads)

    def build(
        self,
        config: BuildConfig,
        onnx_fp32: Path,
        dst: Path,
        *,
        calib: Any = None,
        header: dict[str, Any] | None = None,
        verify: bool = True,
        cache: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """`header`: the generator's manifest header (its bizCode, its outputs), or a plain
        {"biz_code": str, "outputs": [names]} for another model (the audio model)."""
        from dhm.runtime_py.engines.mnn_tools import convert_onnx
        from dhm.manifest import biz_code

        plain = header is not None and "biz_code" in header
        biz = header["biz_code"] if plain else biz_code(header, config.variant) if header else ""
        if isinstance(config, (Fp32, Fp16)):
            convert_onnx(onnx_fp32, dst, fp16=isinstance(config, Fp16), biz_code=biz)
            return {}
        if isinstance(config, MnnInt8):
            import tempfile

            from dhm.runtime_py.engines.mnn_int8 import quantize, write_calibration_folder

            if calib is None:
                raise SpecError("an INT8 build needs a calibration set")
            with contextlib.ExitStack() as stack:
                work = (
                    Path(cache["dir"])
                    if cache is not None
                    else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dhm-mnn-int8-")))
                )
                store = cache if cache is not None else {}
                if "mnn_source" not in store:
                    store["mnn_source"] = work / "int8-source.mnn"
                    convert_onnx(onnx_fp32, store["mnn_source"], biz_code=biz)
                if "mnn_calib" not in store:
                    store["mnn_calib"] = work / "mnn-calib"
                    outputs = (
                        list(header["outputs"])
                        if plain
                        else [t["name"] for t in header["io"]["outputs"]]
                        if header
                        else [OUTPUT]
                    )
                    write_calibration_folder(calib, store["mnn_calib"], outputs)
                used = quantize(
                    store["mnn_source"], dst, store["mnn_calib"], len(calib), config.method, list(config.skip), biz
                )
            return {**(self.require_int8(dst) if verify else {}), "method": used}
        return super().build(config, onnx_fp32, dst)

    def structure(self, path: Path) -> Any:
        from dhm.runtime_py.engines.mnn_int8 import structure

        return structure(path)


BACKENDS: dict[str, Backend] = {b.name: b for b in (TorchBackend(), OnnxBackend(), MnnBackend())}
# `dhm export --target` names formats; these are the backends that build them.
TARGETS: dict[str, str] = {"onnx": "onnxruntime", "mnn": "mnn"}


def get(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise SpecError(f"unknown engine {name!r}; expected one of {', '.join(BACKENDS)}") from None


def for_file(path: str | Path) -> Backend:
    """The backend that opens `path`, by its suffix."""
    suffix = Path(path).suffix.lower()
    for backend in BACKENDS.values():
        if suffix in backend.suffixes:
            return backend
    raise SpecError(f"{path}: unknown model type {suffix!r}; expected .pt/.pth (torch), .onnx or .mnn")


def for_format(fmt: str) -> Backend:
    """The backend that builds and runs files of `fmt` ("onnx", "mnn")."""
    return get(TARGETS[fmt])


def load(
    path: str | Path,
    threads: int = 1,
    precision: str = "fp32",
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    check_manifest: bool = True,
    crop_interpolation: str | None = None,
) -> Engine:
    """Load a model with the backend its file type calls for.

    With check_manifest, a `manifest.json` beside an exported file is read first: the file
    must be listed there with the same sha256 (checked before any engine parses it), its
    inputs must match, and the manifest's conventions (crop filter, audio window) become
    the engine's. An MNN file without a manifest carries them in its bizCode.
    `crop_interpolation` overrides where nothing records the filter and is refused where
    something does and disagrees.
    """
    from dhm.runtime_py.engines.runtime import adopt_manifest, apply_crop_override, check_precision, manifest_entry

    path = Path(path)
    check_precision(precision)
    if threads < 1:
        raise SpecError(f"threads must be at least 1, got {threads}")
    if not path.is_file():
        raise SpecError(f"{path}: no such model file")
    backend = for_file(path)
    found = manifest_entry(path) if check_manifest and backend.exported else None
    engine = backend.open(path, threads, precision, input_shapes, crop_interpolation)
    if found is not None:
        adopt_manifest(engine, *found)
    if crop_interpolation is not None and backend.exported:
        apply_crop_override(engine, crop_interpolation)
    return engine


# ------------------------------------------------------------------ run-only mirrors


class ArmMnnKernels:
    """MNN's aarch64 kernels under qemu-user, as phones compute: runs MNN files (numerics
    only, never timed; ~1 s a frame)."""

    name = "mnn-aarch64"

    @property
    def kernels(self) -> str:
        from dhm.runtime_py.engines.arm import KERNELS

        return KERNELS

    def unavailable(self) -> str | None:
        """Why this machine cannot run it (`make arm-env`), or None."""
        from dhm.runtime_py.engines.arm import unavailable

        return unavailable()

    def run(
        self, path: Path, inputs: Sequence[Mapping[str, np.ndarray]], outputs: Sequence[str], precision: str
    ) -> list[dict[str, np.ndarray]]:
        from dhm.runtime_py.engines.arm import run_mnn

        return run_mnn(path, inputs, list(outputs), precision)


MIRRORS: dict[str, ArmMnnKernels] = {"mnn": ArmMnnKernels()}


def mirror_of(name: str) -> ArmMnnKernels | None:
    """The run-only backend that reruns `name`'s files where phones compute, if any."""
    return MIRRORS.get(name)


def versions() -> dict[str, str]:
    """dhm's version and every backend's, plus onnx (the exchange format)."""
    import onnx

    from dhm import __version__

    return {"dhm": __version__, **{b.name: b.version() for b in BACKENDS.values()}, "onnx": onnx.__version__}
