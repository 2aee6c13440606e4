"""colonynode.simulations: many nodes of the real protocol cores in one process (DESIGN.md §11).

A deterministic discrete-event simulator in the manner of TigerBeetle's VOPR: one integer
seed drives every random choice (network, faults, workload, clocks), so a failing seed
replays exactly. See docs/simulator.md; the public pieces a scenario uses:

- `Scenario`, `register_scenario`: define and register a scenario;
- `World`: what `Scenario.build` gets (`add_nodes`, `add_checker`, `rng_for`, ...);
- `SimNode`: one node's driver (crash, restart, pause, resume, call);
- `SteppedNet`: the hand-stepped network of the cores' unit tests (simulations/stepped.py);
- `Checker`, `BaseChecker`, `Violation`: invariants checked after every step;
- `Workload`, `WorkloadConfig`, `SimExecutor`, `Job`, `Fate`: submissions and executors;
- `FaultProfile`, `LinkModel`, `PROFILES`: the fault model;
- `RunSpec`, `RunResult`, `run_seed`: run one seed and get its report.

Importing this package imports no I/O library and never reads the wall clock for a
simulation decision (the runner times the run with `time.perf_counter`, for `wall_s`).
"""

from colonynode.simulations.checkers import BaseChecker, Checker, NetworkSanity, Violation
from colonynode.simulations.engine import EventQueue, NodeClock
from colonynode.simulations.faults import PROFILES, FaultProfile, resolve_profile
from colonynode.simulations.network import LinkModel, SimNetwork, SimTransport
from colonynode.simulations.node import SimNode, always_sync
from colonynode.simulations.runner import RunResult, RunSpec, run_seed, run_seeds
from colonynode.simulations.scenario import (
    SCENARIO_MODULES,
    Scenario,
    default_scenario,
    get_scenario,
    register_scenario,
    scenarios,
)
from colonynode.simulations.stepped import SteppedNet
from colonynode.simulations.workload import Fate, Job, SimExecutor, Workload, WorkloadConfig
from colonynode.simulations.world import World

__all__ = [
    "PROFILES",
    "SCENARIO_MODULES",
    "BaseChecker",
    "Checker",
    "EventQueue",
    "Fate",
    "FaultProfile",
    "Job",
    "LinkModel",
    "NetworkSanity",
    "NodeClock",
    "RunResult",
    "RunSpec",
    "Scenario",
    "SimExecutor",
    "SimNetwork",
    "SimNode",
    "SimTransport",
    "SteppedNet",
    "Violation",
    "Workload",
    "WorkloadConfig",
    "World",
    "always_sync",
    "default_scenario",
    "get_scenario",
    "register_scenario",
    "resolve_profile",
    "run_seed",
    "run_seeds",
    "scenarios",
]
