"""A generator's records, as NodeCore holds them (generators.py decides with them): a
definition and its packed args, the ids of a batch and of its decision register, what a
closed register's output or a root step becomes in a batch, and which of a generator's
registers the voters must keep (`pinned`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from colonynode.consensus.messages import State
from colonynode.consensus.register import Register
from colonynode.core.errors import ValidationError
from colonynode.core.ids import NodeId
from colonynode.core.process import FunctionSpec, parse_workflow
from colonynode.node.core.crons import check_definition

if TYPE_CHECKING:
    from colonynode.consensus.voter import VoterCore

__all__ = ["Arg", "Batch", "Generator", "batch_id", "batch_of", "decision_id", "listed",
           "parse_generator", "pinned", "step_ids", "with_args"]  # fmt: skip

TRIGGER_MAX = 1024
FIELDS = frozenset(("generatorid", "name", "workflowspec", "trigger", "timeout", "created_ns"))


def batch_id(generatorid: bytes, args: tuple[bytes, ...], what: str = "") -> bytes:
    data = b"colonynode/generator-batch\0" + generatorid + b"".join(args) + what.encode()
    return hashlib.sha256(data).digest()[:16]


def decision_id(generatorid: bytes, graph: bytes) -> bytes:
    """The register that settles which args batch `graph` used."""
    return batch_id(generatorid, (graph,), "decision")


def step_ids(generatorid: bytes, graph: bytes, steps: tuple[str, ...]) -> list[bytes]:
    """The process ids of batch `graph`'s workflow, one a step (by nodename)."""
    return [batch_id(generatorid, (graph,), name) for name in steps]


@dataclass(frozen=True, slots=True)
class Batch:
    """What an arg's close (or a batch's decision) says: the batch, the args it names,
    its `seq` (every register of the batch's has it: `at_ns`), and its steps' names."""

    graph: bytes
    args: tuple[bytes, ...]
    at_ns: int
    steps: tuple[str, ...]

    def output(self) -> dict[str, Any]:
        return {"batch": self.graph.hex(), "args": [p.hex() for p in self.args],
                "at": self.at_ns, "steps": list(self.steps)}  # fmt: skip


def batch_of(out: Any) -> Batch | None:
    """The batch a closed register's output names (None: not a batch's, or from before
    batches had a seq)."""
    if not isinstance(out, dict) or not isinstance(out.get("at"), int):
        return None
    try:
        graph = bytes.fromhex(str(out["batch"]))
        args = tuple(bytes.fromhex(str(h)) for h in out["args"])
        steps = tuple(str(name) for name in out["steps"])
    except (KeyError, ValueError, TypeError):
        return None
    return Batch(graph, args, int(out["at"]), steps)


def pinned(voter: VoterCore, reg: Register, now_s: float) -> bool:
    """Must the voter keep this register, and every later one of its generator
    (consensus/compaction.py, "Pins")? A generator's arg (a register of a series with no
    tick: crons' and batches' registers all have one) is pinned while claimed for a
    batch (a lease unexpired here) and, closed as batch B's, until the workflow that uses
    it is held here: B's once B's decision (closed here) lists it, else its follow-up
    batch's. So a recoverer can learn B from the arg until then, and B's decision and
    workflow, whose seq is above the series' horizon at the granting voters, are never
    refused COMPACTED here before they are held. Once its batch's seq is at or below the
    horizon here, its batch's registers were held and then dropped: no pin."""
    terms = reg.terms
    if not terms.series or terms.tick:
        return False
    if reg.state is State.RUNNING:
        return now_s < reg.expiry_s
    batch = batch_of(reg.output) if reg.closed else None
    gid = terms.series
    if batch is None or batch.at_ns <= voter.compaction.series.get(gid, -1):
        return False
    decision = voter.registers.get(decision_id(gid, batch.graph))
    if decision is None or not decision.closed:
        return True
    used = listed(decision.output, batch.graph) or ()
    graph = batch.graph if reg.pid in used else batch_id(gid, (batch.graph, reg.pid))
    return not all(pid in voter.registers for pid in step_ids(gid, graph, batch.steps))


@dataclass
class Arg:
    argid: bytes
    value: str
    packed_ns: int
    batch: str | None = None  # the graph that used it, once known
    used_s: float = 0.0  # since when it is known used (this node's clock)
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
    batch = batch_of(out)
    return batch.args if batch is not None and batch.graph == graph else None


def with_args(spec: FunctionSpec, values: list[str]) -> FunctionSpec:
    """A root step with the batch's args (ColonyOS replaces them, kwargs cleared)."""
    return replace(spec, args=tuple(values), kwargs={})
