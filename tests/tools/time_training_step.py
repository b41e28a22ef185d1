"""Times the distill step's parts on a batch of 8 random inputs: the frozen teacher's forward and
the student's forward + backward, NCHW against channels-last, with and without BatchNorm folded
(docs/measurements.md). The variants run interleaved, one call each per round, and the median of
the rounds is printed: on a shared host, blocks timed one after another drift apart.
Usage: python tests/tools/time_training_step.py TEACHER.pt [STUDENT_WIDTHS] [ROUNDS]"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from pathlib import Path

import torch

from dhm.models import build_model, fold_batchnorm
from dhm.models.checkpoint import load_checkpoint
from dhm.spec import GeneratorSpec


def variants(teacher_path: Path, widths: str) -> dict[str, tuple]:
    """name -> (call, model, face, audio) for both layouts."""
    loaded = load_checkpoint(teacher_path)
    folded = fold_batchnorm(loaded.model)
    student = build_model(GeneratorSpec(widths=widths)).train()
    shapes = loaded.spec.input_shapes(8)
    face, audio = torch.rand(shapes["face"]), torch.randn(shapes["audio"])

    def forward(model, f, a):
        with torch.no_grad():
            model.features(f, a)

    def forward_backward(model, f, a):
        model.features(f, a)[0].mean().backward()

    out = {}
    for layout, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        f, a = face.contiguous(memory_format=fmt), audio.contiguous(memory_format=fmt)
        # each layout gets its own copies: .to(memory_format=) converts a module in place
        out[f"{layout:>13}  teacher            forward         "] = (
            forward,
            copy.deepcopy(loaded.model).eval().to(memory_format=fmt),
            f,
            a,
        )
        out[f"{layout:>13}  teacher, BN folded forward         "] = (
            forward,
            copy.deepcopy(folded).to(memory_format=fmt),
            f,
            a,
        )
        out[f"{layout:>13}  student            forward+backward"] = (
            forward_backward,
            copy.deepcopy(student).to(memory_format=fmt),
            f,
            a,
        )
    return out


def main() -> None:
    calls = variants(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "4,16,20,36,76")
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    times: dict[str, list[float]] = {name: [] for name in calls}
    for fn, *args in calls.values():
        fn(*args)  # warm-up
    for _ in range(rounds):
        for name, (fn, *args) in calls.items():
            t0 = time.perf_counter()
            fn(*args)
            times[name].append((time.perf_counter() - t0) * 1000)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 8, median of {rounds} rounds")
    for name, ms in times.items():
        print(f"{name} {statistics.median(ms):7.1f} ms")


if __name__ == "__main__":
    main()
