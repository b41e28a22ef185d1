"""What `dhm bench` measures: every model × backend × precision, and the reference teacher.

A MODEL argument is one of
- an export folder (holding `manifest.json`): every artefact in it whose engine is among
  `--backends`;
- a checkpoint (.pt/.pth): torch, plus onnxruntime and MNN FP32 builds made for the run
  with `dhm export` (validated as usual) when those backends are asked for;
- a single .onnx or .mnn file: exactly that file (its variant from the manifest beside it
  or the MNN bizCode).
`NAME=PATH` names the model in the report; otherwise the file or folder name does.

The reference teacher always runs in torch FP32 (the parity reference and the speed
baseline) and, for the ratios the issue asks for, in onnxruntime and MNN FP32 too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dhm.errors import SpecError
from dhm.runtime_py.engines.registry import BACKENDS as REGISTERED
from dhm.runtime_py.engines.registry import for_file, get
from dhm.spec import GeneratorSpec

BACKENDS = tuple(REGISTERED)
REFERENCE = "teacher"


@dataclass(frozen=True)
class Candidate:
    model: str  # the name in the report: "teacher", "student", …
    role: str  # "reference" (the teacher) or "model"
    path: Path
    backend: str
    variant: str  # fp32, fp16, int8 (what the file holds)
    spec: GeneratorSpec
    macs: int
    params: int
    built_for_run: bool = False  # an export made by `dhm bench` itself (not the user's file)

    @property
    def id(self) -> str:
        return f"{self.model}/{self.backend}/{self.variant}"

    @property
    def precision(self) -> str:
        """Runtime precision: fp16 files run with MNN's low precision, as a phone would."""
        return get(self.backend).run_precision(self.variant)

    def to_dict(self) -> dict[str, Any]:
        from dhm.metrics import file_size

        return {
            "id": self.id,
            "model": self.model,
            "role": self.role,
            "file": str(self.path),
            "backend": self.backend,
            "variant": self.variant,
            "precision": self.precision,
            "size_bytes": file_size(self.path),
            "macs": self.macs,
            "params": self.params,
            "generator": self.spec.to_dict(),
            "built_for_run": self.built_for_run,
        }


def split_name(arg: str) -> tuple[str | None, Path]:
    if "=" in arg and not Path(arg).exists():
        name, _, path = arg.partition("=")
        if not name or "/" in name:
            raise SpecError(f"{arg!r}: expected NAME=PATH with a plain name")
        return name, Path(path)
    return None, Path(arg)


def _manifest_for(path: Path) -> dict[str, Any] | None:
    from dhm.manifest import MANIFEST_FILE, read_manifest

    m = path / MANIFEST_FILE if path.is_dir() else path.parent / MANIFEST_FILE
    return read_manifest(m) if m.is_file() else None


def _from_manifest(
    name: str, folder: Path, manifest: dict[str, Any], backends: Sequence[str], only: str | None
) -> list[Candidate]:
    from dhm.manifest import generator_spec

    gen = manifest["generator"]
    spec = generator_spec(manifest)
    out = []
    for a in manifest["artifacts"]:
        if only is not None and a["file"] != only:
            continue
        if only is None and a["engine"] not in backends:
            continue
        path = folder / a["file"]
        if not path.is_file():
            raise SpecError(f"{path}: listed in {folder / 'manifest.json'} but missing")
        out.append(
            Candidate(name, "model", path, a["engine"], a["variant"], spec, int(gen["macs"]), int(gen["params"]))
        )
    return out


def _file_without_manifest(name: str, path: Path) -> Candidate:
    """An .onnx/.mnn with no manifest beside it: spec from the MNN bizCode, or refuse."""
    backend = for_file(path)
    if backend.self_describing:
        engine = backend.load(path)
        biz = getattr(engine, "biz", {})
        if engine.spec is not None:
            spec = engine.spec
            from dhm.metrics import generator_cost

            macs, params = generator_cost(spec)
            return Candidate(name, "model", path, backend.name, biz.get("variant", "fp32"), spec, macs, params)
    raise SpecError(
        f"{path}: no manifest.json beside it to say what it holds; bench the `dhm export` folder, or keep the "
        "manifest with the file"
    )


def _exported(
    name: str,
    checkpoint: Path,
    spec: GeneratorSpec,
    backends: Sequence[str],
    work: Path,
    data: Path,
    role: str,
    log: Callable[[str], None],
    crop_interpolation: str | None = None,
) -> list[Candidate]:
    """torch for the checkpoint itself; onnxruntime/MNN FP32 built for the run by the
    engine layer and validated against the checkpoint (max abs <= 1e-4)."""
    from dhm.metrics import generator_cost

    macs, params = generator_cost(spec)
    out = []
    own = for_file(checkpoint).name  # the checkpoint itself runs in torch
    if own in backends or role == "reference":
        out.append(Candidate(name, role, checkpoint, own, "fp32", spec, macs, params))
    chosen = [b for b in BACKENDS if b in backends and get(b).exported]
    if chosen:
        import torch

        from dhm.data.inputs import heldout_inputs
        from dhm.runtime_py.engines import TOLERANCES, Fp32, build_and_validate, versions
        from dhm.runtime_py.engines.torch_onnx import export_onnx
        from dhm.manifest import build_header
        from dhm.models import load_checkpoint

        folder = work / name
        folder.mkdir(parents=True, exist_ok=True)
        ckpt = load_checkpoint(checkpoint, crop_interpolation=crop_interpolation)
        model = ckpt.inference_model()
        check = heldout_inputs(data, spec, "eval", 4)
        with torch.inference_mode():
            reference = [ckpt.model(*(torch.from_numpy(x[k]) for k in x)).numpy() for x in check.inputs]
        log(f"[bench] building {checkpoint.name} as {'/'.join(chosen)} fp32 for this run")
        onnx_fp32 = folder / "model_fp32.onnx"
        export_onnx(model, spec, onnx_fp32, check.inputs)
        header = build_header(spec, macs, params, source=None, versions=versions())
        for b in chosen:
            backend = get(b)
            dst = folder / f"model_fp32.{backend.format}"
            # x86 parity only: these files never ship (a full-size teacher takes ~40 s a frame under qemu)
            art = build_and_validate(
                backend, Fp32(), onnx_fp32, dst, check, reference, TOLERANCES["fp32"], header=header,
                on_phone_kernels=False,
            )  # fmt: skip
            out.append(Candidate(name, role, art.path, b, "fp32", spec, macs, params, built_for_run=True))
    return out


def reference_spec(reference: Path, crop_interpolation: str | None = None) -> GeneratorSpec:
    """The teacher's spec, after checking it is a checkpoint torch can run."""
    from dhm.models import load_checkpoint

    if not reference.is_file():
        raise SpecError(f"{reference}: no such reference checkpoint")
    if reference.suffix.lower() not in (".pt", ".pth"):
        raise SpecError(f"{reference}: the reference is the full teacher's checkpoint (.pt/.pth), run in torch FP32")
    return load_checkpoint(reference, crop_interpolation=crop_interpolation).spec


def resolve(
    reference: Path,
    ref_spec: GeneratorSpec,
    models: Sequence[str],
    backends: Sequence[str],
    work: Path,
    data: Path,
    log: Callable[[str], None] = lambda _m: None,
    crop_interpolation: str | None = None,
) -> list[Candidate]:
    """The candidates, reference first, after the checks that must come before any timing.
    `ref_spec` is `reference_spec(reference)`."""
    names: set[str] = {REFERENCE}
    plan: list[tuple[str, Path]] = []
    for arg in models:
        name, path = split_name(arg)
        if not path.exists():
            raise SpecError(f"{path}: no such model file or folder")
        name = name or (path.name if path.is_dir() else path.stem)
        if name in names:
            raise SpecError(f"two models are named {name!r}; name them with NAME=PATH")
        names.add(name)
        plan.append((name, path))
    # Check every model's spec against the reference before exporting or timing anything.
    specs = [(name, path, _spec_of(path, crop_interpolation)) for name, path in plan]
    for (n0, _, s0), (n1, _, s1) in zip(specs, specs[1:], strict=False):
        if s0.input_shapes(1) != s1.input_shapes(1):
            raise SpecError(
                f"models with different input specs in one call: {n0} takes {_shapes(s0)}, {n1} takes {_shapes(s1)}; "
                "bench them separately"
            )
    for name, path, spec in specs:
        check_compatible(ref_spec, spec, f"{name} ({path})")

    cands = _exported(REFERENCE, reference, ref_spec, backends, work, data, "reference", log, crop_interpolation)
    for name, path, spec in specs:
        if path.is_dir():
            manifest = _manifest_for(path)
            if manifest is None:
                raise SpecError(f"{path}: a folder without manifest.json; pass a `dhm export` folder or model files")
            found = _from_manifest(name, path, manifest, backends, None)
            if not found:
                raise SpecError(f"{path}: none of its artefacts runs on {', '.join(backends)}")
            cands += found
        elif path.suffix.lower() in (".pt", ".pth"):
            cands += _exported(name, path, spec, backends, work, data, "model", log, crop_interpolation)
        else:
            manifest = _manifest_for(path)
            cands += (
                _from_manifest(name, path.parent, manifest, backends, path.name)
                if manifest
                else [_file_without_manifest(name, path)]
            )
    return cands


def _spec_of(path: Path, crop_interpolation: str | None = None) -> GeneratorSpec:
    from dhm.models import load_checkpoint

    if path.is_dir() or path.suffix.lower() in (".onnx", ".mnn"):
        manifest = _manifest_for(path)
        if manifest is not None:
            if not path.is_dir() and not any(a["file"] == path.name for a in manifest["artifacts"]):
                raise SpecError(f"{path}: not listed in the manifest beside it")
            from dhm.manifest import generator_spec

            return generator_spec(manifest)
        if path.is_dir():
            raise SpecError(f"{path}: a folder without manifest.json; pass a `dhm export` folder or model files")
        return _file_without_manifest(path.stem, path).spec
    return load_checkpoint(path, crop_interpolation=crop_interpolation).spec


def check_compatible(reference: GeneratorSpec, spec: GeneratorSpec, what: str) -> None:
    """Parity needs the same audio mode, window and crop filter (the same network inputs)
    as the reference."""
    if spec.mode != reference.mode:
        raise SpecError(
            f"{what} is a {spec.mode} model, the reference teacher is {reference.mode}: parity needs the same audio "
            "mode"
        )
    if spec.conventions != reference.conventions:
        raise SpecError(
            f"{what} expects {spec.conventions.describe()}, the reference teacher "
            f"{reference.conventions.describe()}: parity needs the same inputs"
        )
    if spec.input_shapes(1) != reference.input_shapes(1):
        raise SpecError(f"{what} takes {_shapes(spec)}, the reference teacher takes {_shapes(reference)}")


def _shapes(spec: GeneratorSpec) -> str:
    return ", ".join(f"{k} {list(v)}" for k, v in spec.input_shapes(1).items())
