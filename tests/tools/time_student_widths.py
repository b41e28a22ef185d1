"""A distillation step's cost for several student widths, interleaved in one process (the demo's
teacher, 2 threads, batch 8; forward, objective, backward and Adam; the teacher's forward left
out, as the teacher pool leaves it out of a step). Median of steps 3-8 per widths.
Usage: python tests/tools/time_student_widths.py TEACHER.pt DATA WIDTHS [WIDTHS ...]"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from profile_distill_step import session

from dhm.distill import loop
from dhm.metrics import generator_cost
from dhm.spec import GeneratorSpec


def step_ms(run: loop._Session, train: np.ndarray, step: int, batch: int = 8) -> float:
    rng = np.random.default_rng([0, step, 0])
    b = run.builder.batch(rng.choice(train, size=batch).tolist(), rng.choice(train, size=batch).tolist())
    face, audio = (loop._nhwc(torch.from_numpy(b[k])) for k in ("face", "audio"))
    target, lips = torch.from_numpy(b["target"]), torch.from_numpy(b["lips"])
    with torch.no_grad():
        t_logits, t_feats = run.teacher.features(face, audio)
        t_out = torch.sigmoid(t_logits.float())
    t0 = time.perf_counter()
    logits, adapted = run.model(face, audio)
    pred = torch.sigmoid(logits.float())
    loss = loop.objective(run.weights, pred, target, lips, run.mouth_w, t_out, adapted, t_feats, logits)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    torch.set_num_threads(2)
    teacher, data, widths = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    runs = {w: session(teacher, data, w) for w in widths}
    times: dict[str, list[float]] = {w: [] for w in widths}
    for step in range(8):
        for w in widths:
            runs[w][0].trainable.train()
            times[w].append(step_ms(*runs[w], step))
    for w in widths:
        macs, params = generator_cost(GeneratorSpec(widths=w))
        ms = statistics.median(times[w][2:])
        print(f"{w:>18} {macs / 1e6:7.1f} MMACs {params / 1e3:7.1f} K params  step {ms:6.1f} ms")


if __name__ == "__main__":
    main()
