"""colonynode next to Dask, in one run on this machine (issue 14).

    .venv/bin/pip install -e '.[bench]'        # Dask (distributed), for the peer
    .venv/bin/python benchmarks/compare.py [--calls 5000] [--sequential 200] [--curve 1,3,5]

colonynode: 3 daemons (3 voters) on loopback, one `colonynode executor run` a node
(`--concurrency` worker processes each, default 1: three worker processes in all, as
Dask's three). Dask: `LocalCluster(n_workers=3, threads_per_worker=1, processes=True)`.
Each does `--calls` no-op calls through its map API (`Client.map`; `client.map` +
`gather`), then `--sequential` calls one after another (submit, wait for the result),
and we read the stack's RSS (this process and every process under it). Then the curve:
colonynode's map throughput with 1, 3 and 5 nodes (3 voters where there are 3). Prints
a table and the ratios, and the same as one JSON line (the last line). With them, the CPU
a call costs the whole stack (this process and every process under it, from /proc), in
the map and in the sequential calls, colonynode's by role: on a shared 2-core machine
the wall-clock figures move with the neighbours, the CPU a call costs much less.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from colonynode.sdk import Client
from tests.integration.harness import CLI, Colony, Daemon, cli, wait_until

FUNCTIONS = "from colonynode.sdk import function\n\n@function\ndef noop(i):\n    return None\n"


def noop(i: int) -> None:
    return None


def descendants(pids: list[int]) -> list[int]:
    """These processes and every process under them, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


TICKS_S = os.sysconf("SC_CLK_TCK")


def cpu_by_process() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system, every thread) of this process and each one under
    it, with its command line, from /proc."""
    out = {}
    for pid in descendants([os.getpid()]):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[pid] = (cmd, (int(fields[11]) + int(fields[12])) / TICKS_S)
    return out


def role(pid: int, cmd: str) -> str:
    """Whose CPU a process's is, for the per-call table."""
    if pid == os.getpid():
        return "client"  # (Dask's: its client and its scheduler, which run here)
    roles = ((" start ", "daemons"), (" join ", "daemons"), (" executor run ", "executors"),
             ("runners import _main", "workers"))  # fmt: skip
    for word, name in roles:
        if word in cmd:
            return name
    return "workers" if "multiprocessing" in cmd or "spawn" in cmd else "other"


def cpu_per_call(work: Any, n: int) -> tuple[Any, dict[str, float]]:
    """`work()`'s result, and the stack's CPU milliseconds a call while it ran, by role
    and in all ("all"). A benchmark's wall clock on a shared 2-core machine moves with
    its neighbours; the CPU a call costs moves much less (docs/performance.md)."""
    before = cpu_by_process()
    result = work()
    after = cpu_by_process()
    roles: dict[str, float] = {}
    for pid, (cmd, spent) in after.items():
        delta = spent - before.get(pid, (cmd, 0.0))[1]
        name = role(pid, cmd)
        roles[name] = roles.get(name, 0.0) + 1000 * delta / n
    roles["all"] = sum(roles.values())
    return result, roles


def rss_mib() -> float:
    """This process and all its descendants, from /proc."""
    total = 0
    for pid in descendants([os.getpid()]):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """Terminate, then kill what has not exited within 10 s."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latencies(call: Any, n: int) -> dict[str, float]:
    took = []
    for i in range(n):
        t0 = time.perf_counter()
        call(i)
        took.append(time.perf_counter() - t0)
    return {"p50_ms": 1000 * statistics.median(took), "p99_ms": 1000 * pct(took, 0.99)}


# -- colonynode -----------------------------------------------------------------------


class ColonyStack:
    def __init__(self, root: Path, nodes: int, concurrency: int) -> None:
        self.colony = Colony(root)
        self.executors: list[subprocess.Popen[bytes]] = []
        a = self.colony.founder("a")
        self.nodes: list[Daemon] = [a]
        for name in "bcdefg"[: nodes - 1]:
            self.nodes.append(self.colony.joined(name, via=a))
        voters = [d.name for d in self.nodes[:3]]
        if len(voters) > 1:
            cli("voters", "set", *voters, "--data-dir", str(a.dir))
        for d in self.nodes:
            wait_until("voters", lambda d=d: sum(m["voter"] for m in d.members()) == len(voters))
            wait_until("mesh", lambda d=d: d.status()["connected_peers"] == nodes - 1)
        (root / "f.py").write_text(FUNCTIONS)
        for d in self.nodes:
            self.executors.append(subprocess.Popen(
                [CLI, "executor", "run", str(root / "f.py"), "--type", "bench",
                 "--concurrency", str(concurrency), "--data-dir", str(d.dir)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
        for d in self.nodes:
            wait_until("executor", lambda d=d: d.status()["scheduler"]["executors"] == 1,
                       timeout_s=60)  # fmt: skip
        self.client = Client(a.dir)

    def map(self, n: int) -> float:
        t0 = time.perf_counter()
        out = list(self.client.map("noop", range(n), executortype="bench"))
        took = time.perf_counter() - t0
        assert out == [[None]] * n, "a no-op returned something else"
        return n / took

    def one(self, i: int) -> None:
        self.client.run("noop", i, executortype="bench")

    def close(self) -> None:
        self.client.close()
        stop_all(self.executors)
        self.colony.stop_all()


def run_colonynode(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    stack = ColonyStack(root / "three", 3, args.concurrency)
    try:
        stack.map(min(100, args.calls))  # warm: imports, connections, the worker processes
        rate, map_cpu = cpu_per_call(lambda: stack.map(args.calls), args.calls)
        out: dict[str, Any] = {"throughput_per_s": rate}
        lat, seq_cpu = cpu_per_call(lambda: latencies(stack.one, args.sequential), args.sequential)
        out.update(lat)
        out["rss_mib"] = rss_mib()
        out["cpu_ms_per_call"] = {"map": map_cpu, "sequential": seq_cpu}
    finally:
        stack.close()
    curve = {}
    for n in args.curve:
        stack = ColonyStack(root / f"curve{n}", n, args.concurrency)
        try:
            stack.map(min(100, args.curve_calls))
            curve[str(n)] = stack.map(args.curve_calls)
        finally:
            stack.close()
    out["curve_per_s"] = curve
    return out


# -- Dask -----------------------------------------------------------------------------


def run_dask(args: argparse.Namespace) -> dict[str, Any] | None:
    try:
        from distributed import Client as DaskClient
        from distributed import LocalCluster
    except ImportError:
        print("dask not installed (pip install -e '.[bench]'): colonynode alone", file=sys.stderr)
        return None
    cluster = LocalCluster(n_workers=3, threads_per_worker=1, processes=True,
                           dashboard_address=None)  # fmt: skip
    with cluster, DaskClient(cluster) as client:
        client.gather(client.map(noop, range(min(100, args.calls)), pure=False))  # warm

        def many() -> float:
            t0 = time.perf_counter()
            client.gather(client.map(noop, range(args.calls), pure=False))
            return args.calls / (time.perf_counter() - t0)

        rate, map_cpu = cpu_per_call(many, args.calls)
        out: dict[str, Any] = {"throughput_per_s": rate}
        lat, seq_cpu = cpu_per_call(
            lambda: latencies(lambda i: client.submit(noop, i, pure=False).result(),
                              args.sequential), args.sequential)  # fmt: skip
        out.update(lat)
        out["rss_mib"] = rss_mib()
        out["cpu_ms_per_call"] = {"map": map_cpu, "sequential": seq_cpu}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--curve", default="1,3,5", help="colony sizes for the curve ('' none)")
    parser.add_argument("--curve-calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1, help="worker processes an executor")
    args = parser.parse_args()
    args.curve = [int(x) for x in args.curve.split(",") if x]
    with tempfile.TemporaryDirectory() as tmp:
        ours = run_colonynode(args, Path(tmp))
    dask = run_dask(args)
    rows = [("map throughput (calls/s)", "throughput_per_s", True),
            ("sequential call p50 (ms)", "p50_ms", False),
            ("sequential call p99 (ms)", "p99_ms", False),
            ("stack RSS (MiB)", "rss_mib", False)]  # fmt: skip
    nan = float("nan")
    print(f"{'':28} {'colonynode':>12} {'dask':>10} {'ratio':>8}")
    ratios = {}
    for label, key, higher_better in rows:
        theirs = dask[key] if dask else float("nan")
        ratio = ours[key] / theirs if dask else float("nan")
        ratios[key] = ratio
        better = "(higher is better)" if higher_better else ""
        print(f"{label:28} {ours[key]:12.1f} {theirs:10.1f} {ratio:7.2f}x {better}")
    for phase in ("map", "sequential"):
        mine = ours["cpu_ms_per_call"][phase]
        theirs = dask["cpu_ms_per_call"][phase] if dask else {}
        ratio = f"{mine['all'] / theirs['all']:7.2f}x" if dask else ""
        label = f"CPU ms a call, {phase}"
        print(f"{label:28} {mine['all']:12.2f} {theirs.get('all', nan):10.2f} {ratio}")
        for name in ("daemons", "executors", "workers", "client"):
            if name in mine or name in theirs:
                cells = [f"{x[name]:.2f}" if name in x else "-" for x in (mine, theirs)]
                print(f"{'  ' + name:28} {cells[0]:>12} {cells[1]:>10}")
    for n, per_s in ours["curve_per_s"].items():
        print(f"colonynode, {n} node(s): {per_s:.1f} calls/s ({args.curve_calls} calls)")
    print(json.dumps({"calls": args.calls, "sequential": args.sequential,
                      "concurrency": args.concurrency, "colonynode": ours, "dask": dask,
                      "ratio_colonynode_to_dask": ratios}))  # fmt: skip


if __name__ == "__main__":
    main()
