"""A distillation step broken into its parts, timed on the real training session (`_Session`):
batch assembly, the teacher's forward, the student's forward, the objective, backward, Adam and
the moving average; median over steps 6-25 (docs/distill.md, `--teacher-pool`).
Usage: python tests/tools/profile_distill_step.py TEACHER.pt DATA [STUDENT_WIDTHS]"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dhm.data import open_dataset, split_frames
from dhm.distill import loop
from dhm.distill.weights import DISTILL_DEFAULTS, DISTILL_LR
from dhm.models.checkpoint import load_checkpoint
from dhm.spec import GeneratorSpec

PARTS = ("batch", "teacher", "student forward", "objective", "backward", "adam", "moving average", "step")


def session(teacher_path: Path, data: str, widths: str) -> tuple[loop._Session, np.ndarray]:
    teacher = load_checkpoint(teacher_path)
    spec = GeneratorSpec(widths=widths)
    ds = open_dataset(data, mode=spec.mode)
    split = split_frames(ds.n_frames, min_train=16, min_heldout=4)
    config = loop.RunConfig(
        kind="distill", data=data, data_hash="", student=spec.to_dict(), teacher_sha256=None, steps=1000,
        batch_size=8, lr=DISTILL_LR, seed=0, weights=DISTILL_DEFAULTS.to_dict(), eval_every=100, eval_frames=8,
        init="teacher", ema=0.99,
    )  # fmt: skip
    train = np.asarray(split.train)
    run = loop._session(
        config, Path("unused"), spec, teacher, ds, list(split.eval[:8]), train, None, None, 1, True,
        torch.device("cpu"), "student.pt", None,
    )  # fmt: skip
    return run, train


def timed_step(run: loop._Session, train: np.ndarray, step: int) -> list[float]:
    marks = [time.perf_counter()]
    rng = np.random.default_rng([0, step, 0])
    b = run.builder.batch(rng.choice(train, size=8).tolist(), rng.choice(train, size=8).tolist())
    face, audio = (loop._nhwc(torch.from_numpy(b[k])) for k in ("face", "audio"))
    target, lips = torch.from_numpy(b["target"]), torch.from_numpy(b["lips"])
    marks.append(time.perf_counter())
    with torch.no_grad():
        t_logits, t_feats = run.teacher.features(face, audio)
        t_out = torch.sigmoid(t_logits.float())
    marks.append(time.perf_counter())
    logits, adapted = run.model(face, audio)
    pred = torch.sigmoid(logits.float())
    marks.append(time.perf_counter())
    loss = loop.objective(run.weights, pred, target, lips, run.mouth_w, t_out, adapted, t_feats, logits)
    marks.append(time.perf_counter())
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    marks.append(time.perf_counter())
    run.optimizer.step()
    marks.append(time.perf_counter())
    run.update_ema(step)
    marks.append(time.perf_counter())
    parts = [(b - a) * 1000 for a, b in zip(marks[:-1], marks[1:], strict=True)]
    return parts + [(marks[-1] - marks[0]) * 1000]


def main() -> None:
    run, train = session(Path(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "4,16,20,36,76")
    run.trainable.train()
    times = [timed_step(run, train, step) for step in range(25)][5:]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 8, median of {len(times)} steps")
    for i, name in enumerate(PARTS):
        print(f"{name:>15} {statistics.median(t[i] for t in times):7.1f} ms")


if __name__ == "__main__":
    main()
