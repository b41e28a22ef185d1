"""Runs MNN models on MNN's aarch64 kernels: executed by an arm64 Python under qemu-aarch64,
with only the aarch64 MNN and numpy wheels on its path (no dhm, no torch). Not imported by dhm.

    python3.11 arm_child.py probe
    python3.11 arm_child.py run SPEC.json

SPEC: {"model", "inputs" (an .npz of "<name>_<i>"), "outputs" (.npz to write),
"input_names", "input_shapes", "output_names", "precision" ("high"|"low"), "count",
"threads"}. The figures are numerics, never timings (the CPU is emulated).
"""

import json
import sys


def main() -> None:
    import numpy as np

    import MNN

    if sys.argv[1] == "probe":
        print(json.dumps({"mnn": MNN.version(), "numpy": np.__version__, "python": sys.version.split()[0]}))
        return
    import MNN.expr as F
    import MNN.nn as nn

    with open(sys.argv[2]) as f:
        spec = json.load(f)
    runtime = nn.create_runtime_manager(
        ({"backend": "CPU", "precision": spec["precision"], "numThread": spec.get("threads", 1)},)
    )
    module = nn.load_module_from_file(spec["model"], spec["input_names"], spec["output_names"], runtime_manager=runtime)
    data = np.load(spec["inputs"])
    outs = {}
    for i in range(spec["count"]):
        args = [
            F.const(np.ascontiguousarray(data[f"{k}_{i}"], dtype=np.float32), list(spec["input_shapes"][k]), F.NCHW)
            for k in spec["input_names"]
        ]
        for name, v in zip(spec["output_names"], module.forward(args), strict=True):
            v = F.convert(v, F.NCHW)
            outs[f"{name}_{i}"] = np.array(v.read(), dtype=np.float32).reshape(v.shape)
    np.savez(spec["outputs"], **outs)


if __name__ == "__main__":
    main()
