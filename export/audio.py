"""The audio model: `audio_fp32.onnx` / `audio_fp32.mnn` beside the generator.

A model trained on dhm's own features (`dhm-logmel-v1`) is exported with its front end
(`dhm.audio_model.logmel_module`), judged against the numpy front end the training
features came from. Any generator can instead take an audio student from
`dhm distill-audio` (`--audio-model`), judged against its torch FP32 self. Either way a
phone turns PCM into features with the same engine that runs the generator; each file is
run by its own engine on PCM windows, and a miss fails the export.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dhm.audio_model import PCM_INPUT, ROWS_OUTPUT, AudioModelSpec, logmel_module, logmel_rows_numpy, logmel_spec
from dhm.data.audio import FRONTEND_ID, SAMPLE_RATE
from dhm.errors import ParityError, SpecError

# Features are O(1)-O(10) (normalised log-mel through a unit-variance projection, or a
# teacher's hidden states); float32 STFT-as-convolution against numpy's float64 FFT measured
# ~1e-5 on speech and silence. The bound scales with the reference's largest value above 1.
AUDIO_MAX_ABS = 1e-3
# The front end's log is evaluated in float32 on every engine: fp16 arithmetic (MNN
# "low" precision on ARM) would round the power spectrum, so the audio model runs at fp32.
AUDIO_PRECISION = "fp32"


def check_windows(spec: AudioModelSpec, wav: Path | None, n: int = 12) -> tuple[list[np.ndarray], str]:
    """PCM windows to validate on: from the dataset's audio when there is one, plus
    silence, a quiet tone and clipped noise (the log's floor and the top of the range)."""
    rng = np.random.default_rng(7)
    L = spec.window_samples
    t = np.arange(L) / SAMPLE_RATE
    windows = [
        np.zeros(L, np.float32),
        (1e-3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
        np.clip(rng.normal(0, 0.8, L), -1, 1).astype(np.float32),
    ]
    source = "synthetic (silence, quiet tone, loud noise)"
    if wav is not None and wav.is_file():
        from dhm.data.audio import read_pcm

        samples = read_pcm(wav)[0]
        if samples.size >= L:
            starts = np.linspace(0, samples.size - L, n - len(windows)).astype(int)
            windows += [samples[s : s + L].astype(np.float32) for s in starts]
            source = f"{wav.name} ({len(starts)} windows) + {source}"
    while len(windows) < n:
        windows.append((rng.normal(0, 0.2, L) * np.sin(2 * np.pi * rng.uniform(1, 8) * t)).astype(np.float32))
    return windows, source


@dataclass
class AudioSource:
    """What becomes the audio model, and what its exported files are judged against."""

    spec: AudioModelSpec
    module: Any  # torch [1,1,window] -> [1,rows,row_size]
    reference: Callable[[np.ndarray], np.ndarray]  # a window -> [1,rows,row_size]
    reference_label: str
    student: dict[str, Any] | None = None  # the distill-audio record, for a student


def logmel_source(mode: str) -> AudioSource:
    spec = logmel_spec(mode)
    return AudioSource(spec, logmel_module(spec), lambda w: logmel_rows_numpy(spec, w)[None], f"numpy {FRONTEND_ID}")


def student_source(path: Path, mode: str) -> AudioSource:
    """An audio student from `dhm distill-audio`, for a `mode` generator."""
    import torch

    from dhm.models.audio_student import load_student

    loaded = load_student(path)
    errors = loaded.audio_spec.consistency_errors(mode)
    if errors:
        raise SpecError(f"{path}: does not fit this generator: {errors[0]}")
    module = loaded.model

    def reference(window: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(window.reshape(1, 1, -1).astype(np.float32))).numpy()

    report = loaded.record.get("report") or {}
    student = {
        "file": Path(path).name,
        "family": loaded.config.family,
        "config": loaded.config.to_dict(),
        "heldout": report.get("heldout"),
        "generator": {k: report["generator"][k] for k in ("student", "mean_feature")}
        if report.get("generator")
        else None,
    }
    return AudioSource(loaded.audio_spec, module, reference, "the torch FP32 audio student", student)


def export_audio_model(
    source: AudioSource,
    tmp: Path,
    formats: list[str],
    wav: Path | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Write audio_fp32.<fmt> for every format into `tmp`; returns the manifest section."""
    import torch

    from dhm.engines import get
    from dhm.engines.mnn_tools import convert_onnx
    from dhm.engines.torch_onnx import ModelIO, export_onnx
    from dhm.metrics import count_macs, count_params
    from dhm.models.checkpoint import file_sha256

    spec, module = source.spec, source.module
    windows, source_label = check_windows(spec, wav)
    reference = [source.reference(w) for w in windows]
    scale = max(1.0, max(float(np.abs(r).max()) for r in reference))
    tolerance = AUDIO_MAX_ABS * scale
    inputs = [{PCM_INPUT: w.reshape(1, 1, -1)} for w in windows]
    io = ModelIO(inputs={PCM_INPUT: (1, 1, spec.window_samples)}, outputs=[ROWS_OUTPUT])
    onnx_path = tmp / ("audio_fp32.onnx" if "onnx" in formats else ".audio_fp32.onnx")
    export_onnx(module, io, onnx_path, inputs)
    section: dict[str, Any] = {
        **spec.to_dict(),
        "precision": AUDIO_PRECISION,
        "macs_per_call": count_macs(module, torch.zeros(1, 1, spec.window_samples)),
        "calls_per_second": SAMPLE_RATE / (spec.rows_per_call * spec.row_hop),
        "params": count_params(module),
        "artifacts": [],
    }
    if source.student is not None:
        section["student"] = source.student
    biz = json.dumps({"audio_model": spec.to_dict()}, separators=(",", ":"))
    for fmt in formats:
        dst = tmp / f"audio_fp32.{fmt}"
        if fmt == "mnn":
            convert_onnx(onnx_path, dst, biz_code=biz)
        backend = get("onnxruntime" if fmt == "onnx" else "mnn")
        engine = backend.load(dst, threads=1, precision=AUDIO_PRECISION)
        got = [engine.run(x)[ROWS_OUTPUT] for x in inputs]
        max_abs = max(float(np.abs(g - r).max()) for g, r in zip(got, reference, strict=True))
        if not np.isfinite(max_abs) or max_abs > tolerance:
            raise ParityError(
                f"{dst.name} ({backend.name}): its features differ from {source.reference_label} by {max_abs:.2e} "
                f"(needs max abs <= {tolerance:.2g})"
            )
        section["artifacts"].append(
            {
                "file": dst.name,
                "format": fmt,
                "engine": backend.name,
                "variant": "fp32",
                "size_bytes": dst.stat().st_size,
                "sha256": file_sha256(dst),
                "parity": {
                    "reference": source.reference_label,
                    "inputs": source_label,
                    "windows": len(windows),
                    "max_abs": max_abs,
                    "tolerance": {"max_abs": tolerance},
                    "passed": True,
                },
            }
        )
        log(f"{dst.name}: features max abs {max_abs:.1e} vs {source.reference_label} ({len(windows)} windows)")
    if onnx_path.name.startswith("."):
        onnx_path.unlink()
    return section
