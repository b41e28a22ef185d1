"""A fake `adb` for the tests: the real `AdbTransport` runs it as `adb` from PATH.

Environment:
  FAKE_ADB_ROOT    a local folder standing for the phone's file system: every device path
                   (`/data/local/tmp/...`) in a command, push or pull lands under it
  FAKE_ADB_LOG     a file; one JSON line per call holding its argv
  FAKE_ADB_DEVICES the `adb devices` listing body, one "SERIAL\tSTATE" per line
  FAKE_ADB_ABI     what `getprop ro.product.cpu.abilist` prints

It answers `devices`, `-s SERIAL shell CMD` (CMD run by `sh` with device paths mapped),
`-s SERIAL push LOCAL REMOTE` and `-s SERIAL pull REMOTE LOCAL`, and fails like adb on an
unknown serial or a missing remote file.
"""

import json
import os
import shutil
import subprocess
import sys

DEVICE_PREFIX = "/data/local/tmp"
PROPS = {
    "ro.product.manufacturer": "Fakephone",
    "ro.product.model": "FP-1",
    "ro.build.version.release": "14",
    "ro.build.version.sdk": "34",
    "ro.soc.model": "SM8550",
    "ro.hardware": "qcom",
}


def local(path: str) -> str:
    root = os.environ["FAKE_ADB_ROOT"]
    if not path.startswith(DEVICE_PREFIX):
        raise SystemExit(f"adb: error: {path}: outside the fake device's {DEVICE_PREFIX}")
    return root + path[len(DEVICE_PREFIX) :]


def main(argv: list[str]) -> int:
    with open(os.environ["FAKE_ADB_LOG"], "a") as f:
        f.write(json.dumps(argv) + "\n")
    devices = [line.split("\t") for line in os.environ.get("FAKE_ADB_DEVICES", "").splitlines() if line]
    if argv == ["devices"]:
        print("List of devices attached")
        for serial, state in devices:
            print(f"{serial}\t{state}")
        print()
        return 0
    if len(argv) < 3 or argv[0] != "-s":
        print("adb: usage: expected -s SERIAL COMMAND", file=sys.stderr)
        return 1
    serial, verb, args = argv[1], argv[2], argv[3:]
    if serial not in {s for s, state in devices if state == "device"}:
        print(f"adb: device '{serial}' not found", file=sys.stderr)
        return 1
    if verb == "shell":
        (command,) = args
        if command.startswith("getprop "):
            key = command.split()[1]
            print(os.environ.get("FAKE_ADB_ABI", "") if key == "ro.product.cpu.abilist" else PROPS.get(key, ""))
            return 0
        mapped = command.replace(DEVICE_PREFIX, os.environ["FAKE_ADB_ROOT"])
        return subprocess.run(["sh", "-c", mapped], stderr=subprocess.STDOUT).returncode
    if verb == "push":
        src, dst = args
        shutil.copy(src, local(dst))
        print(f"{src}: 1 file pushed, 0 skipped.")
        return 0
    if verb == "pull":
        src, dst = args
        if not os.path.exists(local(src)):
            print(f"adb: error: failed to stat remote object '{src}': No such file or directory", file=sys.stderr)
            return 1
        shutil.copy(local(src), dst)
        print(f"{src}: 1 file pulled, 0 skipped.")
        return 0
    print(f"adb: unknown command {verb}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
