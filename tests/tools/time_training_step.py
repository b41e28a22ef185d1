"""Times the distill step's parts on a batch of 8 random inputs: the frozen teacher's forward and
the student's forward + backward, NCHW against channels-last, with and without BatchNorm folded
(docs/measurements.md). Usage: python tests/tools/time_training_step.py TEACHER.pt [STUDENT_WIDTHS]"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from dhm.models import build_model, fold_batchnorm
from dhm.models.checkpoint import load_checkpoint
from dhm.spec import GeneratorSpec


def ms(fn, *args, runs: int = 6) -> float:
    fn(*args)
    t0 = time.perf_counter()
    for _ in range(runs):
        fn(*args)
    return (time.perf_counter() - t0) / runs * 1000


def forward(model: torch.nn.Module, face: torch.Tensor, audio: torch.Tensor) -> None:
    with torch.no_grad():
        model.features(face, audio)


def forward_backward(model: torch.nn.Module, face: torch.Tensor, audio: torch.Tensor) -> None:
    model.features(face, audio)[0].mean().backward()


def main() -> None:
    loaded = load_checkpoint(Path(sys.argv[1]))
    student = build_model(GeneratorSpec(widths=sys.argv[2] if len(sys.argv) > 2 else "4,16,20,36,76")).train()
    shapes = loaded.spec.input_shapes(8)
    face, audio = torch.rand(shapes["face"]), torch.randn(shapes["audio"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 8")
    for layout in ("nchw", "channels_last"):
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        f, a = face.contiguous(memory_format=fmt), audio.contiguous(memory_format=fmt)
        for name, teacher in (("teacher", loaded.model.eval()), ("teacher, BN folded", fold_batchnorm(loaded.model))):
            t = ms(forward, teacher.to(memory_format=fmt), f, a)
            print(f"{layout:>13}  {name:<18} forward          {t:7.1f} ms")
        t = ms(forward_backward, student.to(memory_format=fmt), f, a)
        print(f"{layout:>13}  {'student':<18} forward+backward {t:7.1f} ms")


if __name__ == "__main__":
    main()
