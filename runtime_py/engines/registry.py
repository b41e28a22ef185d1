"""The backends dhm runs and builds (NNCF-style dispatch): torch, onnxruntime and MNN.

Each backend says what it is (name, file format, version), loads and runs its files, builds
variants from a config (`dhm.runtime_py.engines.build`), and checks their structure (is an INT8 file
really INT8?). Stages ask the registry instead of branching on engine names.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

from dhm.runtime_py.engines.configs import BuildConfig, Fp16, Fp32, MnnInt8, OnnxInt8
from dhm.errors import ConversionError, SpecError
from dhm.spec import OUTPUT


class Backend:
    name: str
    format: str  # the file suffix without the dot
    builds: tuple[type[BuildConfig], ...] = ()

    def version(self) -> str:
        raise NotImplementedError

    def load(self, path: str | Path, threads: int = 1, precision: str = "fp32") -> Any:
        """The engine for one file, without a manifest check (`dhm.runtime_py.engines.load` does those)."""
        from dhm.runtime_py.engines.runtime import load

        return load(path, threads=threads, precision=precision, check_manifest=False)

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
    name, format = "torch", "pt"

    def version(self) -> str:
        import torch

        return torch.__version__


class OnnxBackend(Backend):
    name, format = "onnxruntime", "onnx"
    builds = (Fp32, Fp16, OnnxInt8)

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
    name, format = "mnn", "mnn"
    builds = (Fp32, Fp16, MnnInt8)

    def version(self) -> str:
        from dhm.runtime_py.engines.runtime import native_stdout_to_stderr

        with native_stdout_to_stderr():
            import MNN

            return str(MNN.version())

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
    from dhm.runtime_py.engines.runtime import backend_for

    return get(backend_for(path))


def versions() -> dict[str, str]:
    """dhm's version and every backend's, plus onnx (the exchange format)."""
    import onnx

    from dhm import __version__

    return {"dhm": __version__, **{b.name: b.version() for b in BACKENDS.values()}, "onnx": onnx.__version__}
