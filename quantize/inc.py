"""neural-compressor (INC) in dhm: searching INT8 activation settings on the torch model.

From 3.8 INC quantizes only torch (PT2E) and has no ONNX support, so it cannot produce
dhm's ONNX or MNN files. What it does well is `autotune`: try a set of quantization
configs and judge each with our own metric. dhm uses it to choose the activation
calibration (min-max or KL) and symmetry for INT8, scoring each config by held-out PSNR
of the PT2E-quantized torch student against FP32, and feeds the winner into the ONNX
recipe (calibration method, activation symmetry). MNN's quantizer has no min-max mode,
so MNN keeps KL.

INC is an optional extra (`pip install 'dhm[inc]'`); `make test` installs and tests it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dhm.data.inputs import InputSet
from dhm.errors import DhmError
from dhm.metrics import psnr
from dhm.spec import AUDIO_INPUT, FACE_INPUT

SEARCH_SPACE = [(sym, algo) for sym in (False, True) for algo in ("minmax", "kl")]
_PSNR_CAP = 200.0  # INC needs a finite baseline; FP32 against itself is +inf


@dataclass
class IncResult:
    act_sym: bool
    act_algo: str
    trials: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"act_sym": self.act_sym, "act_algo": self.act_algo, "trials": self.trials}

    @property
    def ort_method(self) -> str:
        return "entropy" if self.act_algo == "kl" else "minmax"


def available() -> bool:
    try:
        import neural_compressor  # noqa: F401
    except ImportError:
        return False
    return True


def search_activation_config(model, calib: InputSet, evaluation: InputSet) -> IncResult:
    """INC autotune over activation symmetry x calibration algorithm, judged by PSNR."""
    if not available():
        raise DhmError("--inc needs neural-compressor: pip install 'dhm[inc]'")
    import torch

    for name in ("neural_compressor", "torchao"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        from neural_compressor.torch.export import export
        from neural_compressor.torch.quantization import StaticQuantConfig, TuningConfig, autotune

    def run(m) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate(
                [
                    m(torch.from_numpy(x[FACE_INPUT]), torch.from_numpy(x[AUDIO_INPUT])).numpy()
                    for x in evaluation.inputs
                ]
            )

    reference = run(model)
    scores: list[float] = []

    def eval_fn(m) -> float:
        value = psnr(run(m), reference)
        value = _PSNR_CAP if not math.isfinite(value) else value
        scores.append(value)
        return value

    def run_fn(m) -> None:
        with torch.no_grad():
            for x in calib.inputs:
                m(torch.from_numpy(x[FACE_INPUT]), torch.from_numpy(x[AUDIO_INPUT]))

    example = (torch.from_numpy(calib.inputs[0][FACE_INPUT]), torch.from_numpy(calib.inputs[0][AUDIO_INPUT]))
    configs = [StaticQuantConfig(act_sym=sym, act_algo=algo) for sym, algo in SEARCH_SPACE]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        graph = export(model.eval(), example)
        # tolerable_loss 0 against a capped FP32 baseline: every config is tried
        autotune(
            graph,
            TuningConfig(config_set=configs, tolerable_loss=0.0, max_trials=len(configs)),
            eval_fn=eval_fn,
            run_fn=run_fn,
            example_inputs=example,
        )
    trial_scores = scores[1:]  # scores[0] is INC's FP32 baseline
    trials = [
        {"act_sym": sym, "act_algo": algo, "psnr_db": round(s, 2)}
        for (sym, algo), s in zip(SEARCH_SPACE, trial_scores, strict=False)
    ]
    if not trials:
        raise DhmError("neural-compressor autotune ran no trial")
    best = max(trials, key=lambda t: t["psnr_db"])
    return IncResult(act_sym=best["act_sym"], act_algo=best["act_algo"], trials=trials)
