"""Shared helpers for dhm's tests (importable because conftest puts tests/ on sys.path)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

GOLDEN_SEED = 20261121


def seeded_state_dict(
    layout: Sequence[tuple[str, Sequence[int], str]], seed: int = GOLDEN_SEED, gain: float = 1.0
) -> dict:
    """A deterministic state_dict for a (key, shape, dtype) layout.

    The same function produced the weights the upstream golden outputs were computed
    with, so any implementation with that layout must reproduce those outputs.
    BatchNorm statistics are non-trivial so eval-mode normalisation is exercised.
    `gain` scales the conv weights (FeatherTalk's multi-branch blocks sum four branches,
    so at gain 1 its activations grow until the sigmoid saturates everywhere).
    """
    import torch

    state = {}
    for key, shape, dtype in layout:
        rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
        shape = tuple(shape)
        if dtype == "int64":
            state[key] = torch.tensor(int(rng.integers(1, 1000)), dtype=torch.int64).reshape(shape)
            continue
        if key.endswith("running_var"):
            values = rng.uniform(0.5, 1.5, shape)
        elif key.endswith("running_mean"):
            values = rng.normal(0.0, 0.1, shape)
        elif len(shape) == 1 and key.endswith("weight"):
            values = 1.0 + 0.1 * rng.normal(size=shape)
        elif len(shape) == 1:
            values = 0.05 * rng.normal(size=shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            values = rng.normal(0.0, gain / np.sqrt(fan_in), shape)
        state[key] = torch.from_numpy(values.astype(np.float32))
    return state


def golden_inputs(face_shape: Sequence[int], audio_shape: Sequence[int], seed: int = GOLDEN_SEED):
    rng = np.random.default_rng(seed)
    face = rng.uniform(0.0, 1.0, tuple(face_shape)).astype(np.float32)
    audio = rng.normal(0.0, 1.0, tuple(audio_shape)).astype(np.float32)
    return face, audio


def one_error_line(result, needle: str) -> None:
    """A CLI run that failed with exactly one `dhm: error:` line, which names `needle`."""
    assert result.exit_code != 0
    lines = [ln for ln in result.output.splitlines() if ln.startswith("dhm: error:")]
    assert len(lines) == 1 and needle in lines[0], result.output


# Real speech for the audio tests: espeak-ng (Debian), sentences with pauses of 0.6-1.2 s,
# a second of silence before and after, resampled to 16 kHz.
SPEECH_SSML = (
    '<speak>The weather today is calm and bright. <break time="900ms"/> '
    'We will walk along the river, <break time="600ms"/> and then have lunch in the old town. '
    '<break time="1200ms"/> Nobody expected the rain to come so soon.</speak>'
)


def espeak_pcm(voice: str, ssml: str = SPEECH_SSML) -> np.ndarray:
    import subprocess
    import tempfile
    from pathlib import Path

    from dhm.audio.frontend import SAMPLE_RATE, read_wav, resample

    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "speech.wav"
        subprocess.run(["espeak-ng", "-m", "-v", voice, "-w", str(out), ssml], check=True, capture_output=True)
        pcm, rate = read_wav(out)
    silence = np.zeros(SAMPLE_RATE, np.float32)
    return np.concatenate([silence, resample(pcm, rate), silence]).astype(np.float32)


def with_noise(clean: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """White noise at `snr_db` below the speech hops' power."""
    from dhm.runtime_py.vad import HOP, speech_mask

    hops = np.pad(clean, (0, (-len(clean)) % HOP)).reshape(-1, HOP)
    power = float(np.mean(hops[speech_mask(clean)] ** 2))
    noise = np.random.default_rng(seed).standard_normal(len(clean)) * np.sqrt(power / 10 ** (snr_db / 10))
    return (clean + noise).astype(np.float32)
