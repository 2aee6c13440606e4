"""Generators without a leader (DESIGN.md §12): packed args are used once each, none lost.

A generator (`generator add`) is a definition like a cron's (crons.py): a signed gossip
record (kind ``generator``) the voters hold in an unclaimed register. `generator pack ID
ARG` publishes the arg as a record (kind ``generator-arg``) and registers it with the
voters as a register of its own (pid = the arg's id), so a packed arg is acknowledged
only once a majority holds it durably.

Firing. When a node sees `trigger` open args of a generator (or a non-empty queue whose
oldest arg is older than `timeout`), it takes the first of them in pack order (the
packing node's clock, then the arg id), claims their registers in one batched claim and
closes each it was granted with the output ``{"batch": graph id, "args": [...], "at":
seq, "steps": [...]}`` (generator_defs.Batch). An
arg's register is closed once, under the lease of the node that claimed it (the lease
quorum's exactly-once), so an arg belongs to exactly one batch whoever raced for it.
Which of them the batch used is then settled once, in the batch's decision register
(claimed and closed with the set: `_decide`), and only then is the batch's workflow
submitted, its ids hashes of the batch (as a cron tick's, with the batch as the tick):
the roots' args are the decided args in pack order (kwargs cleared), as ColonyOS does.
A node that got only some of the args it asked for releases them (no retry counted) and
tries again later. If the firing node dies between the closes and the submission,
another node that tries to claim one of those args is refused CLOSED, reads the register
from a majority, learns the batch and submits its workflow itself (the same ids: the
voters take it once) with the decided set, deciding it first if the taker had not.

Compaction (bounded state, #19). Every register of a generator's (its args, its
batches' decisions and workflow steps) is of the generator's series, a batch's with the
batch's seq (`at`: above every granting voter's horizon of the series and every arg's
pack time). The voters drop them like any closed register, except what a pin holds back
(generator_defs.py `pinned`): an arg under a lease, or closed as a batch's whose
workflow is not held yet, so the batch can be recovered from it and taken however late.
A batch's register refused COMPACTED was held, ran and was dropped since: done. A used
arg is forgotten here USED_KEPT_S after it was used.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from colonynode.consensus import events as lev
from colonynode.consensus import requests as lrq
from colonynode.consensus.messages import Outcome, ProcessTerms, Reason
from colonynode.core.errors import ColonyError
from colonynode.core.ids import NodeId
from colonynode.node.core.crons import turn_of
from colonynode.node.core.errors import NotAcknowledged, NotFound
from colonynode.node.core.generator_defs import (
    Arg,
    Batch,
    Generator,
    batch_id,
    batch_of,
    decision_id,
    listed,
    parse_generator,
    with_args,
)

if TYPE_CHECKING:
    from colonynode.node.core.nodecore import NodeCore

__all__ = ["GENERATOR_ARG_KIND", "GENERATOR_KIND", "GENERATOR_REMOVED_KIND", "Generators"]

GENERATOR_KIND = "generator"
GENERATOR_ARG_KIND = "generator-arg"
GENERATOR_REMOVED_KIND = "generator-removed"
GENERATORS_MAX = 10_000
ARGS_MAX = 100_000  # open args a node holds for all generators
ARG_CHARS_MAX = 4096
EARLY_MAX = 10_000  # args held for generators whose definition has not come yet
TURN_S = 0.5  # between the members' turns to fire a batch
RETRY_S = 1.0  # after a batch this node could not take whole
RETRY_MAX_S = 8.0
RECOVER_WAIT_S = 3.0  # for a batch's graph the voters say took an arg, before submitting it
GRAPHS_KEPT_MAX = 256
TAKERS = ("executor", "submitter")  # who takes batches: claims need the executor role
READS_MAX = 10  # reads of a close without a verdict before it is left to recovery
DECIDE_TRIES_MAX = 10  # rounds at a batch's decision before it is left to recovery
DECISIONS_KEPT_MAX = 1024
REFUSED = (Reason.STALE_EPOCH, Reason.CLOSED, Reason.NOT_HOLDER, Reason.LEASE_HELD)
UNKNOWN_QUIET_S = 10.0  # an arg the voters did not know is left out this long
# ... and for good, once heard of this long ago (its submission gives up after
# ClaimerConfig.op_timeout_s, 30 s, from its packing, which came before we heard of it)
NEVER_HELD_S = 45.0
REPLAN_S_MAX = 30.0
SUBMIT_TRIES_MAX = 10  # submissions of a batch's workflow not acknowledged, RETRY_S apart
USED_KEPT_S = 3600.0  # a used arg is forgotten here this long after (its register goes too)
LISTED_MAX = 100_000  # args a batch's record named before the arg's own record came
_S_NS = 10**9


class Generators:
    """NodeCore's generators: definitions and packed args from gossip, and the batches."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        self.generators: dict[bytes, Generator] = {}
        self.removed: set[bytes] = set()
        self.started = False
        self._busy: set[bytes] = set()  # generators with a batch of this node's in flight
        self._not_before_s: dict[bytes, float] = {}
        self._recovering: set[bytes] = set()
        self._failures: dict[bytes, int] = {}
        self._early: dict[bytes, list[dict[str, Any]]] = {}  # args of generators not heard yet
        self._decisions: dict[bytes, None] = {}  # decision registers this node worked on
        self._timer_at_s: float | None = None
        self._used: deque[tuple[float, bytes, bytes]] = deque()  # (since, generator, arg)
        self._listed: dict[bytes, bytes] = {}  # arg -> the batch listing it, arg not heard of
        self.counters: dict[str, int] = dict.fromkeys(
            ("batches", "batches_partial", "batches_recovered", "batches_compacted",
             "args_packed", "args_never_held"), 0)  # fmt: skip

    def owns(self, pid: bytes) -> bool:
        """A register of a packed arg or of a batch's decision (never a process)."""
        return pid in self._decisions or any(pid in g.args for g in self.generators.values())

    # -- what gossip tells --------------------------------------------------------------

    def on_record(self, author: NodeId | None, kind: str, body: Any) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("generatorid"), str):
            return
        try:
            gid = bytes.fromhex(body["generatorid"])
        except ValueError:
            return
        if kind == GENERATOR_REMOVED_KIND:
            self.removed.add(gid)
            self.generators.pop(gid, None)
            self._early.pop(gid, None)
        elif kind == GENERATOR_KIND and gid not in self.generators and gid not in self.removed:
            try:
                trigger, timeout_s, specs = parse_generator(body)
            except ColonyError:
                return
            if len(self.generators) < GENERATORS_MAX and isinstance(body.get("created_ns"), int):
                self.generators[gid] = Generator(gid, str(body["name"]), author, trigger,
                                                 timeout_s, specs, body)  # fmt: skip
                for early in self._early.pop(gid, ()):  # args that came before it
                    self._on_arg(gid, early)
        elif kind == GENERATOR_ARG_KIND:
            self._on_arg(gid, body)
        self.replan()

    def _on_arg(self, gid: bytes, body: dict[str, Any]) -> None:
        gen = self.generators.get(gid)
        try:
            argid, value = bytes.fromhex(str(body["argid"])), body["arg"]
            packed_ns = int(body["packed_ns"])
        except (KeyError, ValueError, TypeError):
            return
        if gen is None:
            # Gossip brings records in any order: an arg may come before its generator.
            if gid not in self.removed and sum(map(len, self._early.values())) < EARLY_MAX:
                self._early.setdefault(gid, []).append(body)
            return
        if not isinstance(value, str) or argid in gen.args:
            return
        if sum(len(g.args) for g in self.generators.values()) < ARGS_MAX:
            gen.args[argid] = Arg(argid, value, packed_ns, arrived_s=self.core.now_s)
            graph = self._listed.pop(argid, None)
            if graph is not None:  # (a batch's record came first: a restart's replay)
                self._ran(gen, graph, (argid,))

    def on_process(self, body: dict[str, Any], pid: bytes) -> None:
        """A process record of a batch's graph: its args are used (those not heard of
        yet, once they come: left open, each would be claimed and found compacted)."""
        try:
            gen = self.generators.get(bytes.fromhex(str(body.get("generatorid"))))
            graph, used = str(body["processgraphid"]), body["generatorargs"]
            graph_id = bytes.fromhex(graph)
        except (KeyError, ValueError, TypeError):
            return
        if not isinstance(used, list):
            return
        ids = set()
        for hexid in used:
            try:
                argid = bytes.fromhex(str(hexid))
            except ValueError:
                continue
            ids.add(argid)
            if gen is None or argid not in gen.args:
                self._listed[argid] = graph_id
                while len(self._listed) > LISTED_MAX:
                    del self._listed[next(iter(self._listed))]
        if gen is None:
            return
        self._ran(gen, graph_id, tuple(ids), record=True)
        if graph not in gen.graph_args:
            gen.graphs.append(graph)
            del gen.graphs[:-16]
            gen.graph_args[graph] = frozenset(ids)
            while len(gen.graph_args) > GRAPHS_KEPT_MAX:
                del gen.graph_args[next(iter(gen.graph_args))]

    # -- firing -------------------------------------------------------------------------

    def replan(self) -> None:
        core = self.core
        if not self.started or not all(core.membership.has_role(core.node_id, r) for r in TAKERS):
            return
        now_s, now_ns = core.now_s, core.unix_ns()
        at_s = now_s + REPLAN_S_MAX
        for gen in self.generators.values():
            ready_ns = self._ready_ns(gen, now_s)
            if ready_ns is not None and gen.generatorid not in self._busy:
                ready_s = now_s + max(0, ready_ns - now_ns) / _S_NS
                at_s = min(at_s, max(ready_s, self._not_before_s.get(gen.generatorid, 0.0)))
        if self._timer_at_s is not None and self._timer_at_s <= at_s:
            return
        self._timer_at_s = at_s
        core.at(at_s, self._on_timer)

    def _ready_ns(self, gen: Generator, now_s: float) -> int | None:
        """When this node's turn to take the generator's next batch comes: the batch is
        due once its trigger-th arg was packed (or its oldest arg's timeout ran out), and
        the connected submitters take turns TURN_S apart."""
        open_args = gen.open_args(now_s)
        if not open_args:
            return None
        if len(open_args) >= gen.trigger:
            due_ns = max(a.packed_ns for a in open_args[: gen.trigger])
        elif gen.timeout_s > 0:
            due_ns = open_args[0].packed_ns + int(gen.timeout_s * _S_NS)
        else:
            return None
        turn = turn_of(self.core, gen.generatorid + open_args[0].argid, TAKERS)
        return due_ns + int(turn * TURN_S * _S_NS)

    def _on_timer(self, now_s: float) -> None:
        if self._timer_at_s is not None and now_s < self._timer_at_s:
            return
        self._timer_at_s = None
        now_ns = self.core.unix_ns()
        for gen in list(self.generators.values()):
            gid = gen.generatorid
            if gid in self._busy or now_s < self._not_before_s.get(gid, 0.0):
                continue
            ready_ns = self._ready_ns(gen, now_s)
            if ready_ns is not None and now_ns >= ready_ns:
                self._take(gen)
        self.replan()

    def _take(self, gen: Generator) -> None:
        """Claim the batch's args, close them as this batch's, then submit its graph."""
        args = tuple(a.argid for a in gen.open_args(self.core.now_s)[: gen.trigger])
        gid = gen.generatorid
        graph = batch_id(gid, args)
        if self.core.config.planted_bug == "generator_no_claims":  # the checkers' test
            self.submit(gen, graph, args, self.core.unix_ns())
            return
        self._busy.add(gid)
        granted: list[bytes] = []
        horizon = [-1]
        raced = [False]  # a refusal other than UNKNOWN_PID (another taker, or a close)
        answers = [0]

        def claimed(event: Any) -> None:
            answers[0] += 1
            if isinstance(event, lev.Granted):
                granted.append(event.pid)
                horizon[0] = max(horizon[0], event.horizon)
            elif isinstance(event, lev.ClaimFailed) and event.reason is not Reason.UNKNOWN_PID:
                raced[0] = True
                if event.reason is Reason.CLOSED:
                    self._recover(gen, event.pid)
            elif isinstance(event, lev.ClaimFailed):
                arg = gen.args.get(event.pid)  # packed, but no majority holds it (yet)
                if arg is not None:
                    arg.unknown_until_s = self.core.now_s + UNKNOWN_QUIET_S
                    if self.core.now_s - arg.arrived_s > NEVER_HELD_S:
                        # Its packer's submission has given up by now (it was published
                        # first; the packer died before a majority held it): it will
                        # never be held. Left in, it broke every batch it was drawn into.
                        arg.unknown_until_s = math.inf
                        self.counters["args_never_held"] += 1
            if answers[0] == len(args):
                got = tuple(p for p in args if p in granted)
                self._close(gen, graph, args, got, horizon[0], raced[0])

        try:
            self.core.lease(lrq.ClaimLeases(args), claimed)
        except ColonyError:  # too many lease requests in flight: later
            self._busy.discard(gid)
            self._not_before_s[gid] = self.core.now_s + RETRY_S

    def _close(self, gen: Generator, graph: bytes, planned: tuple[bytes, ...],
               granted: tuple[bytes, ...], horizon: int, raced: bool) -> None:  # fmt: skip
        """Close each granted arg as the batch's, with the batch's seq: above the
        series' horizon each granting voter named (then an arg's pin keeps it below
        the seq at that voter until the batch's workflow is held: generator_defs.py
        `pinned`), and after every arg's pack."""
        gid = gen.generatorid
        if len(granted) < len(planned):  # raced: give back what we got, try again later
            for pid in granted:
                self.core.lease(lrq.ReleaseLease(pid), lambda event: None)
            self._busy.discard(gid)
            self.counters["batches_partial"] += 1
            if not raced:  # (only args the voters do not hold, left out a while: no race)
                self.replan()
                return
            # Back off exponentially, with jitter, the earlier in the turns the sooner:
            # members that split the voters must not retry in step.
            n = self._failures[gid] = self._failures.get(gid, 0) + 1
            back_s = min(RETRY_MAX_S, RETRY_S * 2 ** min(n - 1, 8))
            back_s *= 0.5 + self.core.rng.random()
            back_s += turn_of(self.core, gid + planned[0], TAKERS) * TURN_S
            self._not_before_s[gid] = self.core.now_s + back_s
            self.replan()
            return
        self._failures.pop(gid, None)
        packed_ns = max((gen.args[p].packed_ns for p in planned if p in gen.args), default=0)
        at_ns = max(self.core.unix_ns(), packed_ns, horizon + 1)
        batch = Batch(graph, planned, at_ns, tuple(s.nodename for s in gen.specs))
        output = batch.output()
        committed: list[bytes] = []
        unsure: list[bytes] = []
        left = [len(planned)]

        def closed(event: Any) -> None:
            if isinstance(event, lev.Closed) and event.committed:
                committed.append(event.pid)
            elif not (isinstance(event, lev.Closed) and event.reason in REFUSED):
                unsure.append(event.pid)  # no verdict: the voters may hold it closed
            left[0] -= 1
            if left[0] == 0:
                self._settle(gen, batch, committed, unsure, READS_MAX)

        for pid in planned:
            self.core.lease(lrq.CloseProcess(pid, Outcome.SUCCESS, output), closed)

    def _settle(self, gen: Generator, batch: Batch, committed: list[bytes],
                unsure: list[bytes], reads: int) -> None:  # fmt: skip
        """Submit the batch with exactly the args the voters hold closed as its own:
        a close without a verdict is read from a majority first (again, a while later,
        until it answers), never guessed."""
        gid, graph = gen.generatorid, batch.graph
        if not unsure or reads <= 0:
            used = tuple(p for p in batch.args if p in committed)
            if used and not unsure:
                self._decide(gen, replace(batch, args=used), DECIDE_TRIES_MAX, taker=True)
                return
            # (reads ran out: the batch is left to a later claimer's recovery, which
            # reads every listed arg)
            self._busy.discard(gid)
            self.replan()
            return
        still: list[bytes] = []
        left = [len(unsure)]
        at_ns = [batch.at_ns]

        def read(pid: bytes, event: Any) -> None:
            found = batch_of(getattr(getattr(event, "view", None), "output", None))
            if not event.committed:
                still.append(pid)
            elif found is not None and found.graph == graph:
                committed.append(pid)
                # (another taker's close of the same args, whose own all failed: its
                # seq is the batch's, as every recoverer reads it)
                at_ns[0] = found.at_ns
            left[0] -= 1
            if left[0] == 0:
                then = replace(batch, at_ns=at_ns[0])
                if still:
                    self.core.at(self.core.now_s + RETRY_S, lambda now_s: self._settle(
                        gen, then, committed, still, reads - 1))  # fmt: skip
                else:
                    self._settle(gen, then, committed, [], reads - 1)

        for pid in unsure:
            self.core.lease(lrq.ReadRegister(pid), functools.partial(read, pid))

    def _decide(self, gen: Generator, batch: Batch, tries: int, *, taker: bool) -> None:
        """Settle once, for the colony, which args batch `graph` used; then submit it.

        Views of the args' closes differ: the taker counts the closes it was told of, a
        recoverer reads them later, and a close without a verdict may commit later still,
        by repair. So the set is itself a register's value: the batch's decision register
        (its pid a hash of the batch, its terms the same whoever submits them) is claimed
        and closed with the proposed set. One close commits; every submission of the
        batch, the taker's or a recoverer's, carries the committed set, and one finding
        the register closed reads it. An arg closed as the batch's and left out of the set
        goes into a follow-up batch of its own (`_recovered`). Refused COMPACTED, the
        batch's registers were held and dropped since (pins): it ran."""
        core, gid, graph = self.core, gen.generatorid, batch.graph
        pid = decision_id(gid, graph)
        self._decisions[pid] = None
        while len(self._decisions) > DECISIONS_KEPT_MAX:
            del self._decisions[next(iter(self._decisions))]
        output = batch.output()

        def done(args: tuple[bytes, ...] | None, compacted: bool = False) -> None:
            if compacted:
                self._ran(gen, graph, batch.args)
                self.counters["batches_compacted"] += 1
            elif args is not None:
                self.submit(gen, graph, args, batch.at_ns)
                self.counters["batches"] += taker
            elif tries > 1:
                core.at(core.now_s + RETRY_S, lambda now_s: self._decide(
                    gen, batch, tries - 1, taker=taker))  # fmt: skip
                return
            if taker:  # (tries ran out: the batch is left to a later claimer's recovery)
                self._busy.discard(gid)
                self.replan()

        def read(event: Any) -> None:
            out = getattr(getattr(event, "view", None), "output", None)
            done(listed(out, graph) if event.committed else None)

        def closed(event: Any) -> None:
            if isinstance(event, lev.Closed) and event.committed:
                done(batch.args)
            else:  # refused or no verdict: what do the voters hold?
                core.lease(lrq.ReadRegister(pid), read)

        def claimed(event: Any) -> None:
            if isinstance(event, lev.Granted):
                core.lease(lrq.CloseProcess(pid, Outcome.SUCCESS, output), closed)
            elif isinstance(event, lev.ClaimFailed) and event.reason is Reason.CLOSED:
                core.lease(lrq.ReadRegister(pid), read)
            else:
                done(None)

        def held(event: Any) -> None:
            if event.acked:
                core.lease(lrq.ClaimLeases((pid,)), claimed)
            else:
                done(None, compacted=event.reason is Reason.COMPACTED)

        terms = ProcessTerms(pid, core.node_id, seq=batch.at_ns, maxretries=-1, tick=pid,
                             series=gid)  # fmt: skip
        try:
            core.lease(lrq.SubmitProcess(terms), held)
        except ColonyError:  # too many lease requests in flight: later
            done(None)

    def submit(self, gen: Generator, graph: bytes, used: tuple[bytes, ...], at_ns: int,
               tries: int = SUBMIT_TRIES_MAX) -> None:  # fmt: skip
        """The batch's workflow: ids from the batch, the roots' args its args in order,
        its seq the batch's (whoever submits it: the same records). One that is refused
        COMPACTED ran and was dropped since; one not acknowledged is submitted again."""
        from colonynode.node.core.service import submit_graph

        values = [gen.args[p].value for p in used if p in gen.args]
        self._ran(gen, graph, used)
        roots = tuple(s if s.conditions.dependencies else with_args(s, values) for s in gen.specs)
        pids = {s.nodename: batch_id(gen.generatorid, (graph,), s.nodename) for s in roots}
        extra = {"generatorid": gen.generatorid.hex(), "generatorargs": [p.hex() for p in used]}

        def then(error: ColonyError | None, views: list[dict[str, Any]]) -> None:
            if isinstance(error, NotAcknowledged) and error.reason == Reason.COMPACTED.name:
                self.counters["batches_compacted"] += 1
            elif error is not None and tries > 1:
                self.core.at(self.core.now_s + RETRY_S, lambda now_s: self.submit(
                    gen, graph, used, at_ns, tries - 1))  # fmt: skip

        submit_graph(self.core, roots, graph, pids, at_ns, then, extra=extra,
                     tick=batch_id(gen.generatorid, (graph,), "tick"),
                     series=gen.generatorid)  # fmt: skip

    def _ran(self, gen: Generator, graph: bytes, used: tuple[bytes, ...], *,
             record: bool = False) -> None:  # fmt: skip
        """Batch `graph` used these args: none is drawn again; each is forgotten
        USED_KEPT_S later. (`record`: a batch's record says so; the latest one heard
        names the batch, as the simulator's checker compares across nodes.)"""
        for p in used:
            arg = gen.args.get(p)
            if arg is None:
                continue
            if arg.batch is None:
                arg.used_s = self.core.now_s
                self._used.append((arg.used_s, gen.generatorid, p))
            if arg.batch is None or record:
                arg.batch = graph.hex()
        self._forget_used()

    def _forget_used(self) -> None:
        while self._used and self.core.now_s - self._used[0][0] > USED_KEPT_S:
            _, gid, p = self._used.popleft()
            gen = self.generators.get(gid)
            if gen is not None:
                gen.args.pop(p, None)

    def _recover(self, gen: Generator, pid: bytes) -> None:
        """An arg this node saw open is closed at the voters: which batch took it? If
        that batch's graph never came, submit it (the same ids: taken once)."""
        if pid in self._recovering:
            return
        self._recovering.add(pid)

        def read(event: Any) -> None:
            self._recovering.discard(pid)
            batch = batch_of(getattr(getattr(event, "view", None), "output", None))
            if event.committed and batch is not None:
                self._recovered(gen, pid, batch, wait=True)

        self.core.lease(lrq.ReadRegister(pid), read)

    def _recovered(self, gen: Generator, pid: bytes, batch: Batch, *, wait: bool) -> None:
        """The voters hold arg `pid` closed as batch `graph`'s. If that graph came and
        lists it, the arg is used. If it came without it (the batch's taker could not
        learn that close in time: it committed later, by repair), the arg goes into a
        batch of its own, keyed by (graph, arg): taken once, whoever does it. If the
        graph has not come, wait a while for it, then submit it from the voters' word."""
        graph = batch.graph
        known = gen.graph_args.get(graph.hex())
        if known is not None:
            if pid in known:
                self._ran(gen, graph, (pid,))
            else:
                self.counters["batches_recovered"] += 1
                self.submit(gen, batch_id(gen.generatorid, (graph, pid)), (pid,), batch.at_ns)
        elif wait:
            self.core.at(self.core.now_s + RECOVER_WAIT_S, lambda now_s: self._recovered(
                gen, pid, batch, wait=False))  # fmt: skip
        else:
            self.counters["batches_recovered"] += 1
            # Every listed arg the batch closed: the voters hold each as this batch's.
            self._collect(gen, batch)

    def _collect(self, gen: Generator, batch: Batch) -> None:
        graph, listed = batch.graph, batch.args
        used: list[bytes] = []
        left = [len(listed)]

        def read(pid: bytes, event: Any) -> None:
            out = getattr(getattr(event, "view", None), "output", None)
            if event.committed and isinstance(out, dict) and out.get("batch") == graph.hex():
                used.append(pid)
            left[0] -= 1
            if left[0] == 0 and used:
                args = tuple(p for p in listed if p in used)
                self._decide(gen, replace(batch, args=args), DECIDE_TRIES_MAX, taker=False)

        for pid in listed:
            self.core.lease(lrq.ReadRegister(pid), functools.partial(read, pid))

    # -- requests (generator_requests.py) -----------------------------------------------

    def get(self, gid: bytes) -> Generator:
        gen = self.generators.get(gid)
        if gen is None:
            raise NotFound(f"no generator {gid.hex()} on this node (generator ls lists them)")
        return gen
