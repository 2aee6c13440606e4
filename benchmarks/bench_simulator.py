"""How fast the simulator runs: 1,000 nodes of the example cores for 60 simulated seconds.

The issue's bar (#5): under 60 s of wall time on the 2-core CI machine. Each row runs one
seed of a scenario for exactly `--seconds` simulated seconds (safety phase only, faults
of the profile on) and prints the wall time, the steps (events that touched a node, a
fault or a workload) per wall second and the frames the network carried.

    .venv/bin/python benchmarks/bench_simulator.py
    .venv/bin/python benchmarks/bench_simulator.py --nodes 2000 --seconds 30 --faults chaos

Exit status 1 when a run breaks a checker or takes longer than `--budget-s`.
"""

from __future__ import annotations

import argparse
import sys

from colonynode.simulations.runner import RunSpec, run_seed

CASES = [
    # (scenario, faults, params): the example core at its defaults, the same with
    # five times the traffic, and the crash scenario with every fault on.
    ("ping", "lossy", {}),
    ("ping", "lossy", {"interval_s": 0.2}),
    ("echo-crash", "chaos", {}),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0, help="simulated seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--faults", default=None, help="one profile for every case")
    parser.add_argument("--budget-s", type=float, default=60.0, help="wall-time bar per run")
    args = parser.parse_args()

    print(
        f"{'scenario':<11} {'faults':<7} {'params':<16} {'nodes':>6} {'sim s':>6} "
        f"{'wall s':>7} {'steps':>9} {'steps/s':>9} {'frames':>9} {'sim/wall':>8}"
    )
    failed = False
    for scenario, faults, params in CASES:
        spec = RunSpec(
            scenario,
            seed=args.seed,
            nodes=args.nodes,
            faults=args.faults or faults,
            params=params,
            safety_s=args.seconds,
            liveness_s=0.0,
        )
        result = run_seed(spec)
        frames = int(result.metrics.get("net_sent") or 0)
        label = ",".join(f"{k}={v}" for k, v in params.items()) or "-"
        print(
            f"{scenario:<11} {spec.faults:<7} {label:<16} {result.nodes:>6} "
            f"{result.simulated_s:>6.1f} {result.wall_s:>7.2f} {result.steps:>9,} "
            f"{result.steps / result.wall_s:>9,.0f} {frames:>9,} "
            f"{result.simulated_s / result.wall_s:>7.1f}x"
        )
        for v in result.violations:
            print(f"  violation: {v}\n  replay: {result.replay}")
            failed = True
        if result.wall_s > args.budget_s:
            print(f"  over the budget: {result.wall_s:.1f} s > {args.budget_s:g} s")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
