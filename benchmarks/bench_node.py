"""Daemon figures on loopback (issues 3 and 19): `start` to ready, idle RSS, `join` to
member-listed, and an executor with one worker: its RSS and its worker's, together.

    .venv/bin/python benchmarks/bench_node.py [--rounds 5]

Real daemons as OS processes through the CLI, as a user runs them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from colonynode.sdk import Client
from tests.integration.harness import Colony, Executors, wait_until

FUNCTIONS = "from colonynode.sdk import function\n\n@function\ndef add(a, b):\n    return a + b\n"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def executor_rss(root: Path, colony: Colony) -> float:
    """An executor with one worker, after one call: its RSS and its children's."""
    a = colony.daemons["a"]
    ex = Executors(root, FUNCTIONS)
    try:
        ex.start(a)
        with Client(a.dir) as client:
            assert client.run("add", 1, 2, executortype="py")["output"] == [3]
        pid = ex.procs["a"].pid
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return rss_mib(pid) + sum(rss_mib(int(k)) for k in kids)
    finally:
        ex.stop_all()


def one_round(root: Path) -> tuple[float, float, float, float]:
    colony = Colony(root)
    try:
        a = colony.daemon("a")
        a.init()
        a.start(wait=False)
        ready_s = a.wait_ready()
        assert a.proc is not None
        token, addr = a.invite(), a.addr()
        b = colony.daemon("b")
        t0 = time.monotonic()
        b.join(addr, token, wait=False)
        wait_until("a to list b", lambda: "b" in a.member_names(), timeout_s=30)
        join_s = time.monotonic() - t0
        wait_until("b ready", lambda: b._ready(), timeout_s=30)
        rss = rss_mib(a.proc.pid)
        return ready_s, rss, join_s, executor_rss(root, colony)
    finally:
        colony.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(one_round(Path(tmp)))
        print(f"round {i + 1}: start->ready {rows[-1][0]:.2f} s, idle RSS {rows[-1][1]:.1f} MiB, "
              f"join->member-listed {rows[-1][2]:.2f} s, "
              f"executor + worker RSS {rows[-1][3]:.1f} MiB")  # fmt: skip
    for label, idx, unit in (("start->ready", 0, "s"), ("idle RSS", 1, "MiB"),
                             ("join->member-listed", 2, "s"),
                             ("executor + worker RSS", 3, "MiB")):  # fmt: skip
        values = [r[idx] for r in rows]
        print(f"{label:22s} median {statistics.median(values):.2f} {unit} "
              f"(min {min(values):.2f}, max {max(values):.2f}, n={len(values)})")  # fmt: skip


if __name__ == "__main__":
    main()
