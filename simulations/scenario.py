"""Scenarios and their registry.

A scenario is a subclass of `Scenario` registered with `@register_scenario`. One instance
is made per run, with the run's parameters; the world calls it:

- `build(world)`: make the nodes (`world.add_nodes(core_factory, channel)`), add checkers
  (`world.add_checker`), start workloads. Called once, before time starts;
- `on_event(world, node, event)`: every event a core publishes (`Effects.events`);
- `on_liveness(world)`: when the liveness phase starts (`world.core_nodes` is set);
- `converged(world)`: probed during the liveness phase; True ends the run successfully;
- `liveness_detail(world)`: what is still missing, for the violation when time runs out;
- `metrics(world)`: the scenario's figures for the report (numbers or short strings);
- `sample(world)`: figures sampled once per simulated second (and once at the end), for
  the plot; a rate divides by `world.sample_interval_s`. The series named by
  `main_series` is the scenario's main figure.

Class attributes: `name`, `description`, `rank` (the CLI runs the highest-ranked scenario
when none is named: the most complete one), `default_nodes`, `safety_s`, `liveness_s`,
`params` (name → default; `--param name=value` overrides, typed like the default) and
`headline` (metric names the multi-seed table shows).

Scenario modules register when imported. Built-in ones are listed in `SCENARIO_MODULES`;
a protocol package adds its module there.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from colonynode.core.errors import ColonyError
from colonynode.core.ids import NodeId

if TYPE_CHECKING:
    from colonynode.simulations.node import SimNode
    from colonynode.simulations.world import World

__all__ = [
    "SCENARIO_MODULES",
    "Metric",
    "ParamValue",
    "Scenario",
    "default_scenario",
    "get_scenario",
    "load_scenarios",
    "parse_params",
    "random_node_id",
    "register_scenario",
    "scenarios",
]

ParamValue = bool | int | float | str
Metric = int | float | str | None

# Modules whose import registers the built-in scenarios, in order.
SCENARIO_MODULES: list[str] = [
    "colonynode.simulations.examples",
    "colonynode.simulations.claims_scenario",
    "colonynode.simulations.gossip_scenario",
    "colonynode.simulations.dht_scenario",
    "colonynode.simulations.fs_scenario",
    "colonynode.simulations.voters_scenario",
]

_REGISTRY: dict[str, type[Scenario]] = {}


def random_node_id(rng: random.Random, index: int) -> NodeId:
    """The default id factory: 32 bytes from the run's id stream."""
    return NodeId(rng.randbytes(32))


class Scenario:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    rank: ClassVar[int] = 0
    default_nodes: ClassVar[int] = 50
    safety_s: ClassVar[float] = 20.0
    liveness_s: ClassVar[float] = 30.0
    # The liveness phase heals a random majority (a minority may stay down for good, as
    # hosts do); a scenario whose promise is to every node (gossip: every node holds
    # every record) heals them all.
    heal_all: ClassVar[bool] = False
    params: ClassVar[Mapping[str, ParamValue]] = {}
    main_series: ClassVar[str] = ""
    headline: ClassVar[Sequence[str]] = ()

    def __init__(self, params: Mapping[str, ParamValue] | None = None) -> None:
        self.p: dict[str, ParamValue] = {**self.params, **(params or {})}

    def param_int(self, name: str) -> int:
        return int(self.p[name])

    def param_float(self, name: str) -> float:
        return float(self.p[name])

    def param_str(self, name: str) -> str:
        return str(self.p[name])

    # -- the hooks the world calls ------------------------------------------------------

    def build(self, world: World) -> None:
        raise NotImplementedError

    def make_node_id(self, rng: random.Random, index: int) -> NodeId:
        """Node `index`'s id, drawn from the run's id stream (called in index order).

        Override it to derive real Ed25519 keys from the seed (keep the secret keys on
        the scenario for the cores that sign)."""
        return random_node_id(rng, index)

    def size_of(self, msg: Any) -> int:
        """Bytes of one message on the wire, for the bandwidth model."""
        return 64

    def on_event(self, world: World, node: SimNode[Any], event: Any) -> None:
        return None

    def on_liveness(self, world: World) -> None:
        return None

    def converged(self, world: World) -> bool:
        return True

    def liveness_detail(self, world: World) -> str:
        return ""

    def metrics(self, world: World) -> dict[str, Metric]:
        return {}

    def sample(self, world: World) -> dict[str, float]:
        return {}


S = TypeVar("S", bound=type[Scenario])


def register_scenario(cls: S) -> S:
    """Class decorator: make a scenario runnable by name."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise ValueError(f"two scenarios are called {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


def load_scenarios() -> None:
    for module in SCENARIO_MODULES:
        importlib.import_module(module)


def scenarios() -> list[type[Scenario]]:
    """Every registered scenario, most complete first, then by name."""
    load_scenarios()
    return sorted(_REGISTRY.values(), key=lambda cls: (-cls.rank, cls.name))


def get_scenario(name: str) -> type[Scenario]:
    load_scenarios()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ColonyError(f"unknown scenario {name!r}: choose one of {known}") from None


def default_scenario() -> type[Scenario]:
    """The most complete scenario that exists (highest rank)."""
    found = scenarios()
    if not found:
        raise ColonyError("no scenario is registered")
    return found[0]


def _coerce(name: str, text: str, default: ParamValue) -> ParamValue:
    try:
        if isinstance(default, bool):
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        kind = {bool: "true or false", int: "an integer", float: "a number"}[type(default)]
        raise ColonyError(f"parameter {name} takes {kind}, got {text!r}") from None
    return text


def parse_params(cls: type[Scenario], items: Sequence[str]) -> dict[str, ParamValue]:
    """`name=value` strings → typed values, checked against the scenario's params."""
    out: dict[str, ParamValue] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ColonyError(f"--param takes name=value, got {item!r}")
        if name not in cls.params:
            known = ", ".join(sorted(cls.params)) or "none"
            raise ColonyError(f"scenario {cls.name} has no parameter {name!r} (it has: {known})")
        out[name] = _coerce(name, text, cls.params[name])
    return out
