"""Claims through the lease quorum between real daemons on loopback (issue 8).

    .venv/bin/python benchmarks/bench_claims.py [--processes 640] [--batches 1,32]

Three daemons, all three voters. Node a submits the processes; node b claims them in
batches of the given size through its local API and closes each one. Prints claims
committed per second and per-claim latency (API request to answer) p50/p99.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from colonynode.node.apiclient import ApiClient
from tests.integration.harness import Colony, Daemon, cli, wait_until

_local = threading.local()


def client_of(d: Daemon) -> ApiClient:
    """One client per thread: making an httpx client costs milliseconds (its SSL context)."""
    if not hasattr(_local, "client"):
        _local.client = ApiClient.for_data_dir(d.dir, timeout_s=120)
    client: ApiClient = _local.client
    return client


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(n: int, batches: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        colony = Colony(Path(tmp))
        try:
            a = colony.founder("a")
            b = colony.joined("b", via=a)
            c = colony.joined("c", via=a)
            cli("voters", "set", "a", "b", "c", "--data-dir", str(a.dir))
            for d in (a, b, c):
                wait_until("3 voters", lambda d=d: sum(m["voter"] for m in d.members()) == 3)
                wait_until("mesh", lambda d=d: d.status()["connected_peers"] == 2)
            submitter = ApiClient.for_data_dir(a.dir, timeout_s=120)
            for batch in batches:
                pids = [f"{batch:04x}{i:08x}" for i in range(n)]
                t0 = time.perf_counter()
                with ThreadPoolExecutor(16) as pool:
                    acks = list(pool.map(
                        lambda p: submitter.post("/v1/leases/submit", {"pid": p})["acked"], pids
                    ))  # fmt: skip
                submit_s = time.perf_counter() - t0
                assert all(acks)
                latencies: list[float] = []
                committed = 0

                def claim(chunk: list[str]) -> tuple[float, int]:
                    client = client_of(b)
                    t = time.perf_counter()
                    res = client.post("/v1/leases/claim", {"pids": chunk, "lease_s": 30})
                    took = time.perf_counter() - t
                    won = [r["pid"] for r in res["results"] if r["granted"]]
                    for pid in won:
                        client.post("/v1/leases/close", {"pid": pid, "output": [1]})
                    return took, len(won)

                chunks = [pids[i : i + batch] for i in range(0, n, batch)]
                t0 = time.perf_counter()
                with ThreadPoolExecutor(8) as pool:
                    for took, won in pool.map(claim, chunks):
                        latencies.append(took)
                        committed += won
                wall = time.perf_counter() - t0
                print(
                    f"batch {batch:3d}: {committed}/{n} claims granted and closed in {wall:.2f} s"
                    f" = {committed / wall:.0f} claims/s (claim+close); claim request latency"
                    f" p50 {1000 * statistics.median(latencies):.1f} ms,"
                    f" p99 {1000 * pct(latencies, 0.99):.1f} ms; submits {n / submit_s:.0f}/s",
                    flush=True,
                )
        finally:
            colony.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=640)
    parser.add_argument("--batches", default="1,32")
    args = parser.parse_args()
    run(args.processes, [int(x) for x in args.batches.split(",")])


if __name__ == "__main__":
    main()
