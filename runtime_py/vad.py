"""Voice activity in the streaming path: which 32 ms hops of 16 kHz PCM hold speech.

Two detectors behind one interface, fed PCM in chunks of any size:

* `SileroVad`: silero-vad's trained model (its ONNX file, shipped in the `silero-vad` wheel),
  run by onnxruntime on 512-sample hops with its recurrent state, as its own wrapper runs it;
* `EnergyGate`: the hop's level against a tracked noise floor (the simple baseline).

Each turns per-hop scores into decisions with hysteresis: speech starts when a score reaches
`on`, and ends only after `hangover` hops in a row below `off`. With `lookahead` hops a hop's
score is the largest of its own and the next ones': speech is caught a hop before its first
loud hop, at the cost of deciding a hop later (inside the generator's own lookahead, see
`FrameVoice.lookahead_samples`). `score_frames` measures a detector against a known mask.

Measured (`python tests/tools/measure_vad.py`: espeak-ng, three voices, sentences with 0.6-1.2 s
pauses, white noise): at 10 dB SNR silero (lookahead 1, hangover 0) keeps precision 0.95 and
recall 0.99 of speech hops, the energy gate (hangover 6) 0.95 and 0.97; at 0 dB the gate stops
hearing speech (recall 0.04 or 0) while silero keeps 0.93 and 0.98. The settings were chosen
on those clips; three other voices and other noise give 0.95/0.99 (10 dB) and 0.94/0.99 (0 dB).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np

SAMPLE_RATE = 16000
HOP = 512  # 32 ms: silero-vad's chunk at 16 kHz
SILERO_CONTEXT = 64  # samples of the previous hop silero reads before each chunk
SILERO_STATE = (2, 1, 128)
SILERO_IO = {"input": (1, SILERO_CONTEXT + HOP), "state": SILERO_STATE}  # the shipped file's inputs
SILERO_OUTPUTS = ("output", "stateN")  # speech probability [1, 1], next state
SILERO_DECISION = {"on": 0.5, "off": 0.5, "hangover": 0, "lookahead": 1}  # the runtime's defaults (measured below)


@dataclass(frozen=True)
class Hysteresis:
    """Per-hop scores -> speech decisions: on at `on`, off after `hangover` hops below `off`."""

    on: float
    off: float
    hangover: int  # hops (32 ms each) a pause must last before speech ends

    def decide(self, scores: np.ndarray, speaking: bool = False, quiet: int = 0) -> tuple[np.ndarray, bool, int]:
        out = np.zeros(len(scores), dtype=bool)
        for i, s in enumerate(scores):
            if s >= self.on:
                speaking, quiet = True, 0
            elif speaking and s < self.off:
                quiet += 1
                if quiet > self.hangover:
                    speaking, quiet = False, 0
            out[i] = speaking
        return out, speaking, quiet


class _Streaming:
    """PCM chunks in, one decision per hop out, `lookahead` hops late: a hop's score is the
    largest of its own and the next `lookahead` hops' (speech is caught a hop before it starts)."""

    gate: Hysteresis
    lookahead: int
    name: str
    source: str | None = None  # which file and engine score the hops, where it matters

    def __init__(self) -> None:
        self.buffer = np.zeros(0, dtype=np.float32)
        self.pending = np.zeros(0, dtype=np.float32)  # scores of hops not yet decided
        self.speaking, self.quiet = False, 0
        self.hops_in = 0  # hops scored so far

    def scores(self, hops: np.ndarray) -> np.ndarray:  # [n, HOP] -> [n]
        raise NotImplementedError

    def _decide(self, n: int) -> np.ndarray:
        ahead = np.array([self.pending[i : i + self.lookahead + 1].max() for i in range(n)], dtype=np.float32)
        self.pending = self.pending[n:]
        decided, self.speaking, self.quiet = self.gate.decide(ahead, self.speaking, self.quiet)
        return decided

    def push(self, pcm: np.ndarray) -> np.ndarray:
        """Decisions for every hop whose lookahead the samples so far complete."""
        self.buffer = np.concatenate([self.buffer, np.asarray(pcm, dtype=np.float32).reshape(-1)])
        n = self.buffer.size // HOP
        hops, self.buffer = self.buffer[: n * HOP].reshape(n, HOP), self.buffer[n * HOP :]
        self.pending = np.concatenate([self.pending, self.scores(hops)])
        self.hops_in += n
        return self._decide(max(0, self.pending.size - self.lookahead))

    def flush(self) -> np.ndarray:
        """The stream has ended: its last partial hop (padded with silence) and the hops that
        waited for lookahead, decided on what there is."""
        tail = self.push(np.zeros(HOP - self.buffer.size, np.float32)) if self.buffer.size else np.zeros(0, bool)
        return np.concatenate([tail, self._decide(self.pending.size)])

    def run(self, pcm: np.ndarray) -> np.ndarray:
        """Decisions for a whole utterance."""
        return np.concatenate([self.push(pcm), self.flush()])

    def describe(self) -> str:
        g = self.gate
        source = self.source
        plural = "s" if self.lookahead != 1 else ""
        return (
            f"{self.name}{f' [{source}]' if source else ''} (hop {HOP * 1000 // SAMPLE_RATE} ms, on {g.on:g}, "
            f"off {g.off:g}, hangover {g.hangover} hops, lookahead {self.lookahead} hop{plural})"
        )


def silero_model_path() -> Path:
    """silero-vad's 16 kHz ONNX model, from its wheel."""
    import silero_vad

    return Path(silero_vad.__file__).parent / "data" / "silero_vad_16k_op15.onnx"


_SILERO: list[Any] = []


def _silero_session() -> Any:
    """One onnxruntime session for every detector in the process: the model is stateless (each
    detector passes its own recurrent state), and a session per stream costs ~1 MB and ~20 ms."""
    import onnxruntime

    if not _SILERO:
        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = opts.intra_op_num_threads = 1
        _SILERO.append(onnxruntime.InferenceSession(str(silero_model_path()), sess_options=opts))
    return _SILERO[0]


Runner = Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]  # (x [1, 576], state) -> (p, state)


def wheel_runner() -> Runner:
    """silero's model from its wheel, by onnxruntime (its sample-rate input fed as it expects)."""
    session = _silero_session()
    sr = np.array(SAMPLE_RATE, dtype=np.int64)

    def run(x: np.ndarray, state: np.ndarray) -> tuple[float, np.ndarray]:
        prob, new_state = session.run(None, {"input": x, "state": state, "sr": sr})
        return float(prob.reshape(-1)[0]), new_state

    return run


def engine_runner(engine: Any) -> Runner:
    """The shipped file (`vad.mnn`/`vad.onnx`, sample rate fixed at 16 kHz) on a dhm engine."""

    def run(x: np.ndarray, state: np.ndarray) -> tuple[float, np.ndarray]:
        out = engine.run({"input": x, "state": state})
        return float(np.asarray(out["output"]).reshape(-1)[0]), np.asarray(out["stateN"], np.float32).reshape(
            SILERO_STATE
        )

    return run


class SileroVad(_Streaming):
    """silero-vad's speech probability per hop (its recurrent state carried across hops), from
    its wheel's model or, with `runner`, from the file an export ships."""

    name = "silero-vad"

    def __init__(
        self, on: float = SILERO_DECISION["on"], off: float = SILERO_DECISION["off"],
        hangover: int = SILERO_DECISION["hangover"], lookahead: int = SILERO_DECISION["lookahead"],
        runner: Runner | None = None, source: str = "silero-vad wheel, onnxruntime",
    ) -> None:  # fmt: skip
        super().__init__()
        self.gate, self.lookahead = Hysteresis(on, off, hangover), lookahead
        self.runner = runner or wheel_runner()
        self.source = source
        self.state = np.zeros(SILERO_STATE, dtype=np.float32)
        self.context = np.zeros(SILERO_CONTEXT, dtype=np.float32)

    def scores(self, hops: np.ndarray) -> np.ndarray:
        out = np.zeros(len(hops), dtype=np.float32)
        for i, hop in enumerate(hops):
            x = np.concatenate([self.context, hop])[None].astype(np.float32)
            out[i], self.state = self.runner(x, self.state)
            self.context = hop[-SILERO_CONTEXT:]
        return out


class EnergyGate(_Streaming):
    """The hop's level in dB above a noise floor that follows the quietest recent hops: rises
    slowly (so speech does not lift it), falls at once (a quieter hop is the new floor)."""

    name = "energy gate"

    def __init__(
        self, on: float = 9.0, off: float = 5.0, hangover: int = 6, rise_db_per_s: float = 3.0, lookahead: int = 0
    ) -> None:
        super().__init__()
        self.gate, self.lookahead = Hysteresis(on, off, hangover), lookahead
        self.rise = rise_db_per_s * HOP / SAMPLE_RATE
        self.floor: float | None = None

    def scores(self, hops: np.ndarray) -> np.ndarray:
        level = 10.0 * np.log10(np.mean(hops.astype(np.float64) ** 2, axis=1) + 1e-10)
        out = np.zeros(len(hops), dtype=np.float32)
        for i, db in enumerate(level):
            self.floor = db if self.floor is None else min(db, self.floor + self.rise)
            out[i] = db - self.floor
        return out


def speech_mask(clean: np.ndarray, min_pause_s: float = 0.2, floor_db: float = -50.0) -> np.ndarray:
    """The true speech hops of a clean recording: hops above `floor_db` dBFS, with pauses
    shorter than `min_pause_s` (between words) counted as speech."""
    clean = np.pad(np.asarray(clean, dtype=np.float64), (0, (-len(clean)) % HOP))
    level = 10.0 * np.log10(np.mean(clean.reshape(-1, HOP) ** 2, axis=1) + 1e-12)
    mask = level > floor_db
    gap = int(round(min_pause_s * SAMPLE_RATE / HOP))
    idx = np.flatnonzero(mask)
    for a, b in zip(idx[:-1], idx[1:], strict=True):
        if 1 < b - a <= gap + 1:
            mask[a:b] = True
    return mask


def score_frames(decided: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Precision and recall of the speech hops."""
    n = min(len(decided), len(truth))
    d, t = decided[:n], truth[:n]
    hit = float(np.sum(d & t))
    return {
        "precision": hit / max(1.0, float(np.sum(d))),
        "recall": hit / max(1.0, float(np.sum(t))),
        "hops": n,
        "speech_share": float(np.mean(t)),
    }
