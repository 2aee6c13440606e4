"""Crons without a leader (DESIGN.md §12): every tick fires once, whichever nodes are up.

A cron's definition is a signed gossip record (kind ``cron``), registered with the
voters like a process (pid = cron id, never claimed: no executor is offered it), so a
majority holds it before `cron add` answers and every voter's gossip carries it on. A
removal is a gossip record too (``cron-removed``), from any member with the submitter
role, as any colony member may remove a cron in ColonyOS.

Firing. A tick is the cron's scheduled moment (core/cron.py), the same on every node.
Its workflow's process ids, graph id and submission time are functions of (cron id,
tick), and its registers carry the tick (`ProcessTerms.tick`): voters take the first
submission of each and answer any later one for the same tick as done, so however many
members fire a tick, it is one graph, and each of its processes runs as any process
does (epoch-fenced, committed once). Which member fires: every node that is up and has
the submitter role, in the order of a rendezvous hash of (tick, node) among those
connected, FIRE_STAGGER_S apart; a node that has heard the tick fired does not fire it.
A node fires only the latest due tick of a cron, so a colony that was down for many
ticks fires once on its return, not once per missed tick.

`waitforprevprocessgraph`: the tick is left unfired while the previous graph (the
latest fired before it, in this node's view) has an open process; if that graph closes
before the next tick is due, the tick fires late, else it is skipped. The roots of each
new graph get the previous graph's leaves' outputs as input (in this node's view when it
fires: members that race on a tick may see different outputs; the first submission a
voter took stands).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from colonynode.consensus import requests as lrq
from colonynode.consensus.messages import ProcessTerms, Reason
from colonynode.core.codec import encode
from colonynode.core.cron import Schedule, parse_schedule
from colonynode.core.envelope import Envelope
from colonynode.core.errors import ColonyError, ValidationError
from colonynode.core.ids import NodeId, peer_id_str
from colonynode.core.process import FunctionSpec, parse_workflow, spec_to_json
from colonynode.node.core.errors import NotAcknowledged, NotFound, PermissionDenied

if TYPE_CHECKING:
    from colonynode.node.core.nodecore import NodeCore

__all__ = [
    "CRON_KIND",
    "CRON_REMOVED_KIND",
    "Cron",
    "Crons",
    "hold_definition",
    "may_submit",
    "turn_of",
]

CRON_KIND = "cron"
CRON_REMOVED_KIND = "cron-removed"
CRONID_BYTES = 16
CRONS_MAX = 10_000  # definitions a node keeps; more are refused (add) or dropped (gossip)
EARLY_MAX = 10_000  # tick records held for crons whose definition has not come yet
FIRED_KEEP_MAX = 16  # fired ticks remembered a cron (the latest decide)
FIRE_STAGGER_S = 0.5  # between the members' turns to fire a tick
STAGGER_RANKS_MAX = 8  # a node further down the order waits no longer than this many turns
REPLAN_S_MAX = 30.0  # re-read the wall clock at least this often (it may jump)
NAME_MAX = 256
FIELDS = frozenset(("cronid", "name", "cronexpression", "interval", "random",
                    "waitforprevprocessgraph", "workflowspec", "created_ns"))  # fmt: skip
_S_NS = 10**9


def tick_id(cronid: bytes, tick_ns: int, what: str = "") -> bytes:
    """The 16-byte id of a tick's graph (`what` ""), tick key (``tick``) or step."""
    data = b"colonynode/cron-tick\0" + cronid + tick_ns.to_bytes(8, "big") + what.encode()
    return hashlib.sha256(data).digest()[:16]


@dataclass
class Cron:
    cronid: bytes
    name: str
    author: NodeId | None
    created_ns: int
    schedule: Schedule
    specs: tuple[FunctionSpec, ...]
    body: dict[str, Any]  # the record, for `cron get`
    fired: dict[int, tuple[str, tuple[bytes, ...]]] = field(default_factory=dict)  # tick -> graph

    def last_fired(self, before_ns: int | None = None) -> tuple[int, str, tuple[bytes, ...]] | None:
        ticks = [t for t in self.fired if before_ns is None or t < before_ns]
        if not ticks:
            return None
        t = max(ticks)
        return (t, *self.fired[t])


def may_submit(core: NodeCore) -> None:
    """Refuse a request this node may not make: it lacks the submitter role."""
    if not core.membership.has_role(core.node_id, "submitter"):
        raise PermissionDenied("this node does not have the submitter role")


def turn_of(core: NodeCore, key: bytes, roles: tuple[str, ...] = ("submitter",)) -> int:
    """This node's place in the order the connected members with `roles` act on `key`
    in (a rendezvous hash); STAGGER_RANKS_MAX at most."""
    me = core.node_id
    up = core.links.connected
    roster = core.membership.roster
    firers = [m.node_id for m in (roster.members if roster else ())
              if (m.node_id == me or m.node_id in up) and set(roles) <= set(m.roles)]  # fmt: skip
    ranked = sorted(firers, key=lambda n: hashlib.sha256(key + bytes(n)).digest())
    return min(ranked.index(me), STAGGER_RANKS_MAX) if me in ranked else STAGGER_RANKS_MAX


def hold_definition(
    core: NodeCore,
    pid: bytes,
    env: Envelope,
    seq: int,
    what: str,
    then: Callable[[ColonyError | None], None],
    *,
    maxretries: int = 0,
    series: bytes = b"",
) -> None:
    """Have the voters keep a signed record in a register no executor claims (no process
    view holds it); `then(None)` once a majority holds it durably, else the error. Kept
    for good, unless it is of a `series` (a generator's arg: compacted as its series'
    registers are, consensus/compaction.py)."""
    terms = ProcessTerms(pid, core.node_id, seq=seq, maxretries=maxretries, record=encode(env),
                         kept=not series, series=series)  # fmt: skip

    def done(event: Any) -> None:
        if event.acked:
            then(None)
        elif event.reason is Reason.COMPACTED:
            then(ColonyError(f"{what} was refused: the voters compacted records newer than "
                             "this node's clock; check the clock (NTP)"))  # fmt: skip
        else:
            then(ColonyError(f"{what} was not acknowledged by a majority of voters; try again"))

    core.lease(lrq.SubmitProcess(terms), done)


def initiator(core: NodeCore, author: NodeId | None) -> dict[str, str | None]:
    """Who added a cron or a generator, as ColonyOS names it (`initiatorid`, `-name`)."""
    member = core.membership.member(author) if author is not None else None
    return {"initiatorid": peer_id_str(author) if author is not None else None,
            "initiatorname": member.name if member is not None else None}  # fmt: skip


def check_definition(body: Any, what: str, fields: frozenset[str]) -> dict[str, Any]:
    """A definition record's body (a cron's, a generator's): an object of known fields
    with a name of 1 to NAME_MAX characters, or a ValidationError naming the field."""
    if not isinstance(body, dict):
        raise ValidationError(f"{what}: expected an object")
    unknown = sorted(set(body) - fields)
    if unknown:
        raise ValidationError(f"{what}.{unknown[0]}: unknown field")
    name = body.get("name")
    if not isinstance(name, str) or not name or len(name) > NAME_MAX:
        raise ValidationError(f"name: give a name of 1 to {NAME_MAX} characters")
    return body


def parse_cron(body: Any, cronid: bytes) -> tuple[Schedule, tuple[FunctionSpec, ...]]:
    """A cron record's schedule and workflow, or a ValidationError naming the field."""
    body = check_definition(body, "cron", FIELDS)
    interval = body.get("interval", -1)
    if not isinstance(interval, int | float) or isinstance(interval, bool):
        raise ValidationError("interval: expected a number of seconds")
    expression = body.get("cronexpression", "")
    if not isinstance(expression, str):
        raise ValidationError("cronexpression: expected a string")
    schedule = parse_schedule(expression, interval, body.get("random") is True, key=cronid)
    return schedule, tuple(parse_workflow(body.get("workflowspec")))


class Crons:
    """NodeCore's crons: definitions from gossip, the fired ticks it has heard of, and
    the timer that fires what is due."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        self.crons: dict[bytes, Cron] = {}
        self.removed: set[bytes] = set()
        self._tried: dict[bytes, int] = {}  # cron -> the latest tick this node fired
        self._timer_at_s: float | None = None
        self.started = False  # NodeCore's first tick starts the timer
        self._early: dict[bytes, list[tuple[dict[str, Any], bytes]]] = {}  # ticks before crons
        self.counters: dict[str, int] = dict.fromkeys(
            ("fired", "fired_elsewhere", "skipped_previous_running", "refused", "compacted"), 0
        )

    # -- what gossip tells --------------------------------------------------------------

    def on_record(self, author: NodeId | None, kind: str, body: Any) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("cronid"), str):
            return
        try:
            cronid = bytes.fromhex(body["cronid"])
        except ValueError:
            return
        if len(cronid) != CRONID_BYTES:  # (it names its ticks' series at the voters)
            return
        if kind == CRON_REMOVED_KIND:
            self.removed.add(cronid)
            self.crons.pop(cronid, None)
            self._early.pop(cronid, None)
        elif kind == CRON_KIND and cronid not in self.crons and cronid not in self.removed:
            if len(self.crons) >= CRONS_MAX:
                return
            try:
                schedule, specs = parse_cron(body, cronid)
            except ColonyError:
                return
            created = body.get("created_ns")
            if not isinstance(created, int):
                return
            self.crons[cronid] = Cron(cronid, str(body["name"]), author, created, schedule,
                                      specs, body)  # fmt: skip
            for early, pid in self._early.pop(cronid, ()):  # its ticks' records came first
                self.on_process(early, pid)
            self.replan()

    def on_process(self, body: dict[str, Any], pid: bytes) -> None:
        """A process record of a cron's graph (the book's first for its pid)."""
        try:
            cronid = bytes.fromhex(str(body.get("cronid")))
            tick, graph = int(body["tick_ns"]), str(body["processgraphid"])
        except (KeyError, ValueError, TypeError):
            return
        cron = self.crons.get(cronid)
        if cron is None:  # gossip's order: held until the cron's record comes
            if cronid not in self.removed and sum(map(len, self._early.values())) < EARLY_MAX:
                self._early.setdefault(cronid, []).append((body, pid))
            return
        _, pids = cron.fired.get(tick, (graph, ()))
        cron.fired[tick] = (graph, (*pids, pid))
        while len(cron.fired) > FIRED_KEEP_MAX:
            del cron.fired[min(cron.fired)]

    # -- firing ---------------------------------------------------------------------------

    def replan(self) -> None:
        """Wake when the next cron is due (or a member's turn to fire comes)."""
        core = self.core
        if not self.started:
            return
        now_s, now_ns = core.now_s, core.unix_ns()
        at_s = now_s + REPLAN_S_MAX
        for cron in self.crons.values():
            due = cron.schedule.latest_due_ns(cron.created_ns, now_ns)
            if due is not None and self._wants(cron, due):
                turn_ns = due + int(self._turn(cron, due) * FIRE_STAGGER_S * _S_NS)
                at_s = min(at_s, now_s + max(0, turn_ns - now_ns) / _S_NS)
            nxt = cron.schedule.next_ns(cron.created_ns, now_ns)
            at_s = min(at_s, now_s + (nxt - now_ns) / _S_NS)
        if self._timer_at_s is not None and self._timer_at_s <= at_s:
            return
        self._timer_at_s = at_s
        core.at(at_s, self._on_timer)

    def _on_timer(self, now_s: float) -> None:
        if self._timer_at_s is not None and now_s < self._timer_at_s:
            return  # an earlier plan's timer: a later one is set
        self._timer_at_s = None
        now_ns = self.core.unix_ns()
        for cron in list(self.crons.values()):
            due = cron.schedule.latest_due_ns(cron.created_ns, now_ns)
            if due is None or not self._wants(cron, due):
                continue
            if now_ns >= due + int(self._turn(cron, due) * FIRE_STAGGER_S * _S_NS):
                self.fire(cron, due, then=None)
        self.replan()

    def _wants(self, cron: Cron, tick_ns: int) -> bool:
        if tick_ns in cron.fired:
            return False
        if self._tried.get(cron.cronid, -1) >= tick_ns:
            return False
        core = self.core
        if not core.membership.has_role(core.node_id, "submitter"):
            return False
        if cron.body.get("waitforprevprocessgraph") is True and self._previous_open(cron, tick_ns):
            self.counters["skipped_previous_running"] += 1
            return False
        return True

    def _previous_open(self, cron: Cron, tick_ns: int) -> bool:
        last = cron.last_fired(before_ns=tick_ns)
        if last is None:
            return False
        book = self.core.book
        for pid in last[2]:
            view = book.get(pid)
            if view is None or view["state"] not in ("SUCCESS", "FAILED", "CANCELLED"):
                return True
        return False

    def _turn(self, cron: Cron, tick_ns: int) -> int:
        """This node's place in the order the connected submitters fire this tick in."""
        return turn_of(self.core, tick_id(cron.cronid, tick_ns, "turn"))

    def fire(
        self,
        cron: Cron,
        tick_ns: int,
        then: Callable[[ColonyError | None, list[dict[str, Any]]], None] | None,
    ) -> bytes:
        """Submit the tick's graph (ids from the tick); returns the graph id."""
        from colonynode.node.core.service import submit_graph

        self._tried[cron.cronid] = max(self._tried.get(cron.cronid, -1), tick_ns)
        graph = tick_id(cron.cronid, tick_ns)
        pids = {s.nodename: tick_id(cron.cronid, tick_ns, s.nodename) for s in cron.specs}
        if self.core.config.planted_bug == "cron_own_ids":  # the simulator's checkers' test
            graph, pids = self.core.rng.randbytes(16), {s.nodename: self.core.rng.randbytes(16)
                                                         for s in cron.specs}  # fmt: skip
        root_input = self._previous_output(cron, tick_ns)

        def done(error: ColonyError | None, views: list[dict[str, Any]]) -> None:
            if isinstance(error, NotAcknowledged) and error.reason == Reason.COMPACTED.name:
                self.counters["compacted"] += 1  # a later tick ran and was compacted: this
            elif error is not None:  # one is past (the voters' series horizon), not retried
                self.counters["refused"] += 1
                if self._tried.get(cron.cronid) == tick_ns:
                    self._tried[cron.cronid] = tick_ns - 1  # try again on the next wake
            if then is not None:
                then(error, views)

        fresh = tick_ns not in cron.fired
        submit_graph(self.core, cron.specs, graph, pids, tick_ns, done,
                     extra={"cronid": cron.cronid.hex(), "tick_ns": tick_ns},
                     root_input=root_input, tick=tick_id(cron.cronid, tick_ns, "tick"),
                     series=cron.cronid)  # fmt: skip
        self.counters["fired" if fresh else "fired_elsewhere"] += 1
        return graph

    def _previous_output(self, cron: Cron, tick_ns: int) -> list[Any]:
        last = cron.last_fired(before_ns=tick_ns)
        if last is None:
            return []
        leaves = {s.nodename for s in cron.specs} - {
            d for s in cron.specs for d in s.conditions.dependencies
        }
        out: list[Any] = []
        for s in cron.specs:
            if s.nodename in leaves:
                view = self.core.book.get(tick_id(cron.cronid, last[0], s.nodename))
                out.extend((view or {}).get("output") or [])
        return out

    # -- requests -----------------------------------------------------------------------

    def add(
        self,
        body: dict[str, Any],
        then: Callable[[ColonyError | None, dict[str, Any] | None], None],
    ) -> None:
        """Validate, publish and register a definition; `then` once a majority holds it."""
        core = self.core
        may_submit(core)
        if len(self.crons) >= CRONS_MAX:
            raise ColonyError(f"this colony has {CRONS_MAX} crons; remove some first")
        cronid = core.rng.randbytes(CRONID_BYTES)
        record = {**body, "cronid": cronid.hex(), "created_ns": core.unix_ns()}
        _, specs = parse_cron(record, cronid)
        record["workflowspec"] = {"functionspecs": [spec_to_json(s) for s in specs]}
        env = core.publish(CRON_KIND, record)
        self.on_record(core.node_id, CRON_KIND, record)

        def held(error: ColonyError | None) -> None:
            cron = self.crons.get(cronid)
            then(error, None if error or cron is None else self.as_json(cron))

        hold_definition(core, cronid, env, record["created_ns"], f"cron {cronid.hex()}", held)

    def remove(self, cronid: bytes) -> None:
        core = self.core
        if cronid not in self.crons:
            raise NotFound(f"no cron {cronid.hex()} on this node")
        may_submit(core)
        core.publish(CRON_REMOVED_KIND, {"cronid": cronid.hex()})
        self.on_record(core.node_id, CRON_REMOVED_KIND, {"cronid": cronid.hex()})

    def get(self, cronid: bytes) -> Cron:
        cron = self.crons.get(cronid)
        if cron is None:
            raise NotFound(f"no cron {cronid.hex()} on this node (cron ls lists them)")
        return cron

    def as_json(self, cron: Cron) -> dict[str, Any]:
        from colonynode.node.core.processes import iso_time

        now_ns = self.core.unix_ns()
        body = cron.body
        last = cron.last_fired()
        return {
            "cronid": cron.cronid.hex(),
            "name": cron.name,
            "colonyname": self.core.colony(),
            "cronexpression": body.get("cronexpression", ""),
            "interval": body.get("interval", -1),
            "random": body.get("random") is True,
            "waitforprevprocessgraph": body.get("waitforprevprocessgraph") is True,
            "workflowspec": body.get("workflowspec"),
            "nextrun": iso_time(cron.schedule.next_ns(cron.created_ns, now_ns)),
            "lastrun": iso_time(last[0]) if last else None,
            "prevprocessgraphid": last[1] if last else None,
            **initiator(self.core, cron.author),
            "created": iso_time(cron.created_ns),
        }
