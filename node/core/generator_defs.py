"""A generator's records, as NodeCore holds them (generators.py decides with them): a
definition and its packed args, the ids of a batch and of its decision register, and
what a closed register's output or a root step becomes in a batch."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from colonynode.core.errors import ValidationError
from colonynode.core.ids import NodeId
from colonynode.core.process import FunctionSpec, parse_workflow
from colonynode.node.core.crons import check_definition

__all__ = ["Arg", "Generator", "batch_id", "decision_id", "listed", "parse_generator",
           "with_args"]  # fmt: skip

TRIGGER_MAX = 1024
FIELDS = frozenset(("generatorid", "name", "workflowspec", "trigger", "timeout", "created_ns"))


def batch_id(generatorid: bytes, args: tuple[bytes, ...], what: str = "") -> bytes:
    data = b"colonynode/generator-batch\0" + generatorid + b"".join(args) + what.encode()
    return hashlib.sha256(data).digest()[:16]


def decision_id(generatorid: bytes, graph: bytes) -> bytes:
    """The register that settles which args batch `graph` used."""
    return batch_id(generatorid, (graph,), "decision")


@dataclass
class Arg:
    argid: bytes
    value: str
    packed_ns: int
    batch: str | None = None  # the graph that used it, once known
    unknown_until_s: float = 0.0  # the voters did not know it (not acknowledged yet)
    arrived_s: float = 0.0  # when this node heard of it (its own clock)


@dataclass
class Generator:
    generatorid: bytes
    name: str
    author: NodeId | None
    trigger: int
    timeout_s: float
    specs: tuple[FunctionSpec, ...]
    body: dict[str, Any]
    args: dict[bytes, Arg] = field(default_factory=dict)
    graphs: list[str] = field(default_factory=list)  # batches heard of, oldest first
    graph_args: dict[str, frozenset[bytes]] = field(default_factory=dict)  # what each used

    def open_args(self, now_s: float = 0.0) -> list[Arg]:
        """Args not used yet, in pack order (the packer's clock, then the id); those the
        voters did not know a moment ago are left out for a while."""
        return sorted((a for a in self.args.values()
                       if a.batch is None and a.unknown_until_s <= now_s),
                      key=lambda a: (a.packed_ns, a.argid))  # fmt: skip


def parse_generator(body: Any) -> tuple[int, float, tuple[FunctionSpec, ...]]:
    body = check_definition(body, "generator", FIELDS)
    trigger = body.get("trigger")
    if not isinstance(trigger, int) or isinstance(trigger, bool) or not 1 <= trigger <= TRIGGER_MAX:
        raise ValidationError(f"trigger: a whole number of args from 1 to {TRIGGER_MAX}")
    timeout = body.get("timeout", -1)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout == 0:
        raise ValidationError("timeout: seconds > 0 (or -1: wait for trigger args)")
    specs = tuple(parse_workflow(body.get("workflowspec")))
    return trigger, float(timeout), specs


def listed(out: Any, graph: bytes) -> tuple[bytes, ...] | None:
    """The args a closed register's output gives batch `graph`, if it is that batch's."""
    if not isinstance(out, dict) or out.get("batch") != graph.hex():
        return None
    try:
        return tuple(bytes.fromhex(str(h)) for h in out["args"])
    except (KeyError, ValueError, TypeError):
        return None


def with_args(spec: FunctionSpec, values: list[str]) -> FunctionSpec:
    """A root step with the batch's args (ColonyOS replaces them, kwargs cleared)."""
    return replace(spec, args=tuple(values), kwargs={})
