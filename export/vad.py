"""The voice detector an export ships: silero-vad's model as `vad.onnx` / `vad.mnn`.

The wheel's ONNX file takes the sample rate as an input and has free batch and length
dimensions; the shipped file has the rate fixed at 16 kHz and static shapes ([1, 576] PCM,
[2, 1, 128] state), so dhm's engines (and the phone's MNN) run it as they run any model.
Each file is validated against the wheel's model on onnxruntime, its recurrent state carried
over a few seconds of the built-in voice with pauses: the probabilities agree to 1e-4 and the
speech decisions are the same hop for hop. The manifest's `vad` section holds the hop, the
context, the state and the decision settings, so a runtime needs no second copy of them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dhm.errors import SpecError

VAD_STEM = "vad"
PROB_TOLERANCE = 1e-4
CHECK_SECONDS = 6.0


def shipped_onnx(dst: Path) -> None:
    """The wheel's model with the sample rate a constant and every shape fixed."""
    import onnx
    from onnx import numpy_helper

    from dhm.runtime_py.vad import SAMPLE_RATE, SILERO_IO, silero_model_path

    model = onnx.load(str(silero_model_path()))
    graph = model.graph
    sr = next(i for i in graph.input if i.name == "sr")
    graph.input.remove(sr)
    graph.initializer.append(numpy_helper.from_array(np.array(SAMPLE_RATE, dtype=np.int64), "sr"))
    for i in graph.input:
        dims = i.type.tensor_type.shape.dim
        for d, v in zip(dims, SILERO_IO[i.name], strict=True):
            d.ClearField("dim_param")
            d.dim_value = v
    onnx.save(model, str(dst))


def check_pcm() -> np.ndarray:
    """Seconds of the built-in voice (syllables and pauses), seeded."""
    from dhm.data.synth import synth_speech

    return synth_speech(CHECK_SECONDS, np.random.default_rng(11)).samples


def vad_parity(runner: Callable[..., Any], pcm: np.ndarray) -> dict[str, Any]:
    """A shipped file against the wheel's model: probabilities and decisions over `pcm`."""
    from dhm.runtime_py.vad import HOP, SileroVad

    hops = np.pad(pcm, (0, (-pcm.size) % HOP)).reshape(-1, HOP)
    ref, got = SileroVad(), SileroVad(runner=runner, source="check")
    p_ref, p_got = ref.scores(hops), got.scores(hops)
    same = bool(np.array_equal(SileroVad().run(pcm), SileroVad(runner=runner).run(pcm)))
    worst = float(np.abs(p_ref - p_got).max())
    return {
        "hops": int(len(hops)),
        "max_abs_prob": worst,
        "same_decisions": same,
        "speech_share": float(np.mean(p_ref >= ref.gate.on)),
        "passed": worst <= PROB_TOLERANCE and same,
    }


def export_vad(tmp: Path, targets: tuple[str, ...], log: Callable[[str], None]) -> dict[str, Any]:
    """Write vad.onnx (and vad.mnn with an MNN target) into `tmp`, validated; the manifest section."""
    from importlib.metadata import version

    from dhm.models.checkpoint import file_sha256
    from dhm.runtime_py.engines.registry import TARGETS, get
    from dhm.runtime_py.vad import engine_runner

    from dhm.runtime_py.engines.configs import Fp32

    source = tmp / f".{VAD_STEM}.source.onnx"
    shipped_onnx(source)
    files = []
    for backend in (get(TARGETS[t]) for t in targets):  # each target engine's file, built from the one ONNX
        dst = tmp / f"{VAD_STEM}.{backend.format}"
        backend.build(Fp32(), source, dst, header={"biz_code": "silero-vad", "outputs": ["output", "stateN"]})
        files.append((backend.name, dst))
    source.unlink()
    pcm = check_pcm()
    artifacts = []
    for engine_name, path in files:
        backend = get(engine_name)
        parity = vad_parity(engine_runner(backend.load(path, threads=1)), pcm)
        if not parity["passed"]:
            raise SpecError(
                f"{path.name}: the voice detector disagrees with silero-vad's own model (max abs "
                f"{parity['max_abs_prob']:.2e}, same decisions: {parity['same_decisions']}); nothing was written"
            )
        size = path.stat().st_size
        record = {"file": path.name, "format": backend.format, "engine": engine_name, "size_bytes": size}
        artifacts.append({**record, "sha256": file_sha256(path), "parity": parity})
        log(f"{path.name}: silero-vad, probabilities max abs {parity['max_abs_prob']:.1e} over {parity['hops']} hops")
    return vad_section(artifacts, version("silero-vad"))


def vad_section(artifacts: list[dict[str, Any]], version: str | None) -> dict[str, Any]:
    from dhm.runtime_py.idle import IdleSettings
    from dhm.runtime_py.vad import HOP, SAMPLE_RATE, SILERO_CONTEXT, SILERO_DECISION, SILERO_IO, SILERO_OUTPUTS

    return {
        "model": "silero-vad",
        "version": version,
        "sample_rate": SAMPLE_RATE,
        "hop": HOP,
        "context": SILERO_CONTEXT,
        "inputs": {k: list(v) for k, v in SILERO_IO.items()},
        "outputs": list(SILERO_OUTPUTS),
        "decision": dict(SILERO_DECISION),
        "ramp_frames": IdleSettings().ramp,
        "artifacts": artifacts,
    }
