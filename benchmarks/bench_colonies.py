"""The Colonies-compatible API beside colonynode's own SDK, in one run (issue 16).

    .venv/bin/python benchmarks/bench_colonies.py [--calls 300] [--sequential 50]

A 3-node colony (3 voters) on loopback, every node serving the Colonies API. On each
node one pycolonies executor (through that node's gateway: assign, close, in a loop, as
pycolonies' examples do) and one `colonynode executor run` executor (one slot).

- assigns/s: `--calls` no-op processes submitted at once (one `submit_many`), run by
  the three pycolonies executors (gateway) or the three native ones (SDK); from the
  submission to the last close.
- the CPU a call of the three daemons and of the executors, in that phase;
- submit-to-close latency: `--sequential` calls one after another, by a pycolonies
  program (`submit_func_spec`, then `wait` over /pubsub) or by `Client.run`.

Prints a table and the same as one JSON line (the last line).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.compare import FUNCTIONS, descendants, latencies, pct, stop_all
from colonynode.sdk import Client
from tests.integration.harness import CLI, Colony, Daemon, cli, cli_json, wait_until

EXECUTOR = """
import sys
from pycolonies import Crypto, colonies_client
colonies, colony, colony_key, _, _ = colonies_client()
crypto = Crypto(); key = crypto.prvkey(); name = sys.argv[1]
colonies.add_executor({"executorname": name, "executorid": crypto.id(key),
                       "colonyname": colony, "executortype": "gw"}, colony_key)
colonies.approve_executor(colony, name, colony_key)
print("registered", flush=True)
while True:
    try:
        process = colonies.assign(colony, 10, key)
    except Exception:
        continue
    colonies.close(process.processid, [], key)
"""

SEQUENTIAL = """
import json, statistics, sys, time
from pycolonies import colonies_client, func_spec
colonies, colony, _, _, key = colonies_client()
took = []
for i in range(int(sys.argv[1])):
    t0 = time.perf_counter()
    spec = func_spec(func="noop", args=[i], colonyname=colony, executortype="gw",
                     maxexectime=30, maxretries=3)
    process = colonies.wait(colonies.submit_func_spec(spec, key), 30, key)
    assert process.state == 2, process
    took.append(time.perf_counter() - t0)
print(json.dumps(took))
"""


def _cpu_s(pids: list[int]) -> float:
    """CPU seconds of these processes and every process under them, from /proc."""
    total = 0.0
    for pid in descendants(pids):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Stack:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.colony = Colony(root)
        self.procs: list[subprocess.Popen[bytes]] = []
        a = self.colony.daemon("a")
        a.init("bench")
        a.extra = ["--colonies-port", "0"]
        a.start()
        self.nodes: list[Daemon] = [a]
        for name in "bc":
            d = self.colony.daemon(name)
            d.extra = ["--colonies-port", "0"]
            d.join(a.addr(), a.invite())
            self.nodes.append(d)
        cli("voters", "set", "a", "b", "c", "--data-dir", str(a.dir))
        for d in self.nodes:
            wait_until("voters", lambda d=d: sum(m["voter"] for m in d.members()) == 3)
            wait_until("mesh", lambda d=d: d.status()["connected_peers"] == 2)
        self.envs = [cli_json("gateway", "env", "--data-dir", str(d.dir)) for d in self.nodes]
        colony_key = self.envs[0]["COLONIES_COLONY_PRVKEY"]
        (root / "f.py").write_text(FUNCTIONS)
        for i, d in enumerate(self.nodes):
            log = (root / f"gw-{d.name}.log").open("ab")
            env = {**os.environ, **self.envs[i], "COLONIES_COLONY_PRVKEY": colony_key}
            argv = [sys.executable, "-c", EXECUTOR, f"gw-{d.name}"]
            self.procs.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT))
            self.procs.append(subprocess.Popen(
                [CLI, "executor", "run", str(root / "f.py"), "--type", "bench",
                 "--concurrency", "1", "--data-dir", str(d.dir)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        for d in self.nodes:
            wait_until("executors", lambda d=d: d.status()["scheduler"]["executors"] >= 1,
                       timeout_s=60)  # fmt: skip
        for d in self.nodes:
            log = root / f"gw-{d.name}.log"
            wait_until("pycolonies executors", lambda log=log: "registered" in log.read_text(),
                       timeout_s=60)  # fmt: skip
        self.client = Client(a.dir)

    def rate(self, executortype: str, n: int) -> dict[str, float]:
        """Calls a second, and the CPU a call of the daemons and of the executors (each
        with its worker processes)."""
        specs = [{"funcname": "noop", "args": [i], "maxexectime": 30,
                  "conditions": {"executortype": executortype}} for i in range(n)]  # fmt: skip
        daemons = [d.proc.pid for d in self.nodes if d.proc is not None]
        cpu0 = (_cpu_s(daemons), _cpu_s([p.pid for p in self.procs]))
        t0 = time.perf_counter()
        pids = [p["processid"] for p in self.client.submit_many(specs, brief=True)]
        done = list(self.client.as_completed(pids, timeout_s=300))
        took = time.perf_counter() - t0
        cpu1 = (_cpu_s(daemons), _cpu_s([p.pid for p in self.procs]))
        assert all(p["state"] == "SUCCESS" for p in done), "a no-op failed"
        return {"assigns_per_s": n / took,
                "daemons_cpu_ms_per_call": 1000 * (cpu1[0] - cpu0[0]) / n,
                "executors_cpu_ms_per_call": 1000 * (cpu1[1] - cpu0[1]) / n}  # fmt: skip

    def gateway_latencies(self, n: int) -> dict[str, float]:
        env = {**os.environ, **self.envs[1]}  # a submitter on b's gateway
        out = subprocess.run([sys.executable, "-c", SEQUENTIAL, str(n)], env=env,
                             capture_output=True, text=True, timeout=600, check=True)  # fmt: skip
        took: list[float] = json.loads(out.stdout.strip().splitlines()[-1])
        return {"p50_ms": 1000 * sorted(took)[len(took) // 2], "p99_ms": 1000 * pct(took, 0.99)}

    def sdk_latencies(self, n: int) -> dict[str, float]:
        with Client(self.nodes[1].dir) as client:
            return latencies(lambda i: client.run("noop", i, executortype="bench"), n)

    def close(self) -> None:
        self.client.close()
        stop_all(self.procs)
        self.colony.stop_all()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--sequential", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp))
        try:
            stack.rate("gw", 30)  # warm both paths
            stack.rate("bench", 30)
            result: dict[str, Any] = {
                "gateway": {**stack.rate("gw", args.calls),
                            **stack.gateway_latencies(args.sequential)},
                "sdk": {**stack.rate("bench", args.calls), **stack.sdk_latencies(args.sequential)},
            }  # fmt: skip
        finally:
            stack.close()
    print(f"{'':22}{'gateway (pycolonies)':>22}{'colonynode SDK':>18}")
    for key, label in (("assigns_per_s", "assigns/s"), ("p50_ms", "submit-close p50 ms"),
                       ("p99_ms", "submit-close p99 ms"),
                       ("daemons_cpu_ms_per_call", "daemons CPU ms/call"),
                       ("executors_cpu_ms_per_call", "executors CPU ms/call")):  # fmt: skip
        print(f"{label:22}{result['gateway'][key]:>22.1f}{result['sdk'][key]:>18.1f}")
    result["calls"], result["sequential"] = args.calls, args.sequential
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
