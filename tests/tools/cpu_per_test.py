"""CPU seconds per test, the suite's own processes and the children they waited for (compilers,
qemu, `dhm` subprocesses): where `make test`'s CPU-minutes go, which --durations (wall time,
each test beside the other process) cannot say.

    PYTHONPATH=tests/tools .venv/bin/pytest -n 2 --dist loadfile --no-loadscope-reorder -p cpu_per_test
    python tests/tools/cpu_per_test.py            # the table, from $DHM_CPU_LOG (default /tmp/dhm-cpu)
"""

from __future__ import annotations

import collections
import json
import os
import sys
import time
from pathlib import Path

import pytest

LOG = Path(os.environ.get("DHM_CPU_LOG", "/tmp/dhm-cpu"))


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    cpu, wall = _cpu(), time.time()
    yield
    LOG.mkdir(parents=True, exist_ok=True)
    row = {"id": item.nodeid, "cpu": round(_cpu() - cpu, 2), "wall": round(time.time() - wall, 2)}
    with open(LOG / f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def main(top: int = 25) -> None:
    rows = [json.loads(line) for path in sorted(LOG.glob("*.jsonl")) for line in path.read_text().splitlines()]
    per_file: collections.Counter[str] = collections.Counter()
    for r in rows:
        per_file[r["id"].split("::")[0]] += r["cpu"]
    print(f"{sum(per_file.values()):.0f} CPU seconds in {len(rows)} tests\n\n| file | CPU s |\n|---|---:|")
    for name, cpu in per_file.most_common():
        print(f"| {name} | {cpu:.0f} |")
    print("\n| test | CPU s | wall s |\n|---|---:|---:|")
    for r in sorted(rows, key=lambda r: -r["cpu"])[:top]:
        print(f"| {r['id']} | {r['cpu']:.0f} | {r['wall']:.0f} |")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
