"""The export manifest: the one contract every runtime reads.

`manifest.schema.json` (beside this file, shipped in the package) is the schema; this
module builds manifests from the generator spec and preprocessing constants in
`dhm.spec`, validates them against the schema, and checks a loaded model against the
manifest beside it. The same header travels inside each MNN file as its bizCode, so an
app holding only the `.mnn` can check what it was given.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from dhm.errors import SpecError
from dhm.io import plain_file_name, read_json
from dhm.spec import (
    PREPROCESS,
    Conventions,
    GeneratorSpec,
    audio_mode,
    window_bounds,
)

SCHEMA_ID = "dhm.manifest/1"
MANIFEST_FILE = "manifest.json"


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    text = resources.files("dhm").joinpath("manifest.schema.json").read_text()
    loaded = json.loads(text)
    unknown = unsupported_keywords(loaded)
    if unknown:  # a schema edit this validator would silently ignore
        raise RuntimeError(f"manifest.schema.json uses keywords dhm's validator does not implement: {sorted(unknown)}")
    return loaded


# The JSON-Schema keywords `_validate` implements, and the annotations it may skip. The
# schema is checked against this list when loaded, so a keyword added to the schema without
# code behind it stops every command instead of being ignored. (jsonschema 4.26 was
# measured against this validator on 1887 mutated manifests: the same verdict on all of
# them, at 4x the time per manifest and 170 ms of import, with four more packages; not kept.)
VALIDATED_KEYWORDS = frozenset(
    {"$ref", "const", "enum", "type", "minimum", "pattern", "required", "properties", "minItems", "maxItems", "items"}
)
ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "title", "description"})


def unsupported_keywords(node: Any) -> set[str]:
    """Keywords anywhere in the schema `node` that `_validate` would ignore."""
    if not isinstance(node, dict):
        return set()
    found = set(node) - VALIDATED_KEYWORDS - ANNOTATIONS
    for key in ("properties", "$defs"):
        for sub in node.get(key, {}).values():
            found |= unsupported_keywords(sub)
    if "items" in node:
        found |= unsupported_keywords(node["items"])
    return found


# ----------------------------------------------------------------- validation

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def _is_type(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[name])


def _validate(value: Any, node: dict[str, Any], where: str, root: dict[str, Any], errors: list[str]) -> None:
    """A validator for the JSON-Schema subset the manifest schema uses."""
    if "$ref" in node:
        target: Any = root
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    if "const" in node and value != node["const"]:
        errors.append(f"{where}: must be {node['const']!r}, got {value!r}")
        return
    if "enum" in node and value not in node["enum"]:
        errors.append(f"{where}: must be one of {node['enum']}, got {value!r}")
        return
    if "type" in node:
        names = node["type"] if isinstance(node["type"], list) else [node["type"]]
        if not any(_is_type(value, n) for n in names):
            errors.append(f"{where}: must be {' or '.join(names)}, got {type(value).__name__}")
            return
    if (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and "minimum" in node
        and value < node["minimum"]
    ):
        errors.append(f"{where}: must be >= {node['minimum']}, got {value}")
    if isinstance(value, str) and "pattern" in node and not re.search(node["pattern"], value):
        errors.append(f"{where}: {value!r} does not match {node['pattern']}")
    if isinstance(value, dict):
        for key in node.get("required", []):
            if key not in value:
                errors.append(f"{where}: missing {key!r}")
        for key, sub in node.get("properties", {}).items():
            if key in value:
                _validate(value[key], sub, f"{where}.{key}", root, errors)
    if isinstance(value, list):
        if "minItems" in node and len(value) < node["minItems"]:
            errors.append(f"{where}: needs at least {node['minItems']} items, has {len(value)}")
        if "maxItems" in node and len(value) > node["maxItems"]:
            errors.append(f"{where}: takes at most {node['maxItems']} items, has {len(value)}")
        if "items" in node:
            for i, item in enumerate(value):
                _validate(item, node["items"], f"{where}[{i}]", root, errors)


def validation_errors(manifest: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    root = schema()
    _validate(manifest, root, "manifest", root, errors)
    if not errors:
        errors += bounds_errors(manifest)
    if not errors:
        errors += consistency_errors(manifest)
    return errors


# The bounds every runtime enforces, the C++ core (avatar_core/src/manifest.cpp) exactly as
# here: a manifest one side accepts the other accepts (tests/test_native.py runs both on
# the same mutated manifests). They keep indices inside arrays and sizes inside
# memory; they are not model constants (those come from the manifest itself).
BOUNDS = {
    "landmark_index": (0, 1023),
    "inner_size": (16, 1024),
    "border": (0, 64),
    "fps": (1, 240),
    "window_before": (0, 32),
    "window_after": (1, 32),
    "dim": (1, 65536),
    "per_frame_values": 1 << 20,
    "tensor_values": 1 << 26,
    "frame_rows": (1, 1024),
    "frame_offset": (-1024, 1024),
    "pad_left": (0, 65536),
}


def _count(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def bounds_errors(manifest: dict[str, Any]) -> list[str]:
    """Sizes, indices and windows inside the limits every runtime enforces (BOUNDS)."""
    errors: list[str] = []

    def within(value: Any, key: str, where: str) -> bool:
        lo, hi = BOUNDS[key]
        if not (isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi):
            errors.append(f"{where}: {value!r} is outside {lo} … {hi}")
            return False
        return True

    pre, audio = manifest["preprocess"], manifest["audio"]
    for key in ("left", "right", "top"):
        within(pre["landmarks"][key], "landmark_index", f"manifest.preprocess.landmarks.{key}")
    inner_ok = within(pre["inner_size"], "inner_size", "manifest.preprocess.inner_size")
    border_ok = within(pre["border"], "border", "manifest.preprocess.border")
    if inner_ok and border_ok and pre["crop_size"] != pre["inner_size"] + 2 * pre["border"]:
        errors.append("manifest.preprocess.crop_size: must equal inner_size + 2*border")
    x, y, w, h = pre["mask_rect"]
    if inner_ok and not (
        x >= 0 and y >= 0 and w >= 1 and h >= 1 and x + w <= pre["inner_size"] and y + h <= pre["inner_size"]
    ):
        errors.append(
            f"manifest.preprocess.mask_rect: {pre['mask_rect']} lies outside the {pre['inner_size']}-pixel inner crop"
        )
    scale = pre["scale"]
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and 0 < scale <= 1):
        errors.append(f"manifest.preprocess.scale: {scale!r} must be a finite number in (0, 1]")
    within(audio["fps"], "fps", "manifest.audio.fps")
    before_ok = within(audio["window_before"], "window_before", "manifest.audio.window_before")
    after_ok = within(audio["window_after"], "window_after", "manifest.audio.window_after")
    per_frame, input_shape = audio["per_frame_shape"], audio["input_shape"]
    dims_ok = 1 <= len(per_frame) <= 4 and all(within(d, "dim", "manifest.audio.per_frame_shape") for d in per_frame)
    dims_ok &= all(within(d, "dim", "manifest.audio.input_shape") for d in input_shape)
    if dims_ok and _count(per_frame) > BOUNDS["per_frame_values"]:
        errors.append(f"manifest.audio.per_frame_shape: more than {BOUNDS['per_frame_values']} values per frame")
    if (
        dims_ok
        and before_ok
        and after_ok
        and _count(input_shape) != _count(per_frame) * (audio["window_before"] + audio["window_after"])
    ):
        errors.append("manifest.audio.input_shape: does not hold the window of per-frame features")
    for section in ("inputs", "outputs"):
        for t in manifest["io"][section]:
            if (
                all(within(d, "dim", f"manifest.io.{section}") for d in t["shape"])
                and _count(t["shape"]) > BOUNDS["tensor_values"]
            ):
                errors.append(f"manifest.io.{section}: {t['name']!r} holds more than {BOUNDS['tensor_values']} values")
    for a in manifest["artifacts"]:
        if not plain_file_name(a["file"]):
            errors.append(f"manifest.artifacts: {a['file']!r} is not a plain file name in the export folder")
    if "audio_model" in manifest:
        errors += _audio_model_bounds(manifest["audio_model"], within)
    return errors


def _audio_model_bounds(am: dict[str, Any], within) -> list[str]:
    errors: list[str] = []
    where = "manifest.audio_model"
    for key in ("input", "output"):
        for d in am[key]["shape"]:
            within(d, "dim", f"{where}.{key}.shape")
    within(am["row_hop"], "dim", f"{where}.row_hop")
    within(am["pad_left"], "pad_left", f"{where}.pad_left")
    within(am["frame_rows"]["count"], "frame_rows", f"{where}.frame_rows.count")
    within(am["frame_rows"]["stride"], "frame_rows", f"{where}.frame_rows.stride")
    within(am["frame_rows"]["offset"], "frame_offset", f"{where}.frame_rows.offset")
    within(am["tail"]["hop"], "dim", f"{where}.tail.hop")
    within(am["tail"]["hops_per_row"], "frame_rows", f"{where}.tail.hops_per_row")
    for a in am["artifacts"]:
        if not plain_file_name(a["file"]):
            errors.append(f"{where}.artifacts: {a['file']!r} is not a plain file name in the export folder")
    return errors


def generator_spec(manifest: dict[str, Any]) -> GeneratorSpec:
    """The generator a (schema-valid) manifest describes; the crop filter is the
    preprocess section's (older manifests record it only there)."""
    gen = dict(manifest["generator"])
    gen.setdefault("crop_interpolation", manifest["preprocess"]["crop_interpolation"])
    return GeneratorSpec.from_dict(gen)


def conventions(manifest: dict[str, Any]) -> Conventions:
    """What the manifest's model expects of its inputs, read from its preprocess and audio
    sections (which `consistency_errors` has checked against the generator). An MNN
    file's bizCode carries the same two sections."""
    pre = manifest["preprocess"]
    lm = pre["landmarks"]
    preprocess = replace(
        PREPROCESS,
        lm_left=lm["left"],
        lm_right=lm["right"],
        lm_top=lm["top"],
        crop_size=pre["crop_size"],
        inner_size=pre["inner_size"],
        border=pre["border"],
        mask_rect=tuple(pre["mask_rect"]),
        crop_interpolation=pre["crop_interpolation"],
        paste_interpolation=pre["paste_interpolation"],
        color_order=pre["color_order"],
        layout=pre["layout"],
        scale=pre["scale"],
    )
    audio = manifest["audio"]
    return Conventions(preprocess, audio_mode(audio["mode"]), audio["window_before"] + audio["window_after"])


def consistency_errors(manifest: dict[str, Any]) -> list[str]:
    """What the schema cannot say: the sections must describe one model."""
    try:
        spec = generator_spec(manifest)
    except SpecError as exc:
        return [f"manifest.generator: {exc}"]
    errors = []
    pre, audio = manifest["preprocess"], manifest["audio"]
    if (
        "crop_interpolation" in manifest["generator"]
        and manifest["generator"]["crop_interpolation"] != pre["crop_interpolation"]
    ):
        errors.append("manifest.preprocess.crop_interpolation: contradicts generator.crop_interpolation")
    before, after = window_bounds(spec.window)
    expected_audio = {
        "mode": spec.mode,
        "per_frame_shape": list(spec.audio.per_frame_shape),
        "fps": spec.audio.fps,
        "window_before": before,
        "window_after": after,
        "input_shape": list(spec.audio.input_shape(spec.window)),
    }
    for key, want in expected_audio.items():
        if audio.get(key) != want:
            errors.append(
                f"manifest.audio.{key}: {audio.get(key)!r} contradicts the generator ({want!r} for "
                f"{spec.describe_conventions()})"
            )
    shapes = {name: list(shape) for name, shape in spec.input_shapes(1).items()}
    inputs = manifest["io"]["inputs"]
    if [t["name"] for t in inputs] != list(shapes):
        errors.append(f"manifest.io.inputs: named {[t['name'] for t in inputs]}, the generator takes {list(shapes)}")
    for got, shape in zip(inputs, shapes.values(), strict=False):
        if got["shape"] != shape:
            errors.append(f"manifest.io.inputs: {got['name']!r} is {got['shape']}, the generator takes {shape}")
    ((out_name, out_shape),) = spec.output_shapes(1).items()
    if manifest["io"]["outputs"][0]["shape"] != list(out_shape):
        errors.append(
            f"manifest.io.outputs: {manifest['io']['outputs'][0]['shape']}, the generator gives {list(out_shape)}"
        )
    if "audio_model" in manifest:
        from dhm.audio.geometry import AudioModelSpec

        audio_model = AudioModelSpec.from_dict(manifest["audio_model"])
        errors += [f"manifest.{e}" for e in audio_model.consistency_errors(spec.mode)]
    return errors


def validate(manifest: dict[str, Any], source: str = "manifest") -> None:
    errors = validation_errors(manifest)
    if errors:
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SpecError(f"{source}: invalid manifest: {errors[0]}{more}")


# ----------------------------------------------------------------- building


def io_section(spec: GeneratorSpec) -> dict[str, Any]:
    shapes = spec.input_shapes(1)
    face_name, audio_name = list(shapes)
    ((out_name, out_shape),) = spec.output_shapes(1).items()
    pre = spec.preprocess
    before, after = window_bounds(spec.window)
    return {
        "inputs": [
            {
                "name": face_name,
                "shape": list(shapes[face_name]),
                "dtype": "float32",
                "layout": pre.layout,
                "color_order": pre.color_order,
                "range": [0.0, 1.0],
                "description": "channels 0-2: reference face, 3-5: mouth-masked face; uint8 / 255",
            },
            {
                "name": audio_name,
                "shape": list(shapes[audio_name]),
                "dtype": "float32",
                "description": f"{spec.mode} features of frames i-{before}..i+{after - 1}, zero-padded, reshaped",
            },
        ],
        "outputs": [
            {
                "name": out_name,
                "shape": list(out_shape),
                "dtype": "float32",
                "layout": pre.layout,
                "color_order": pre.color_order,
                "range": [0.0, 1.0],
                "description": "the inner 160x160 face; x*255 truncated to uint8 goes into crop[4:164,4:164]",
            }
        ],
    }


def preprocess_section(spec: GeneratorSpec) -> dict[str, Any]:
    p = spec.preprocess
    return {
        "landmarks": {"left": p.lm_left, "right": p.lm_right, "top": p.lm_top},
        "crop_size": p.crop_size,
        "inner_size": p.inner_size,
        "border": p.border,
        "mask_rect": list(p.mask_rect),
        "crop_interpolation": p.crop_interpolation,
        "paste_interpolation": p.paste_interpolation,
        "color_order": p.color_order,
        "layout": p.layout,
        "scale": p.scale,
    }


def audio_section(spec: GeneratorSpec, frontend: str | None = None) -> dict[str, Any]:
    mode = spec.audio
    before, after = window_bounds(spec.window)
    section = {
        "mode": mode.name,
        "feature_file": mode.feature_file,
        "per_frame_shape": list(mode.per_frame_shape),
        "fps": mode.fps,
        "window_before": before,
        "window_after": after,
        "input_shape": list(mode.input_shape(spec.window)),
    }
    if frontend:
        section["frontend"] = frontend
    return section


def build_header(
    spec: GeneratorSpec,
    macs: int,
    params: int,
    source: dict[str, Any] | None,
    versions: dict[str, str],
    frontend: str | None = None,
    created: str | None = None,
) -> dict[str, Any]:
    """Everything but the artefact list."""
    header: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "dhm_version": versions["dhm"],
        "generator": {**spec.to_dict(), "macs": int(macs), "params": int(params)},
        "io": io_section(spec),
        "preprocess": preprocess_section(spec),
        "audio": audio_section(spec, frontend),
        "versions": versions,
    }
    if created:
        header["created"] = created
    if source:
        header["source"] = source
    return header


def biz_code(header: dict[str, Any], variant: str) -> str:
    """Compact metadata for the MNN file's bizCode: enough for an app to check the model."""
    compact = {
        "schema": header["schema"],
        "variant": variant,
        "generator": {
            k: header["generator"][k] for k in ("arch", "mode", "widths", "revision", "window", "crop_interpolation")
        },
        "inputs": [{"name": t["name"], "shape": t["shape"]} for t in header["io"]["inputs"]],
        "outputs": [{"name": t["name"], "shape": t["shape"]} for t in header["io"]["outputs"]],
        "preprocess": header["preprocess"],
        "audio": {k: header["audio"][k] for k in ("mode", "fps", "window_before", "window_after", "input_shape")},
        "dhm_version": header["dhm_version"],
    }
    return json.dumps(compact, separators=(",", ":"), sort_keys=True)


def json_number(value: float) -> float | str:
    """JSON has no infinity: identical outputs give PSNR "inf"."""
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def from_json_number(value: float | str) -> float:
    """The inverse of json_number."""
    return float(value)  # float() reads "inf" and "-inf"


def format_figure(value: float | str | None, fmt: str = ".2f", unit: str = "") -> str:
    """A figure for a report: "–" when absent, ∞ for identical outputs' PSNR (a float or
    json_number's "inf"), else `value` in `fmt` with `unit`."""
    if value is None:
        return "–"
    x = from_json_number(value)
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return f"{x:{fmt}}{unit}"


# ----------------------------------------------------------------- reading


def read_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_FILE
    if not path.is_file():
        raise SpecError(f"{path}: no manifest")
    data = read_json(path, "manifest")
    if not isinstance(data, dict):
        raise SpecError(f"{path}: manifest must be a JSON object")
    validate(data, str(path))
    return data


def listed_file(folder: Path, entry: dict[str, Any], manifest_path: Path) -> Path:
    """The file a manifest entry lists in `folder`, checked: present, not a link, and its sha256
    the manifest's (a changed or replaced model never runs, nor ships in an app)."""
    from dhm.models.checkpoint import file_sha256

    path = Path(folder) / entry["file"]
    if not path.is_file() or path.is_symlink():
        raise SpecError(f"{path}: listed in {manifest_path} but missing (or a link)")
    if file_sha256(path) != entry["sha256"]:
        raise SpecError(f"{path}: sha256 differs from {manifest_path}: the file was changed or replaced")
    return path
