"""A stand-in for MNN's `ModuleBasic.out` on this machine, used by the device-path tests.

There is no phone and no Android build of MNN here, so this script plays the binary's
part: the same arguments, the same files (`input.mnn`/`output.mnn` read, `output/R_I.txt`
written one value per line relative to the working folder), the same transcript lines as
the real MNN 3.6.1 output in `../shared/fixtures/mnn-tools/`, and the real MNN engine (the
Python wheel's) computing the outputs. What it tests is dhm's side of the wire: staging,
command lines, parsing, pulling and parity.

Test hooks (environment): DHM_STANDIN_FAIL=load prints the tool's load error (exit 0, as
the real tool does); DHM_STANDIN_SLEEP=N sleeps before running (timeouts).
"""

import os
import sys
import time

import numpy as np


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(
            "Usage: ./ModuleBasic.out ${test.mnn} ${Dir} [runMask] [forwardType] [runLoops] [numberThread] "
            "[precision] [cacheFile]"
        )
        return 0
    if os.environ.get("DHM_STANDIN_SLEEP"):
        time.sleep(float(os.environ["DHM_STANDIN_SLEEP"]))
    model, folder = argv[1], argv[2]
    run_mask = int(argv[3]) if len(argv) > 3 else 0
    forward = int(argv[4]) if len(argv) > 4 else 0
    loops = int(argv[5]) if len(argv) > 5 else 0
    threads = int(argv[6]) if len(argv) > 6 else 1
    precision = int(argv[7]) % 4 if len(argv) > 7 else 0
    import MNN.expr as F
    import MNN.nn as nn

    print(f"Test {model} from input info: {folder}")
    inputs, expected = {}, {}
    if run_mask & 128:
        print("Use input.mnn and output.mnn for test")
        inputs = F.load_as_dict(os.path.join(folder, "input.mnn"))
        if os.path.exists(os.path.join(folder, "output.mnn")):
            expected = F.load_as_dict(os.path.join(folder, "output.mnn"))
        if inputs and expected:
            print("Has input.mnn, use input.mnn and output.mnn instead of json")
    if forward:
        print(f"Use extra forward type: {forward}")
    print(f"precision={precision} in main, 260 ")
    if os.environ.get("DHM_STANDIN_FAIL") == "load":
        print("Error: can't load module")
        return 0
    config = {"backend": "CPU", "precision": {0: "normal", 1: "high", 2: "low"}[precision], "numThread": threads}
    rt = nn.create_runtime_manager((config,))
    in_names, out_names = list(inputs), list(expected) or ["out"]
    t0 = time.perf_counter()
    net = nn.load_module_from_file(model, in_names, out_names, runtime_manager=rt)
    print(f"main, 362, cost time: {1000 * (time.perf_counter() - t0):f} ms")
    args = [inputs[n] for n in in_names]
    for repeat in range(2):
        print(f"Run for {repeat} time")
        outs = [np.array(F.convert(v, F.NCHW).read(), dtype=np.float32) for v in net.forward(args)]
        for i, (name, out) in enumerate(zip(out_names, outs, strict=False)):
            if name in expected and precision != 2:
                target = np.array(expected[name].read(), dtype=np.float32).reshape(out.shape)
                print(f"before compare {name}: (" + "".join(f"{d}, " for d in out.shape) + ")")
                abs_max = max(float(np.abs(target).max()), 1e-4)
                diff = float(np.abs(target - out).max())
                print(f"For {name}, max = {abs_max:f}, diffmax = {diff:f}, diff rate = {diff / abs_max:f}")
                if diff > 0.01 * abs_max:
                    print(f"TESTERROR {name} value error : absMaxV:{abs_max:f} - DiffMax {diff:f}")
                    print(f"{repeat} run Error for output {name}")
            elif name in expected or precision == 2:
                print(f"Skip check {name}")
            path = f"output/{repeat}_{i}.txt"
            with open(path, "w") as f:
                f.write("".join(f"{v:.6g}\n" for v in out.ravel()))
            print(f"Write {name} output to {path}")
        print("memoryInMB=f 1.000000 in main, 507 ")
    if loops > 0:
        times = []
        for _ in range(loops):
            t = time.perf_counter()
            net.forward(args)
            times.append(1000 * (time.perf_counter() - t))
        print(f"Avg= {sum(times) / len(times):f} ms, min= {min(times):f} ms, max= {max(times):f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
