"""Bounded state over time (issue 19): what a colony's voters and a node's process view
hold as processes keep coming, with and without compaction.

    .venv/bin/python benchmarks/bench_retention.py [--processes 200000] [--rate 500]
                                                    [--retention 60] [--every 20000]

Three voters (the real `ConsensusCore`s, each with its own in-memory store) and one
claimer, stepped by hand on the shared stepped network (simulations/stepped.py), and one
`ProcessBook` (a node's process view) fed each process's submission and closing record.
Simulated time runs at `--rate` processes a second. Every process is submitted,
claimed (in batches of 64) and closed SUCCESS: the whole life the voters see.

It runs twice: with voters keeping closed registers for `--retention` seconds (and the
view compacting after the same), and with compaction off (a retention, pressed or not,
longer than the run). Each prints, every `--every` processes: the registers the fullest
voter holds in memory and on its store, submissions refused, the view's entries and how
many are compacted, and the process's RSS. Without compaction the voters fill to their
REGISTERS_MAX (100,000) and refuse every submission after it (FULL).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from colonynode.consensus import ClaimerConfig, ConsensusCore, Outcome, ProcessTerms, Timing
from colonynode.consensus.compaction import Retention
from colonynode.consensus.events import Submitted
from colonynode.consensus.requests import ClaimLeases, CloseProcess, SubmitProcess
from colonynode.consensus.voter import REGISTERS_TABLE
from colonynode.core.ids import NodeId
from colonynode.node.core.processes import CLOSED_KIND, PROCESS_KIND, ProcessBook
from colonynode.simulations.stepped import SteppedNet
from colonynode.storage.memory import MemoryStore

BATCH = 64
T0_NS = 1_800_000_000 * 10**9
VOTERS, CLAIMER = (0, 1, 2), 3


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def nid(i: int) -> NodeId:
    return NodeId(bytes([i + 1]) * 32)


def spec_json(i: int) -> dict[str, Any]:
    return {"funcname": "work", "args": [i, "x" * 64], "kwargs": {"size": i},
            "conditions": {"executortype": "py"}}  # fmt: skip


def run(processes: int, rate: float, retention: Retention, every: int) -> dict[str, Any]:
    timing = Timing(drift=0.001, margin_s=0.05)
    ids = [nid(i) for i in range(4)]

    def make(i: int, store: MemoryStore, incarnation: int) -> ConsensusCore:
        return ConsensusCore(ids[i], store, random.Random(i), voters=tuple(ids[:3]),
                             config=ClaimerConfig(lease_s=10.0), timing=timing,
                             retention=retention)  # fmt: skip

    net = SteppedNet(ids, make)
    book = ProcessBook()
    refused = 0
    started = time.perf_counter()
    print(f"{'processes':>10} {'sim s':>7} {'registers':>10} {'stored':>8} {'refused':>8} "
          f"{'view':>8} {'compacted':>10} {'RSS MiB':>8}")  # fmt: skip
    for first in range(0, processes, BATCH):
        pids = [f"{i:016x}".encode() for i in range(first, min(first + BATCH, processes))]
        now_ns = T0_NS + int(net.t * 1e9)
        for k, pid in enumerate(pids):
            terms = ProcessTerms(pid, ids[CLAIMER], seq=now_ns + k)
            net.call(CLAIMER, lambda c, t, terms=terms: c.request(t, SubmitProcess(terms)))
            body = {
                "processid": pid.hex(),
                "spec": spec_json(first + k),
                "submission_ns": now_ns + k,
            }
            book.on_record(ids[CLAIMER], PROCESS_KIND, body, net.t)
        net.deliver()
        acked = [e.pid for e in net.events(CLAIMER, Submitted) if e.acked]
        refused += len(pids) - len(acked)
        if acked:
            net.call(CLAIMER, lambda c, t, a=tuple(acked): c.request(t, ClaimLeases(a)))
            net.deliver()
            end_ns = T0_NS + int(net.t * 1e9)
            for pid in acked:
                close = CloseProcess(pid, Outcome.SUCCESS, [1])
                net.call(CLAIMER, lambda c, t, close=close: c.request(t, close))
                body = {"processid": pid.hex(), "state": "SUCCESS", "output": [1], "end_ns": end_ns}
                book.on_record(ids[CLAIMER], CLOSED_KIND, body, net.t)
            net.deliver()
        net.advance(len(pids) / rate)
        net.deliver()
        book.compact(T0_NS + int(net.t * 1e9), retention.retention_s)
        for events in net.node_events:  # what a daemon's driver hands on and forgets
            events.clear()
        net.sent.clear()
        done = first + len(pids)
        if done % every < BATCH or done == processes:
            held = max(len(net.core(v).voter.registers) for v in VOTERS)
            stored = max(sum(1 for _ in net.stores[v].scan(REGISTERS_TABLE)) for v in VOTERS)
            row = f"{done:>10,} {net.t:>7.0f} {held:>10,} {stored:>8,} {refused:>8,} "
            print(row + f"{len(book):>8,} {book.compacted:>10,} {rss_mib():>8.1f}", flush=True)
    held = max(len(net.core(v).voter.registers) for v in VOTERS)
    return {"registers": held, "refused": refused, "wall_s": time.perf_counter() - started}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--processes", type=int, default=200_000)
    ap.add_argument("--rate", type=float, default=500.0, help="processes per simulated second")
    ap.add_argument("--retention", type=float, default=60.0, help="seconds")
    ap.add_argument("--every", type=int, default=20_000)
    args = ap.parse_args()
    off_s = 10 * args.processes / args.rate  # longer than the run: nothing is compacted
    results = {}
    for label, retention in (("compaction on", Retention.of(args.retention)),
                             ("compaction off", Retention(off_s, off_s))):  # fmt: skip
        print(f"== {label}: retention {retention.retention_s:,.0f} s (pressed "
              f"{retention.pressed_s:,.0f} s), {args.rate:,.0f} processes/s")  # fmt: skip
        results[label] = run(args.processes, args.rate, retention, args.every)
    on, off = results["compaction on"], results["compaction off"]
    print(
        f"at the end: a voter holds {on['registers']:,} registers with compaction "
        f"({on['refused']:,} refused), {off['registers']:,} without ({off['refused']:,} "
        f"refused FULL); {on['wall_s']:.0f} s and {off['wall_s']:.0f} s of wall time"
    )


if __name__ == "__main__":
    main()
