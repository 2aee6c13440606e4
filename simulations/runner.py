"""Run seeds, build the report of each, and say how to replay a failure.

`run_seed(spec)` runs one seed and returns a `RunResult`; `RunResult.to_json()` is the
object `colonynode simulate --json` prints (one line per seed, sorted keys). Everything
in it except ``wall_s`` is a function of the spec: two runs of the same spec print the
same bytes but for that field.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from colonynode.core.errors import ColonyError
from colonynode.simulations.checkers import Violation
from colonynode.simulations.faults import resolve_profile
from colonynode.simulations.scenario import Metric, ParamValue, get_scenario
from colonynode.simulations.world import World

__all__ = [
    "SEEDS_MAX",
    "SEED_MAX",
    "RunResult",
    "RunSpec",
    "parse_seed_range",
    "run_seed",
    "run_seeds",
]

SEEDS_MAX = 100_000  # one command runs at most this many seeds
SEED_MAX = 2**63 - 1


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run."""

    scenario: str
    seed: int
    nodes: int | None = None  # None: the scenario's default
    faults: str = "seed"
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    safety_s: float | None = None  # None: the scenario's default
    liveness_s: float | None = None
    stop_on_violation: bool = True

    def replay_command(self, nodes: int) -> str:
        """The command line that runs this spec again."""
        parts = [
            "colonynode",
            "simulate",
            "--scenario",
            self.scenario,
            "--nodes",
            str(nodes),
            "--seed",
            str(self.seed),
            "--faults",
            self.faults,
        ]
        for name in sorted(self.params):
            value = self.params[name]
            text = str(value).lower() if isinstance(value, bool) else str(value)
            parts += ["--param", f"{name}={text}"]
        if self.safety_s is not None:
            parts += ["--safety-s", f"{self.safety_s:g}"]
        if self.liveness_s is not None:
            parts += ["--liveness-s", f"{self.liveness_s:g}"]
        return shlex.join(parts)


@dataclass
class RunResult:
    spec: RunSpec
    nodes: int
    simulated_s: float
    wall_s: float
    steps: int
    safety_s: float
    liveness_s: float
    converged_s: float | None
    violations: list[Violation]
    metrics: dict[str, Metric]
    fault_profile: dict[str, Any]
    samples: list[tuple[float, dict[str, float]]]
    main_series: str

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def replay(self) -> str:
        return self.spec.replay_command(self.nodes)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.spec.scenario,
            "seed": self.spec.seed,
            "nodes": self.nodes,
            "faults": self.spec.faults,
            "params": dict(sorted(self.spec.params.items())),
            "simulated_s": round(self.simulated_s, 6),
            "wall_s": round(self.wall_s, 3),
            "steps": self.steps,
            "safety_s": self.safety_s,
            "liveness_s": self.liveness_s,
            "violations": [
                {**v.to_json(), "seed": self.spec.seed, "replay": self.replay}
                for v in self.violations
            ],
            "metrics": self.metrics,
            "fault_profile": self.fault_profile,
        }

    def json_line(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(", ", ": "))

    def series(self, name: str | None = None) -> tuple[list[float], list[float]]:
        """(times, values) of a sampled figure; the scenario's main one by default."""
        key = name or self.main_series
        times = [t for t, figures in self.samples if key in figures]
        values = [figures[key] for _, figures in self.samples if key in figures]
        return times, values


def run_seed(spec: RunSpec) -> RunResult:
    """Run one seed of one scenario. Raises ColonyError for a spec that cannot run."""
    cls = get_scenario(spec.scenario)
    profile = resolve_profile(spec.faults, spec.seed)
    if not 0 <= spec.seed <= SEED_MAX:
        raise ColonyError(f"a seed is an integer in 0..{SEED_MAX}, not {spec.seed}")
    nodes = cls.default_nodes if spec.nodes is None else spec.nodes
    scenario = cls(spec.params)
    world = World(
        scenario,
        seed=spec.seed,
        nodes=nodes,
        profile=profile,
        safety_s=spec.safety_s,
        liveness_s=spec.liveness_s,
        stop_on_violation=spec.stop_on_violation,
    )
    started = time.perf_counter()
    world.run()
    wall_s = time.perf_counter() - started
    return RunResult(
        spec=spec,
        nodes=nodes,
        simulated_s=world.now_s,
        wall_s=wall_s,
        steps=world.step,
        safety_s=world.safety_s,
        liveness_s=world.liveness_s,
        converged_s=world.converged_s,
        violations=list(world.violations),
        metrics=world.metrics(),
        fault_profile=profile.to_json(),
        samples=world.samples,
        main_series=cls.main_series,
    )


def run_seeds(specs: Iterable[RunSpec]) -> Iterator[RunResult]:
    for spec in specs:
        yield run_seed(spec)


def parse_seed_range(text: str) -> range:
    """``A..B`` (inclusive) or a single ``A`` → a range of seeds."""
    head, sep, tail = text.strip().partition("..")
    try:
        first = int(head)
        last = int(tail) if sep else first
    except ValueError:
        raise ColonyError(f"--seeds takes A..B with integers A <= B, got {text!r}") from None
    if first < 0 or last < first or last > SEED_MAX:
        raise ColonyError(f"--seeds takes A..B with 0 <= A <= B, got {text!r}")
    if last - first + 1 > SEEDS_MAX:
        raise ColonyError(f"--seeds runs at most {SEEDS_MAX} seeds at once, got {text!r}")
    return range(first, last + 1)
