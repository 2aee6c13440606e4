"""NodeCore: the node's one decision-maker, sans-IO (DESIGN.md §2, §10; docs/architecture.md).

It composes the protocol cores (gossip, DHT, the lease quorum) and owns what the node
decides on top of them: membership and the roster (colony.py), the process view
(processes.py), the scheduler and executor slots (scheduler.py, runs.py), and the
answers to what the API and executors ask (service.py). The etcd-raft / h11 shape:

    core.on_message(now_s, sender, msg)   # a message of any channel (`channel_of`)
    core.on_tick(now_s)                   # at `Effects.wake_at_s`
    core.set_connected(now_s, peers)      # the members and others connected now
    rid = core.request(now_s, req)        # requests.py; answered by Answer(rid, ...)
    core.forget(now_s, rid)               # the caller went away
    effects = core.take_effects()         # persist writes, then send, then events

Within a step, what one part does can make another act (a grant hands a process to an
executor, which publishes a gossip record): `take_effects` pumps the protocol cores
until none has anything new, so one step's writes, sends and answers leave in one
batch, persisted before anything of it is sent. Times are this node's monotonic
`now_s`; wall-clock times for people (submission times, invites) come from the
injected `unix_ns`. Randomness comes from the injected `rng` only: the simulator runs
this very class, seed for seed.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from colonynode.consensus import events as lev
from colonynode.consensus import messages as lm
from colonynode.consensus import requests as lrq
from colonynode.consensus.claimer import ClaimerConfig
from colonynode.consensus.compaction import Retention
from colonynode.consensus.handover import VoterSet
from colonynode.consensus.lease import ConsensusCore
from colonynode.consensus.messages import CODEC as LEASE_CODEC
from colonynode.consensus.register import Timing
from colonynode.core.effects import BEFORE_ALL, LAZY, Effects, Write
from colonynode.core.envelope import Envelope
from colonynode.core.errors import ColonyError
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId, peer_id_str
from colonynode.core.process import FunctionSpec
from colonynode.core.process import parse_spec as parse_process_spec
from colonynode.dht import CODEC as DHT_CODEC
from colonynode.dht import DhtConfig, DhtCore, Dial
from colonynode.gossip import GossipConfig, GossipCore
from colonynode.gossip.core import OpenBody, Verify
from colonynode.gossip.events import Accepted
from colonynode.gossip.messages import CODEC as GOSSIP_CODEC
from colonynode.gossip.records import open_body
from colonynode.node.core import colony, generator_defs, service, waits
from colonynode.node.core.announce import Announcements
from colonynode.node.core.certs import HeldCloses, certified_body
from colonynode.node.core.crons import CRON_KIND, Crons
from colonynode.node.core.fs import FS_KIND, FsIndex
from colonynode.node.core.generators import GENERATOR_KIND, Generators
from colonynode.node.core.membership import Membership
from colonynode.node.core.messages import ROSTER_CODEC
from colonynode.node.core.processes import LOG_KIND, PROCESS_KIND, RETENTION_S, ProcessBook
from colonynode.node.core.requests import Answer, Request
from colonynode.node.core.requests import Dial as DialNotice
from colonynode.node.core.scheduler import Scheduler
from colonynode.node.core.voters_auto import AutoVoters
from colonynode.node.core.vouch import VOUCH_KIND, Vouches, envelope_of
from colonynode.storage.api import Store

__all__ = ["CHANNELS", "EARLY", "NodeConfig", "NodeCore", "channel_of"]

PUMP_ROUNDS_MAX = 64  # rounds of one take_effects; more means parts keep waking each other
TIMERS_MAX = 200_000  # pending timers (long-polls, rounds, sweeps)
CALLBACKS_MAX = 200_000  # lease and DHT requests in flight for this node's own purposes
COMPACT_EVERY_S = 60.0  # how often the process view compacts what closed past its retention

CHANNELS: dict[type, str] = {}
for _name, _codec in (
    ("gossip", GOSSIP_CODEC),
    ("dht", DHT_CODEC),
    ("lease", LEASE_CODEC),
    ("roster", ROSTER_CODEC),
):
    for _cls in _codec.message_types():
        CHANNELS[_cls] = _name


def channel_of(msg: Any) -> str:
    """The channel (protocol) a message of NodeCore travels on."""
    return CHANNELS[type(msg)]


# A claimer's requests that carry nothing this node must hold durably first: a voter
# decides them on its own; this node's own vote on them (it may be a voter too) counts
# only in a later turn, once its write is durable. They may leave before the writes of
# their turn are committed (docs/performance.md). A Submit carries this node's gossip
# record: it may leave early only while every own sequence number handed out lies below
# a reservation already durable (gossip/_ledger.py), so a crash before the commit never
# lets the number be used again; a Claim that follows a Submit to the same voter never
# passes it.
EARLY = frozenset({lm.Submit, lm.Claim, lm.Renew, lm.Close, lm.Release, lm.Cancel, lm.Expire,
                   lm.Read})  # fmt: skip


@dataclass(frozen=True)
class NodeConfig:
    """How one node runs (the daemon's and the simulator's differ only here)."""

    name: str = ""  # this node's name until a roster names it
    colony: str = ""  # the colony, until a roster says
    bootstrap: tuple[str, ...] = ()  # addresses to dial when connected to nobody
    gossip: GossipConfig = field(default_factory=GossipConfig.lan)
    dht: DhtConfig = field(default_factory=DhtConfig)
    claimer: ClaimerConfig = field(default_factory=ClaimerConfig)
    timing: Timing = field(default_factory=Timing)
    retention: Retention = field(default_factory=Retention)  # of closed registers (voters)
    view_retention_s: float = RETENTION_S  # of closed processes' details in the view
    dial: bool = True  # plan dials (the simulator connects nodes itself)
    lease_s: float = 10.0  # the lease the scheduler claims for its executors' runs
    planted_bug: str = ""  # the simulator's checkers' tests only (consensus/voter.py)


class NodeCore:
    def __init__(
        self,
        identity: Identity,
        store: Store,
        rng: random.Random,
        *,
        unix_ns: Callable[[], int],
        config: NodeConfig | None = None,
        roster: Envelope | None = None,
        verify: Verify | None = None,
        open_record: OpenBody | None = None,
        parse_spec: Callable[[Any], FunctionSpec] | None = None,
    ) -> None:
        """`verify`, `open_record` and `parse_spec` check a record's signature, decode its
        body and parse a process spec (the simulator shares memos of them between its
        nodes: the same answers, computed once)."""
        self.identity = identity
        self.node_id = identity.node_id
        self.store = store
        self.rng = rng
        self.unix_ns = unix_ns
        self.config = config = config or NodeConfig()
        self.now_s = 0.0
        self._fx = Effects()
        self.counters: dict[str, int] = dict.fromkeys(
            ("refused_streams", "joins_refused", "requests", "answers", "non_member_messages",
             "closes_refused", "running_refused"), 0)  # fmt: skip
        self.membership = Membership.load(identity, store)
        self.held_closes = HeldCloses()  # certified by voters of a roster not here yet
        if roster is not None:
            self._fx.writes.extend(self.membership.offer(roster) or ())
        m = self.membership
        self.gossip = GossipCore(
            identity,
            store,
            random.Random(rng.getrandbits(64)),
            config.gossip,
            is_member=m.is_member,
            verify=verify,
            open_record=open_record,
            author_seq_max=m.author_seq_max,
        )
        # own sequence numbers below it were reserved by a turn already committed
        self._seqs_durable_below = self.gossip.ledger.reserved
        held = m.roster
        # (no roster yet: a set no roster's precedes, so the first one this node takes
        # applies, even the founder's v1)
        voters = VoterSet(held.voter_set_version(), held.voters) if held else VoterSet(0, ())
        self.consensus = ConsensusCore(
            self.node_id,
            store,
            random.Random(rng.getrandbits(64)),
            voters=voters,
            has_role=m.has_role,
            config=config.claimer,
            timing=config.timing,
            retention=config.retention,
            unix_ns=unix_ns,
            pinned=None if config.planted_bug == "generator_unpinned" else generator_defs.pinned,
            sign=identity.sign,
            planted_bug=config.planted_bug,
        )
        self.dht = DhtCore(
            self.node_id,
            store,
            random.Random(rng.getrandbits(64)),
            config.dht,
            identity=identity,
            is_member=m.is_member,
            may_write=lambda author, key: m.is_member(author),
        )
        self.book = ProcessBook(parse=parse_spec or parse_process_spec, me=self.node_id)
        self.crons = Crons(self)
        self.fs = FsIndex()
        self.vouches = Vouches(self)
        self.auto_voters = AutoVoters(self)
        self.generators = Generators(self)
        self.book.on_scheduled = self._scheduled_process
        self._load_processes()
        self.book.on_change = self._process_changed
        self.scheduler = Scheduler(self, self.book, lease_s=config.lease_s)
        self.announcements = Announcements(self, self.book, self.gossip,
                                           lambda: self._dirty.add("gossip"))  # fmt: skip
        self.links = colony.Links(self)
        self._cores: dict[str, Any] = {"gossip": self.gossip, "lease": self.consensus,
                                       "dht": self.dht}  # fmt: skip
        self._wakes: dict[str, float | None] = dict.fromkeys(self._cores, 0.0)
        self._dirty: set[str] = set()
        self._timers: list[tuple[float, int, Callable[[float], None]]] = []
        self._timer_seq = 0
        self._next_req = 0
        self._lease_cbs: dict[int, list[Any]] = {}  # request id -> [callback, answers left]
        self._dht_cbs: dict[int, Callable[[Any], None]] = {}
        self.waits: dict[bytes, list[waits.Wait]] = {}  # long-polls on a process
        self._claimers = 0
        self._started = False
        self.links.roster_changed()

    def _load_processes(self) -> None:
        """Rebuild the process view from the gossip records this node holds (a restart)."""
        gossip = self.gossip
        held: list[tuple[NodeId, int]] = []
        for author, hwm in sorted(gossip.digest().items()):
            held += [(author, seq) for seq in range(1, hwm + 1)]
        for author, ahead in sorted(gossip.ledger.ahead.items()):  # held past a gap
            held += [(author, seq) for seq in sorted(ahead)]
        later = []
        for author, seq in held:
            env = gossip.record(author, seq)
            if env is None:
                continue
            body = open_body(env)
            if body.kind.startswith(PROCESS_KIND):
                later.append((author, body, seq))
            elif body.kind.startswith(CRON_KIND):
                self.crons.on_record(author, body.kind, body.body)
            elif body.kind.startswith(GENERATOR_KIND):
                self.generators.on_record(author, body.kind, body.body)
            elif body.kind.startswith(FS_KIND):
                self.fs.on_record(author, body.kind, body.body)
            elif body.kind == VOUCH_KIND:  # (judged again: what it holds may be new)
                self.vouches.on_record(Accepted(author, seq, body.kind, body.body, env))
        for author, body, seq in later:  # after the crons: a tick's records name its cron
            taken = certified_body(self, author, body.kind, body.body)
            self.book.on_record(author, body.kind, taken, seq=seq)

    # -- stepping ---------------------------------------------------------------------

    def on_message(self, now_s: float, sender: NodeId, msg: Any) -> None:
        self.now_s = now_s
        name = CHANNELS.get(type(msg))
        if name == "roster":
            self.links.on_roster(sender, msg)  # a non-member may prove it is one now
        elif name is not None:
            if not self.membership.is_member(sender):
                # The transport lets only members reach these protocols; a message from
                # a non-member (a member just removed, a bug) is dropped here too.
                self.counters["non_member_messages"] += 1
                return
            self._cores[name].on_message(now_s, sender, msg)
            self._dirty.add(name)

    def on_tick(self, now_s: float) -> None:
        self.now_s = now_s
        if not self._started:
            self._started = True
            self.scheduler.start(now_s)
            self.links.start(now_s)
            self.auto_voters.start(now_s)
            self.crons.started = self.generators.started = True
            self.crons.replan()
            self.generators.replan()
            self.vouches.roster_changed()
            self.at(now_s + self._compact_every_s(), self._compact_view)
        for name, core in self._cores.items():
            wake = self._wakes[name]
            if wake is not None and wake <= now_s:
                core.on_tick(now_s)
                self._dirty.add(name)
        timers = self._timers
        while timers and timers[0][0] <= now_s:
            _, _, fn = heapq.heappop(timers)
            fn(now_s)

    def set_connected(self, now_s: float, peers: Collection[NodeId]) -> None:
        """The peers connected now (the driver calls it on every change)."""
        self.now_s = now_s
        self.links.set_connected(frozenset(peers))
        self.auto_voters.connected(now_s, peers)

    def set_addrs(self, now_s: float, addrs: Collection[str]) -> None:
        """This node's own full addresses (published in its signed /peer/ record)."""
        self.now_s = now_s
        self.links.set_addrs(tuple(addrs))

    def request(self, now_s: float, req: Request) -> int:
        """Start `req`; its answer is an `Answer` event with the returned id."""
        self.now_s = now_s
        self._next_req += 1
        rid = self._next_req
        self.counters["requests"] += 1
        try:
            service.HANDLERS[type(req)](self, rid, req)
        except ColonyError as exc:
            self.answer(rid, error=exc)
        return rid

    def forget(self, now_s: float, rid: int) -> None:
        """The caller of request `rid` went away: drop what waits for it."""
        self.now_s = now_s
        if self.scheduler.slots.forget(rid):
            return
        for pid, polls in list(self.waits.items()):
            kept = [w for w in polls if w.req != rid]
            if kept:
                self.waits[pid] = kept
            else:
                del self.waits[pid]

    def early_sends(self, sends: list[tuple[NodeId, Any]]) -> list[tuple[NodeId, Any]]:
        """The sends of the turn just taken that may leave before its commit (EARLY):
        Submits too while every own sequence number handed out lies below a reservation
        an earlier turn made durable. (The daemon's driver only; the simulator commits
        every batch before its sends.)"""
        if self.gossip.ledger.next_seq <= self._seqs_durable_below:
            return [(to, msg) for to, msg in sends if type(msg) in EARLY]
        held = {to for to, msg in sends if type(msg) is lm.Submit}
        return [(to, msg) for to, msg in sends if type(msg) in EARLY and to not in held]

    def take_effects(self) -> Effects:
        # What the last turn's writes reserved is durable before this turn's sends (a
        # reservation is an own write: never deferred, effects.py).
        self._seqs_durable_below = self.gossip.ledger.reserved_out
        for _ in range(PUMP_ROUNDS_MAX):
            self.announcements.publish()  # those of the step, and of the pumps' events
            if not self._dirty:
                break
            dirty, self._dirty = self._dirty, set()
            for name in ("gossip", "lease", "dht"):
                if name in dirty:
                    self._pump(name)
        else:
            raise AssertionError("NodeCore's parts keep waking each other")
        out, self._fx = self._fx, Effects(durability=LAZY)
        wake = self._timers[0][0] if self._timers else None
        for t in self._wakes.values():
            if t is not None and (wake is None or t < wake):
                wake = t
        out.wake_at_s = wake
        return out

    def _pump(self, name: str) -> None:
        fx = self._cores[name].take_effects()
        self._wakes[name] = fx.wake_at_s
        out = self._fx
        if fx.sends:
            out.sends.extend(fx.sends)
        if fx.writes:
            out.writes.extend(fx.writes)
            out.durability = max(out.durability, fx.durability)
        handle = _EVENTS[name]
        for event in fx.events:
            handle(self, event)

    def _compact_every_s(self) -> float:
        return min(COMPACT_EVERY_S, max(self.config.view_retention_s / 2, 1.0))

    def _compact_view(self, now_s: float) -> None:
        self.at(now_s + self._compact_every_s(), self._compact_view)
        self.book.compact(self.unix_ns(), self.config.view_retention_s)

    # -- what the parts use -----------------------------------------------------------

    def at(self, at_s: float, fn: Callable[[float], None]) -> None:
        """Call `fn(now_s)` at or after local time `at_s`."""
        if len(self._timers) >= TIMERS_MAX:
            raise ColonyError("too many timers pending on this node; try again")
        self._timer_seq += 1
        heapq.heappush(self._timers, (at_s, self._timer_seq, fn))

    def answer(self, req: int, value: Any = None, error: ColonyError | None = None) -> None:
        self.counters["answers"] += 1
        self._fx.events.append(Answer(req, value, error))

    def emit(self, event: Any) -> None:
        self._fx.events.append(event)

    def send(self, to: NodeId, msg: Any) -> None:
        self._fx.sends.append((to, msg))

    def write(self, writes: list[Write]) -> None:
        self._fx.writes.extend(writes)
        self._fx.durability = BEFORE_ALL

    def lease(self, req: lrq.Request, on_event: Callable[[Any], None]) -> None:
        """Ask the lease quorum; `on_event` gets every event answering it (one per pid
        for a claim)."""
        if len(self._lease_cbs) >= CALLBACKS_MAX:
            raise ColonyError("too many lease requests in flight; try again")
        answers = len(dict.fromkeys(req.pids)) if isinstance(req, lrq.ClaimLeases) else 1
        rid = self.consensus.request(self.now_s, req)
        self._lease_cbs[rid] = [on_event, answers]
        self._dirty.add("lease")

    def dht_call(
        self, start: Callable[[DhtCore, float], int], on_event: Callable[[Any], None]
    ) -> None:
        if len(self._dht_cbs) >= CALLBACKS_MAX:
            raise ColonyError("too many DHT requests in flight; try again")
        self._dht_cbs[start(self.dht, self.now_s)] = on_event
        self._dirty.add("dht")

    def publish(
        self,
        kind: str,
        body: Any,
        *,
        spec: FunctionSpec | None = None,
        reached: Collection[NodeId] = (),
    ) -> Envelope:
        """Sign and gossip a record of this node; a process record is in the view at once
        (`spec`: a submission's, parsed; `reached`: members that get it another way)."""
        env = self.gossip.publish(self.now_s, kind, body, reached=reached)
        self._dirty.add("gossip")
        if kind.startswith(PROCESS_KIND):
            seq = open_body(env).seq if kind == LOG_KIND else 0  # the view indexes logs
            self.book.on_record(self.node_id, kind, body, self.now_s, seq=seq, spec=spec)
        return env

    def announce(self, kind: str, item: dict[str, Any]) -> None:
        """A process's change for every member (announce.py)."""
        self.announcements.add(kind, item)

    def holds(self, pid: bytes) -> bool:
        return self.consensus.claimer.holds(pid, self.now_s)

    def claimers(self) -> int:
        return self.links.executor_members

    def claimer_ids(self) -> tuple[bytes, ...]:
        return self.links.executor_ids

    def touch(self, name: str) -> None:
        """A part changed a protocol core directly: take its effects this step."""
        self._dirty.add(name)

    # -- events of the protocol cores -------------------------------------------------

    def _on_gossip(self, event: Any) -> None:
        if isinstance(event, Accepted):
            if event.kind.startswith(PROCESS_KIND):
                if not event.local:  # our own were taken when published
                    body = certified_body(self, event.author, event.kind, event.body)
                    self.book.on_record(event.author, event.kind, body, self.now_s, seq=event.seq)
            elif event.kind.startswith(CRON_KIND):
                if not event.local:
                    self.crons.on_record(event.author, event.kind, event.body)
            elif event.kind.startswith(GENERATOR_KIND):
                if not event.local:
                    self.generators.on_record(event.author, event.kind, event.body)
            elif event.kind.startswith(FS_KIND):
                if not event.local:
                    self.fs.on_record(event.author, event.kind, event.body)
            elif event.kind == VOUCH_KIND:
                self.vouches.on_record(event)
            else:
                self.links.on_record(event)

    def take_record(self, event: Accepted) -> None:
        """A record that came another way than gossip (a voter's vouch: vouch.py)."""
        self._on_gossip(event)

    def _on_lease(self, event: Any) -> None:
        for rid in getattr(event, "reqs", ()):
            entry = self._lease_cbs.get(rid)
            if entry is None:
                continue
            entry[1] -= 1  # a claim's id answers one event per pid
            if entry[1] <= 0:
                del self._lease_cbs[rid]
            entry[0](event)
        if isinstance(event, lev.LeaseEnded) and not self.generators.owns(event.pid):
            self.scheduler.on_lease_ended(event)  # (a packed arg's is no run's)
        elif isinstance(event, lev.Registered) and event.terms.record:
            self._keep_submission(event.terms.record)
        elif isinstance(event, lev.Compacted):
            self.scheduler.closing.compacted(event.pids, event.views, event.certs)
        self._fx.events.append(event)  # for the simulator's checkers

    def _keep_submission(self, record: bytes) -> None:
        """This voter took a register: it holds the submission's gossip record too
        (persisted with the register, before its acknowledgement is sent)."""
        env = envelope_of(record)
        if env is None:
            return  # a submitter that sent no valid record: the register stands alone
        # Every voter got it in its own Submit: relays to them are duplicates.
        if self.gossip.publish_envelope(self.now_s, env, reached=self.consensus.voters()) == (
            "accepted"
        ):
            self._dirty.add("gossip")

    def _on_dht(self, event: Any) -> None:
        if isinstance(event, Dial):
            if self.config.dial:
                for addr in event.addrs[:2]:
                    full = addr if "/p2p/" in addr else f"{addr}/p2p/{peer_id_str(event.node_id)}"
                    self._fx.events.append(DialNotice(full))
            return
        rid = getattr(event, "req_id", None)
        cb = None if rid is None else self._dht_cbs.pop(rid, None)
        if cb is not None:
            cb(event)

    def _scheduled_process(self, body: dict[str, Any], pid: bytes) -> None:
        """The first record of a process a cron or a generator started."""
        if "cronid" in body:
            self.crons.on_process(body, pid)
        if "generatorid" in body:
            self.generators.on_process(body, pid)

    def _process_changed(self, pid: bytes) -> None:
        self.scheduler.wake(pid)
        if pid in self.waits:
            waits.wake_waits(self, pid)

    # -- queries ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What this node knows of itself (the daemon adds its transport's figures)."""
        m = self.membership
        roster = m.roster
        me = m.member(self.node_id)
        return {
            "peer_id": self.identity.peer_id,
            "name": me.name if me else self.config.name,
            "colony": roster.colony if roster else self.config.colony,
            "owner": m.is_owner,
            "roster_version": roster.version if roster else 0,
            "members": len(roster.members) if roster else 0,
            "member": me is not None,
            "voter": m.has_role(self.node_id, "voter"),
            "roles": list(me.roles) if me else [],
            "gossip": self.gossip.stats(),
            "dht": {
                **self.dht.stats,
                "joined": self.dht.joined,
                "found_peer_addrs": self.links.found_addrs,
            },
            "scheduler": {
                "executors": len(self.scheduler.executors),
                "idle_slots": self.scheduler.slots.idle_wants(),
                **self.scheduler.counters,
            },
            "crons": {"defined": len(self.crons.crons), **self.crons.counters},
            "generators": {"defined": len(self.generators.generators), **self.generators.counters},
            "voters_auto": self.auto_voters.status(),
            "retention": self._retention_status(),
            "links": self.links.status(),
            "fs": {
                "labels": len(self.fs.labels),
                "snapshots": len(self.fs.snapshots),
                **self.fs.counters,
            },
            "certs": {
                "closes_refused": self.counters["closes_refused"],  # (certs.py)
                "running_refused": self.counters["running_refused"],
                "closes_held": len(self.held_closes.items),
            },
            "counters": dict(self.counters),
        }

    def _retention_status(self) -> dict[str, int]:
        """What the view and this node's voter hold, and what compaction took."""
        voter, book = self.consensus.voter, self.book
        return {"view": len(book), "view_compacted": book.compacted,
                "view_forgotten_open": book.forgotten_open, "registers": len(voter.registers),
                "registers_dropped": voter.compaction.dropped,
                "series_horizons": len(voter.compaction.series),
                "compacted_submits_refused": voter.compaction.refused}  # fmt: skip

    def name(self) -> str:
        me = self.membership.member(self.node_id)
        return me.name if me else self.config.name

    def colony(self) -> str:
        roster = self.membership.roster
        return roster.colony if roster else self.config.colony


_EVENTS: dict[str, Callable[[NodeCore, Any], None]] = {
    "gossip": NodeCore._on_gossip,
    "lease": NodeCore._on_lease,
    "dht": NodeCore._on_dht,
}
