"""Voice activity (dhm.runtime_py.vad) on real speech: espeak-ng sentences with pauses, three
voices, white noise mixed in. A detector that always says "speech" scores the speech share
(~0.61) as precision; one that never does scores recall 0."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import espeak_pcm, with_noise

from dhm.runtime_py.vad import HOP, EnergyGate, SileroVad, score_frames, speech_mask

pytestmark = pytest.mark.slow  # espeak-ng comes with `make native-deps`

VOICES = ("en", "en-us+f3", "en+m7")


@pytest.fixture(scope="module")
def speech() -> dict[str, np.ndarray]:
    return {v: espeak_pcm(v) for v in VOICES}


def _mean(detector_type, speech, snr_db) -> dict[str, float]:
    scores = []
    for clean in speech.values():
        pcm = clean if snr_db is None else with_noise(clean, snr_db)
        scores.append(score_frames(detector_type().run(pcm), speech_mask(clean)))
    return {k: float(np.mean([s[k] for s in scores])) for k in ("precision", "recall", "speech_share")}


def test_silero_finds_speech_and_its_pauses_at_10_db_snr(speech):
    r = _mean(SileroVad, speech, 10)
    assert 0.5 < r["speech_share"] < 0.75  # the clips really have pauses
    assert r["recall"] >= 0.98 and r["precision"] >= 0.95, r  # the targets
    causal = _mean(lambda: SileroVad(lookahead=0), speech, 10)  # one hop of lookahead buys the onsets
    assert causal["recall"] < r["recall"], (causal, r)


def test_the_energy_gate_holds_at_10_db_and_loses_speech_at_0_db_where_silero_does_not(speech):
    gate10 = _mean(EnergyGate, speech, 10)
    assert gate10["recall"] >= 0.95 and gate10["precision"] >= 0.9, gate10
    gate0, silero0 = _mean(EnergyGate, speech, 0), _mean(SileroVad, speech, 0)
    assert gate0["recall"] < 0.5 and silero0["recall"] >= 0.95, (gate0, silero0)


@pytest.mark.parametrize("detector_type", [SileroVad, EnergyGate])
def test_any_chunking_gives_the_same_decisions(speech, detector_type):
    pcm = with_noise(speech["en"], 10)[: 60 * HOP]
    whole = detector_type().run(pcm)
    streamed, rng, det, at = [], np.random.default_rng(1), detector_type(), 0
    while at < pcm.size:
        n = int(rng.integers(1, 3 * HOP))
        streamed.append(det.push(pcm[at : at + n]))
        at += n
    streamed.append(det.flush())
    assert np.array_equal(np.concatenate(streamed), whole)


def test_pure_noise_is_no_speech():
    """A stream of white noise at any level (quiet room to loud hiss) never opens the mouth."""
    rng = np.random.default_rng(0)
    for level in (0.01, 0.1, 0.3):
        noise = (level * rng.standard_normal(16000 * 10)).astype(np.float32)
        assert not SileroVad().run(noise).any() and not EnergyGate().run(noise).any(), level
