"""The dht scenario at full size (issue #7): 1,000 nodes by default, 10,000 on request.

Each row is one seed of `colonynode simulate --scenario dht --faults none --nodes N` and
prints the figures the issue asks for, checked against its bars:

- lookup_hops_median <= 3 and lookup_hops_p99 <= 5 (sequential query rounds until the
  closest node is found);
- stale_reads == 0 (a value written then updated, read from every node, 20 % churn);
- lost_records == 0 (every record still found after 25 % of the nodes die).

    .venv/bin/python benchmarks/bench_dht.py                    # 1,000 nodes, seeds 1-2
    .venv/bin/python benchmarks/bench_dht.py --nodes 10000 --seeds 1

Exit status 1 when a run breaks a checker or misses a bar.
"""

from __future__ import annotations

import argparse
import sys

from colonynode.simulations.runner import RunResult, RunSpec, run_seed

FIGURES = (
    "lookup_hops_median",
    "lookup_hops_p99",
    "lookup_exact",
    "reads",
    "stale_reads",
    "empty_reads",
    "empty_reads_expired",
    "empty_reads_no_quorum",
    "empty_reads_held_near",
    "records_checked",
    "lost_records",
    "net_messages_sent",
    "steps",
)


def _missed(r: RunResult) -> list[str]:
    m = r.metrics
    out = []
    median, p99 = m.get("lookup_hops_median"), m.get("lookup_hops_p99")
    if not isinstance(median, float) or median > 3:
        out.append(f"lookup_hops_median {median} > 3")
    if not isinstance(p99, float) or p99 > 5:
        out.append(f"lookup_hops_p99 {p99} > 5")
    if m.get("stale_reads") != 0:
        out.append(f"stale_reads {m.get('stale_reads')}: {m.get('stale_example')}")
    if m.get("lost_records") != 0:
        out.append(f"lost_records {m.get('lost_records')}")
    out.extend(str(v) for v in r.violations)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=2, help="seeds 1..N")
    args = parser.parse_args()
    failed = False
    for seed in range(1, args.seeds + 1):
        r = run_seed(RunSpec("dht", seed=seed, nodes=args.nodes, faults="none"))
        row = "  ".join(f"{name}={r.metrics.get(name)}" for name in FIGURES)
        print(f"nodes={args.nodes} seed={seed} wall_s={r.wall_s:.1f}  {row}", flush=True)
        for miss in _missed(r):
            failed = True
            print(f"  MISSED: {miss}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
