"""NodeCore's answers to requests (requests.py), one handler per request type.

A handler either answers at once (`core.answer`), or starts what the answer waits for
(a lease-quorum request, a DHT lookup, a long-poll) and answers from its callback. A
ColonyError it raises is the answer. Every long-poll has a deadline (a timer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from colonynode.consensus import events as lev
from colonynode.consensus import requests as lrq
from colonynode.core.codec import encode
from colonynode.core.errors import ColonyError, ValidationError
from colonynode.core.ids import peer_id_str
from colonynode.core.process import FunctionSpec, State, spec_to_json
from colonynode.dht import GetResult, PeerRecord
from colonynode.gossip.records import ENVELOPE_KIND, open_body
from colonynode.node.core import generator_requests, runs, waits
from colonynode.node.core import requests as rq
from colonynode.node.core.crons import may_submit
from colonynode.node.core.errors import NotAcknowledged, NotFound, NotHolder, PermissionDenied
from colonynode.node.core.fs import fs_handlers
from colonynode.node.core.members import (
    admit,
    auto_voters,
    colonies_key_change,
    create_invite,
    joined,
    lan_peer,
    offer_roster,
    remove_member,
    set_voters,
)
from colonynode.node.core.processes import OWN_CLAIM_KEY, PROCESS_KIND, terms_of

if TYPE_CHECKING:
    from colonynode.node.core.nodecore import NodeCore

__all__ = ["HANDLERS"]

log = logging.getLogger("colonynode.node")

# -- processes ------------------------------------------------------------------------


def _publish_submission(
    core: NodeCore, record: dict[str, Any], pid: bytes, spec: FunctionSpec
) -> bytes:
    """Durable here (gossip ledger) before anything is sent, in the same batch as the
    Submit to the voters; claimable here only once a majority holds it. The signed
    record (returned, encoded) goes to the voters with the register: an acknowledged
    process's spec is held by a majority, not only by its submitter."""
    core.book.mark_unacked(pid)
    voters = core.consensus.voters()  # each gets the record in its Submit
    return encode(core.publish(PROCESS_KIND, record, spec=spec, reached=voters))


def _acknowledge(
    core: NodeCore,
    pid: bytes,
    spec: FunctionSpec,
    submitted_ns: int,
    record: bytes,
    then: Callable[[Any], None],
    *,
    tick: bytes = b"",
    series: bytes = b"",
) -> None:
    def done(event: Any) -> None:
        if event.acked:
            core.book.mark_acked(pid)
        then(event)

    terms = terms_of(pid, spec, core.node_id, submitted_ns, record, tick=tick, series=series)
    core.lease(lrq.SubmitProcess(terms), done)


def _refused(pid: bytes, event: Any) -> NotAcknowledged:
    reason = event.reason.name if event.reason is not None else None
    why = reason or "no answer"
    msg = f"process {pid.hex()} was not acknowledged by a majority of voters ({why})"
    return NotAcknowledged(msg, reason)


def submit_process(core: NodeCore, rid: int, req: rq.SubmitProcess) -> None:
    may_submit(core)
    pid, submitted = core.rng.randbytes(16), core.unix_ns()
    record = {"processid": pid.hex(), "spec": spec_to_json(req.spec), "submission_ns": submitted}
    if req.initiator is not None:
        record["initiator"] = req.initiator.as_json()
    own = core.scheduler.own_want(req.spec, submitted)  # the short path: it runs here
    if own is not None:
        record[OWN_CLAIM_KEY] = True
    signed = _publish_submission(core, record, pid, req.spec)

    def then(event: Any) -> None:
        if event.acked:
            core.answer(rid, core.book.brief(pid) if req.brief else core.book.get(pid))
        else:
            core.answer(rid, error=_refused(pid, event))

    _acknowledge(core, pid, req.spec, submitted, signed, then)
    if own is not None:  # after the Submit: the Claim follows it to every voter
        core.scheduler.claim_own(own, pid, req.spec, submitted)


def submit_workflow(core: NodeCore, rid: int, req: rq.SubmitWorkflow) -> None:
    """A DAG of specs by nodename and dependencies. Every step is acknowledged by a
    majority before the answer; children wait for their parents."""
    may_submit(core)
    graph = core.rng.randbytes(16)
    pids = {s.nodename: core.rng.randbytes(16) for s in req.specs}

    def then(error: ColonyError | None, views: list[dict[str, Any]]) -> None:
        if error is not None:
            core.answer(rid, error=error)
        else:
            core.answer(rid, {"processgraphid": graph.hex(), "processes": views})

    extra = None if req.initiator is None else {"initiator": req.initiator.as_json()}
    submit_graph(core, req.specs, graph, pids, core.unix_ns(), then, extra=extra)


def submit_graph(
    core: NodeCore,
    specs: tuple[FunctionSpec, ...],
    graph: bytes,
    pids: dict[str, bytes],
    submitted_ns: int,
    then: Callable[[ColonyError | None, list[dict[str, Any]]], None],
    *,
    extra: dict[str, Any] | None = None,
    root_input: list[Any] | None = None,
    tick: bytes = b"",
    series: bytes = b"",
) -> None:
    """Publish and register every step of a graph; `then(error, views)` once a majority
    answered for each. `extra` goes into every step's record, `root_input` into the
    roots' (a cron's previous graph's output), `tick` and `series` into the terms (a
    cron tick: ProcessTerms)."""
    children: dict[str, list[str]] = {s.nodename: [] for s in specs}
    for s in specs:
        for dep in s.conditions.dependencies:
            children[dep].append(s.nodename)
    signed: dict[str, bytes] = {}
    for s in specs:
        record = {
            "processid": pids[s.nodename].hex(), "spec": spec_to_json(s),
            "submission_ns": submitted_ns, "processgraphid": graph.hex(),
            "parents": [pids[d].hex() for d in s.conditions.dependencies],
            "children": [pids[c].hex() for c in children[s.nodename]],
            **(extra or {}),
        }  # fmt: skip
        if root_input and not s.conditions.dependencies:
            record["input"] = root_input
        signed[s.nodename] = _publish_submission(core, record, pids[s.nodename], s)
    left = [len(specs)]
    refused: list[ColonyError] = []

    def done(pid: bytes, event: Any) -> None:
        if not event.acked:
            refused.append(_refused(pid, event))
        left[0] -= 1
        if left[0] == 0:
            views = [] if refused else [core.book.get(pids[s.nodename]) or {} for s in specs]
            then(refused[0] if refused else None, views)

    for s in specs:
        pid = pids[s.nodename]
        _acknowledge(core, pid, s, submitted_ns, signed[s.nodename], _bind(done, pid),
                     tick=tick, series=series)  # fmt: skip


def add_child(core: NodeCore, rid: int, req: rq.AddChild) -> None:
    may_submit(core)
    parent = core.book.get(req.parent)
    if parent is None:
        raise NotFound(f"no process {req.parent.hex()} is known here")
    if parent["processgraphid"] != req.graph.hex():
        raise ValidationError(
            f"process {req.parent.hex()} does not belong to processgraph {req.graph.hex()}"
        )
    if parent["state"] != State.RUNNING.name:
        raise ValidationError(f"process {req.parent.hex()} is not running")
    pid, submitted = core.rng.randbytes(16), core.unix_ns()
    record = {"processid": pid.hex(), "spec": spec_to_json(req.spec), "submission_ns": submitted,
              "processgraphid": req.graph.hex(), "parents": [req.parent.hex()],
              "children": []}  # fmt: skip
    signed = _publish_submission(core, record, pid, req.spec)

    def then(event: Any) -> None:
        if event.acked:
            core.answer(rid, core.book.get(pid))
        else:
            core.answer(rid, error=_refused(pid, event))

    _acknowledge(core, pid, req.spec, submitted, signed, then)


def _bind(fn: Callable[[bytes, Any], None], pid: bytes) -> Callable[[Any], None]:
    return lambda event: fn(pid, event)


def get_process(core: NodeCore, rid: int, req: rq.GetProcess) -> None:
    pid = req.pid
    view = core.book.get(pid)
    if not req.consistent:
        if view is None:
            raise NotFound(f"no process {pid.hex()} is known to this node")
        core.answer(rid, view)
        return

    def done(event: lev.ReadResult) -> None:
        local = core.book.get(pid)
        if event.view is None and local is None:
            core.answer(rid, error=NotFound(f"no process {pid.hex()} is known to a majority"
                                            " of voters"))  # fmt: skip
            return
        out = dict(local or {"processid": pid.hex()})
        reg = event.view
        if reg is not None:
            out.update(
                state=reg.state.name,
                epoch=reg.epoch,
                retries=reg.retries,
                output=reg.output if reg.output is not None else out.get("output", []),
                errors=list(reg.errors),
                executor=None if reg.holder is None else peer_id_str(reg.holder),
            )
        out["consistent"] = {"committed": event.committed, "answered": event.answered}
        core.answer(rid, out)

    core.lease(lrq.ReadRegister(pid), done)


def process_logs(core: NodeCore, rid: int, req: rq.ProcessLogs) -> None:
    """Log lines from the `after`-th log record on (in the order this node got them);
    with `wait_s`, wait that long for a first new one unless the process is closed."""
    state = core.book.state_of(req.pid)
    if state is None:
        raise NotFound(f"no process {req.pid.hex()} is known to this node")
    after = max(0, req.after)
    if len(core.book.log_index(req.pid)) > after or state.closed or req.wait_s <= 0:
        core.answer(rid, waits.logs_page(core, req.pid, after))
        return
    waits.long_poll(core, waits.Wait(rid, req.pid, after), req.wait_s)


def cancel_process(core: NodeCore, rid: int, req: rq.CancelProcess) -> None:
    pid = req.pid
    view = core.book.get(pid)
    if view is None:
        raise NotFound(f"no process {pid.hex()} is known to this node")
    m = core.membership
    if not m.is_owner and core.book.submitter_of(pid) != core.node_id:
        submitter = core.book.submitter_of(pid)
        who = m.member(submitter) if submitter else None
        raise PermissionDenied(
            f"only the node that submitted {pid.hex()} ({who.name if who else 'unknown'})"
            " or the colony owner's node may cancel it"
        )
    if State[view["state"]].closed:
        core.answer(rid, {"processid": pid.hex(), "cancelled": False, "reason": "CLOSED",
                          "state": view["state"]})  # fmt: skip
        return
    runs.cancel(core.scheduler, rid, pid, core.name())


# -- executors -----------------------------------------------------------------------


def _executor_role(core: NodeCore) -> None:
    if not core.membership.has_role(core.node_id, "executor"):
        raise PermissionDenied("this node does not have the executor role")


def register_executor(core: NodeCore, rid: int, req: rq.RegisterExecutor) -> None:
    _executor_role(core)
    core.scheduler.slots.register(rid, req)


def detach(core: NodeCore, rid: int, req: rq.Detach) -> None:
    """An executor leaves: cleanly (its leases are released, the processes WAITING again
    at once, no retry counted) or because its connection died (dropped: they expire)."""
    sched = core.scheduler
    ex = sched.slots.executor(req.executor_id)
    pids = sched.slots.detach(ex, release=req.release)
    core.answer(rid, {"executor_id": ex.id, "released": [p.hex() for p in pids]})


def assign(core: NodeCore, rid: int, req: rq.Assign) -> None:
    core.scheduler.slots.assign(rid, req)


def close_run(core: NodeCore, rid: int, req: rq.CloseRun) -> None:
    runs.close_run(core.scheduler, rid, req)


def _sync(fn: Callable[[Any, Any], Any]) -> Callable[[NodeCore, int, Any], None]:
    def handler(core: NodeCore, rid: int, req: Any) -> None:
        core.answer(rid, fn(core.scheduler, req))

    return handler


# -- the lease quorum and the DHT ------------------------------------------------------


def lease(core: NodeCore, rid: int, req: rq.Lease) -> None:
    """A raw lease-core request; a claim is answered with one event per pid, in order."""
    inner = req.req
    if isinstance(inner, lrq.CloseProcess) and not core.holds(inner.pid):
        raise NotHolder(f"this node holds no lease on {inner.pid.hex()}: only the holder closes")
    if not isinstance(inner, lrq.ClaimLeases):
        core.lease(inner, lambda event: core.answer(rid, event))
        return
    order = list(dict.fromkeys(inner.pids))
    got: dict[bytes, Any] = {}

    def one(event: Any) -> None:
        got[event.pid] = event
        if len(got) == len(order):
            core.answer(rid, [got[p] for p in inner.pids])

    core.lease(inner, one)


def fs_add_revision(core: NodeCore, rid: int, req: rq.FsAddRevision) -> None:
    colony = core.colony()

    def done(result: Any) -> None:
        core.answer(rid, {"ok": result.ok, "stored": result.stored, "seq": result.seq,
                          "reason": result.reason})  # fmt: skip

    core.dht_call(
        lambda dht, now: dht.fs_add_revision(now, colony, req.label, req.name, req.revision), done
    )


def fs_get(core: NodeCore, rid: int, req: rq.FsGet) -> None:
    colony = core.colony()

    def done(result: GetResult) -> None:
        record = result.value
        revisions = [] if record is None else [
            {"id": r.id, "sha256": r.sha256.hex(), "size": r.size,
             "chunks": [c.hex() for c in r.chunks], "author": peer_id_str(r.author),
             "time_ns": r.time_ns}
            for r in record.revisions
        ]  # fmt: skip
        core.answer(rid, {"found": record is not None, "label": req.label, "name": req.name,
                          "latest": None if record is None else record.latest,
                          "revisions": revisions, "answers": result.answers,
                          "hops": result.hops})  # fmt: skip

    core.dht_call(lambda dht, now: dht.fs_get(now, colony, req.label, req.name), done)


def find_peer(core: NodeCore, rid: int, req: rq.FindPeer) -> None:
    def done(result: GetResult) -> None:
        value = result.value
        core.answer(rid, tuple(value.addrs) if isinstance(value, PeerRecord) else ())

    core.dht_call(lambda dht, now: dht.find_peer(now, req.node), done)


def publish_record(core: NodeCore, rid: int, req: rq.PublishRecord) -> None:
    if req.kind == ENVELOPE_KIND:
        raise ValidationError(f"kind {ENVELOPE_KIND!r} is reserved for signed envelopes")
    env = core.publish(req.kind, req.body)
    core.answer(rid, {"author": peer_id_str(env.author), "seq": open_body(env).seq,
                      "kind": req.kind})  # fmt: skip


def release_all(core: NodeCore, rid: int, req: rq.ReleaseAll) -> None:
    core.lease(lrq.ReleaseAll(), lambda event: core.answer(rid, len(event.pids)))


# -- crons ------------------------------------------------------------------------------


def add_cron(core: NodeCore, rid: int, req: rq.AddCron) -> None:
    def then(error: ColonyError | None, value: Any) -> None:
        core.answer(rid, value, error)

    core.crons.add(req.body, then)


def get_cron(core: NodeCore, rid: int, req: rq.GetCron) -> None:
    core.answer(rid, core.crons.as_json(core.crons.get(req.cronid)))


def list_crons(core: NodeCore, rid: int, req: rq.ListCrons) -> None:
    crons = sorted(core.crons.crons.values(), key=lambda c: (c.created_ns, c.cronid))
    core.answer(rid, [core.crons.as_json(c) for c in crons])


def remove_cron(core: NodeCore, rid: int, req: rq.RemoveCron) -> None:
    core.crons.remove(req.cronid)
    core.answer(rid, {"cronid": req.cronid.hex(), "removed": True})


def run_cron(core: NodeCore, rid: int, req: rq.RunCron) -> None:
    may_submit(core)
    cron = core.crons.get(req.cronid)
    box: list[bytes] = []

    def then(error: ColonyError | None, views: list[dict[str, Any]]) -> None:
        if error is not None:
            core.answer(rid, error=error)
        else:
            core.answer(rid, {"processgraphid": box[0].hex(), "processes": views})

    box.append(core.crons.fire(cron, core.unix_ns(), then))


# -- generators -----------------------------------------------------------------------


def add_generator(core: NodeCore, rid: int, req: rq.AddGenerator) -> None:
    generator_requests.add(core.generators, req.body,
                           lambda error, value: core.answer(rid, value, error))  # fmt: skip


def pack_generator(core: NodeCore, rid: int, req: rq.PackGenerator) -> None:
    generator_requests.pack(core.generators, req.generatorid, req.arg,
                            lambda error, value: core.answer(rid, value, error))  # fmt: skip


def get_generator(core: NodeCore, rid: int, req: rq.GetGenerator) -> None:
    core.answer(
        rid, generator_requests.as_json(core.generators, core.generators.get(req.generatorid))
    )


def list_generators(core: NodeCore, rid: int, req: rq.ListGenerators) -> None:
    gens = sorted(core.generators.generators.values(),
                  key=lambda g: (g.body.get("created_ns", 0), g.generatorid))  # fmt: skip
    core.answer(rid, [generator_requests.as_json(core.generators, g) for g in gens])


def remove_generator(core: NodeCore, rid: int, req: rq.RemoveGenerator) -> None:
    generator_requests.remove(core.generators, req.generatorid)
    core.answer(rid, {"generatorid": req.generatorid.hex(), "removed": True})


HANDLERS: dict[type, Callable[[NodeCore, int, Any], None]] = {
    rq.AddGenerator: add_generator,
    rq.PackGenerator: pack_generator,
    rq.GetGenerator: get_generator,
    rq.ListGenerators: list_generators,
    rq.RemoveGenerator: remove_generator,
    rq.AddCron: add_cron,
    rq.GetCron: get_cron,
    rq.ListCrons: list_crons,
    rq.RemoveCron: remove_cron,
    rq.RunCron: run_cron,
    rq.SubmitProcess: submit_process,
    rq.SubmitWorkflow: submit_workflow,
    rq.AddChild: add_child,
    rq.GetProcess: get_process,
    rq.WaitProcess: waits.wait_process,
    rq.WaitAny: waits.wait_any,
    rq.ProcessLogs: process_logs,
    rq.CancelProcess: cancel_process,
    rq.RegisterExecutor: register_executor,
    rq.Assign: assign,
    rq.CloseRun: close_run,
    rq.Heartbeat: _sync(runs.heartbeat),
    rq.LogLines: _sync(runs.log_lines),
    rq.AddAttribute: _sync(runs.add_attribute),
    rq.Detach: detach,
    rq.Lease: lease,
    rq.FsAddRevision: fs_add_revision,
    rq.FsGet: fs_get,
    rq.FindPeer: find_peer,
    rq.CreateInvite: create_invite,
    rq.RemoveMember: remove_member,
    rq.SetVoters: set_voters,
    rq.AutoVoters: auto_voters,
    rq.Admit: admit,
    rq.ColoniesKeyChange: colonies_key_change,
    rq.OfferRoster: offer_roster,
    rq.LanPeer: lan_peer,
    rq.Joined: joined,
    rq.PublishRecord: publish_record,
    rq.ReleaseAll: release_all,
    **fs_handlers(),
}


# -- local reads ---------------------------------------------------------------------------

LIST_FILTERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "executortype": lambda e: e["spec"].conditions.executortype,
    "funcname": lambda e: e["spec"].funcname,
    "label": lambda e: e["spec"].label,
    "processgraphid": lambda e: e.get("graph"),
    "cronid": lambda e: e.get("cronid"),
    "generatorid": lambda e: e.get("generatorid"),
}


def list_processes(
    core: NodeCore, state: str | None, limit: int, offset: int, filters: dict[str, str]
) -> list[dict[str, Any]]:
    """This node's view, newest first, filtered by state and by `filters`:
    executortype, funcname, label, processgraphid (exact matches)."""
    wanted = None
    if state is not None:
        if state.upper() not in State.__members__:
            raise ValidationError(f"state must be one of {', '.join(State.__members__)}")
        wanted = State[state.upper()]
    want = {k: v for k, v in filters.items() if v}
    unknown = set(want) - set(LIST_FILTERS)
    if unknown:
        first = sorted(unknown)[0]
        raise ValidationError(f"unknown filter {first}: use {', '.join(LIST_FILTERS)}")

    def match(entry: dict[str, Any]) -> bool:
        return all(LIST_FILTERS[k](entry) == v for k, v in want.items())

    return core.book.list(wanted, limit, offset=max(0, offset), match=match)


def records(core: NodeCore, kind: str | None, limit: int) -> list[dict[str, Any]]:
    """Held gossip records (newest sequence first per author), bodies included."""
    out: list[dict[str, Any]] = []
    gossip = core.gossip
    for author, hwm in sorted(gossip.digest().items()):
        for seq in range(hwm, 0, -1):
            if len(out) >= limit:
                return out
            env = gossip.record(author, seq)
            if env is None:
                continue
            body = open_body(env)
            if kind is not None and body.kind != kind:
                continue
            out.append({"author": peer_id_str(author), "seq": seq, "kind": body.kind,
                        "body": body.body if body.kind != ENVELOPE_KIND else None})  # fmt: skip
    return out
