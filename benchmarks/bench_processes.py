"""No-op processes end to end between real daemons on loopback (issue 9).

    .venv/bin/python benchmarks/bench_processes.py [--processes 200] [--executors-per-node 1]

Three daemons, all voters, executors on each serving a no-op function (the executors
of one node share its claim rounds: the figures print how many claims a round carried). Node a
submits the processes (16 at a time through its API), then long-polls each one's result;
prints processes/s from the first
submit to the last result, and submit->start and submit->result latency p50/p99 (from the
processes' own times: one machine, one clock).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from colonynode.node.apiclient import ApiClient
from tests.integration.harness import CLI, Colony, Daemon, cli, wait_until

FUNCTIONS = "from colonynode.sdk import function\n\n@function\ndef noop():\n    return None\n"


def ts(text: str) -> float:
    return datetime.fromisoformat(text[:26].rstrip("Z")).timestamp()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def frames(d: Daemon) -> dict[str, int]:
    """The daemon's frame counters by direction and channel (`frames_in_gossip`, ...)."""
    counters = d.status()["counters"]
    return {k: int(v) for k, v in counters.items() if k.startswith("frames_")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=200)
    parser.add_argument("--executors-per-node", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=1, help="slots an executor")
    args = parser.parse_args()
    n, per_node = args.processes, args.executors_per_node
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        colony = Colony(root)
        executors = []
        try:
            a = colony.founder("a")
            nodes = [a, colony.joined("b", via=a), colony.joined("c", via=a)]
            cli("voters", "set", "a", "b", "c", "--data-dir", str(a.dir))
            for d in nodes:
                wait_until("3 voters", lambda d=d: sum(m["voter"] for m in d.members()) == 3)
                wait_until("mesh", lambda d=d: d.status()["connected_peers"] == 2)
            (root / "f.py").write_text(FUNCTIONS)
            for d in nodes:
                for i in range(per_node):
                    executors.append(subprocess.Popen(
                        [CLI, "executor", "run", str(root / "f.py"), "--type", "bench",
                         "--name", f"{d.name}-{i}", "--concurrency", str(args.concurrency),
                         "--data-dir", str(d.dir)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    ))  # fmt: skip
            for d in nodes:  # the clock starts once every executor is attached and idle
                wait_until("executors", lambda d=d: d.status()["scheduler"]["executors"]
                           == per_node, timeout_s=60)  # fmt: skip
            api = ApiClient.for_data_dir(a.dir, timeout_s=60)
            spec = {"funcname": "noop", "conditions": {"executortype": "bench"}}
            frames_before = [frames(d) for d in nodes]
            t0 = time.perf_counter()
            with ThreadPoolExecutor(16) as pool:
                pids = list(pool.map(
                    lambda _: api.post("/v1/processes", {"spec": spec})["processid"], range(n)
                ))  # fmt: skip
            submitted_s = time.perf_counter() - t0

            # Long-poll each process's wait endpoint in turn (one cheap request each),
            # rather than listing every process over and over: the listing would cost
            # the submitting daemon more CPU than the work it measures.
            for pid in pids:
                while api.get(f"/v1/processes/{pid}/wait", timeout_s=30)["state"] not in (
                    "SUCCESS", "FAILED"):  # fmt: skip
                    pass
            wall = time.perf_counter() - t0
            finished = api.get("/v1/processes", limit=n + 10)
            assert {p["processid"] for p in finished} == set(pids)
            starts = [ts(p["starttime"]) - ts(p["submissiontime"]) for p in finished]
            ends = [ts(p["endtime"]) - ts(p["submissiontime"]) for p in finished]
            ok = sum(p["state"] == "SUCCESS" for p in finished)
            print(f"{n} no-op processes ({ok} SUCCESS): {n / wall:.1f} processes/s end to end; "
                  f"submits {n / submitted_s:.0f}/s")  # fmt: skip
            print(f"submit->start  p50 {1000 * statistics.median(starts):.0f} ms, "
                  f"p99 {1000 * pct(starts, 0.99):.0f} ms")  # fmt: skip
            print(f"submit->result p50 {1000 * statistics.median(ends):.0f} ms, "
                  f"p99 {1000 * pct(ends, 0.99):.0f} ms")  # fmt: skip
            for d, before in zip(nodes, frames_before, strict=True):
                after = frames(d)
                per = {k: (after[k] - before.get(k, 0)) / n for k in sorted(after)}
                shown = [f"{k.removeprefix('frames_')} {v:.1f}" for k, v in per.items() if v]
                print(f"{d.name}: frames a process: " + ", ".join(shown))
            sched = [d.status()["scheduler"] for d in nodes]
            rounds = sum(x.get("claim_rounds", 0) for x in sched)
            sent = sum(x.get("claims_sent", 0) for x in sched)
            print(
                f"{len(executors)} executors ({per_node} a node); claim rounds {rounds}, "
                f"claims {sent}" + (f", {sent / rounds:.2f} a round" if rounds else "")
            )
        finally:
            for e in executors:
                e.kill()
            colony.stop_all()


if __name__ == "__main__":
    main()
