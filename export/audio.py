"""The audio front end as a model: `audio_fp32.onnx` / `audio_fp32.mnn` beside the generator.

A model trained on dhm's own features (`dhm-logmel-v1`) is exported with its front end
(`dhm.audio_model.logmel_module`), so a phone turns PCM into features with the same engine
that runs the generator. Each file is run by its own engine on PCM windows and compared
with the numpy front end the training features came from; a miss fails the export.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dhm.audio_model import PCM_INPUT, ROWS_OUTPUT, AudioModelSpec, logmel_module, logmel_rows_numpy, logmel_spec
from dhm.data.audio import FRONTEND_ID, SAMPLE_RATE
from dhm.errors import ParityError

# Features are O(1)-O(10) (normalised log-mel through a unit-variance projection); float32
# STFT-as-convolution against numpy's float64 FFT measured ~1e-5 on speech and silence.
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


def export_audio_model(
    mode: str,
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

    spec = logmel_spec(mode)
    module = logmel_module(spec)
    windows, source = check_windows(spec, wav)
    reference = [logmel_rows_numpy(spec, w)[None] for w in windows]
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
    biz = json.dumps({"audio_model": spec.to_dict()}, separators=(",", ":"))
    for fmt in formats:
        dst = tmp / f"audio_fp32.{fmt}"
        if fmt == "mnn":
            convert_onnx(onnx_path, dst, biz_code=biz)
        backend = get("onnxruntime" if fmt == "onnx" else "mnn")
        engine = backend.load(dst, threads=1, precision=AUDIO_PRECISION)
        got = [engine.run(x)[ROWS_OUTPUT] for x in inputs]
        max_abs = max(float(np.abs(g - r).max()) for g, r in zip(got, reference, strict=True))
        if not np.isfinite(max_abs) or max_abs > AUDIO_MAX_ABS:
            raise ParityError(
                f"{dst.name} ({backend.name}): its features differ from the numpy front end by {max_abs:.2e} "
                f"(needs max abs <= {AUDIO_MAX_ABS:g})"
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
                    "reference": f"numpy {FRONTEND_ID}",
                    "inputs": source,
                    "windows": len(windows),
                    "max_abs": max_abs,
                    "tolerance": {"max_abs": AUDIO_MAX_ABS},
                    "passed": True,
                },
            }
        )
        log(f"{dst.name}: features max abs {max_abs:.1e} vs the numpy front end ({len(windows)} windows)")
    if onnx_path.name.startswith("."):
        onnx_path.unlink()
    return section
