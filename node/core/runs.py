"""What an executor does with a run it was given, and cancels (part of NodeCore).

While a function runs its executor sends heartbeats (and log lines, attributes): each
answer says whether the node still holds the lease. A lease lost (maxexectime, a pause,
a newer claim elsewhere) or a process cancelled tells the executor to stop. `close`
commits the result under the lease's epoch (exactly once) and announces it by gossip,
with what the voters committed. Only the node that submitted a process, or the colony
owner's node, may cancel it.
"""

from __future__ import annotations

from typing import Any

from colonynode.consensus import requests as lrq
from colonynode.consensus.messages import Outcome, Reason
from colonynode.core.errors import ValidationError
from colonynode.core.process import State
from colonynode.node.core.errors import NotHolder
from colonynode.node.core.processes import ATTRIBUTE_KIND, LOG_KIND
from colonynode.node.core.requests import AddAttribute, CloseRun, Heartbeat, LogLines
from colonynode.node.core.scheduler import Executor, Scheduler

__all__ = [
    "ATTRIBUTE_VALUE_CHARS_MAX",
    "LOG_BATCH_LINES_MAX",
    "add_attribute",
    "cancel",
    "close_run",
    "heartbeat",
    "log_lines",
]

LOG_BATCH_LINES_MAX = 256  # lines per log call (one gossip record)
LOG_LINE_CHARS_MAX = 4096  # longer lines are cut
LOG_LINES_PER_PROCESS_MAX = 10_000  # lines a node publishes for one process run
ATTRIBUTE_VALUE_CHARS_MAX = 16_384
KEY_CHARS_MAX = 256
ATTRIBUTE_TYPES = ("IN", "OUT", "ERR", "ENV")


def held(s: Scheduler, ex: Executor, pid: bytes) -> bool:
    """Does the node still hold the lease of a process this executor runs? Not once
    gossip says the process was closed (cancelled) elsewhere: the lease is dropped then,
    before the voters refuse its next renewal."""
    if pid not in ex.running or not s.host.holds(pid):
        return False
    state = s.book.state_of(pid)
    if state is not None and state.closed:
        s.host.lease(lrq.DropLease(pid), lambda ev: None)
        return False
    return True


def heartbeat(s: Scheduler, req: Heartbeat) -> dict[str, Any]:
    """For each process the executor runs: `held`, `lost` or `cancelled` (the last two:
    stop, the result will not be committed)."""
    ex = s.slots.executor(req.executor_id)
    out: dict[str, str] = {}
    for pid in list(ex.running):
        if held(s, ex, pid):
            out[pid.hex()] = "held"
            continue
        out[pid.hex()] = "cancelled" if s.book.state_of(pid) is State.CANCELLED else "lost"
        ex.finish(pid, s.host.now_s)
    return {"processes": out}


def log_lines(s: Scheduler, req: LogLines) -> dict[str, Any]:
    """Publish a batch of the executor's log lines for a process it holds."""
    ex = s.slots.executor(req.executor_id)
    if len(req.lines) > LOG_BATCH_LINES_MAX:
        raise ValidationError(f"at most {LOG_BATCH_LINES_MAX} lines per call")
    pid = req.pid
    if not held(s, ex, pid):
        return {"accepted": 0, "held": False}
    sent = ex.log_lines.get(pid, 0)
    room = max(0, LOG_LINES_PER_PROCESS_MAX - sent)
    kept = [line[:LOG_LINE_CHARS_MAX] for line in req.lines[:room]]
    s.counters["log_lines_dropped"] += len(req.lines) - len(kept)
    if kept:
        ex.log_lines[pid] = sent + len(kept)
        s.counters["log_lines"] += len(kept)
        s.host.publish(LOG_KIND, {"processid": pid.hex(), "epoch": ex.running[pid],
                                  "executor": ex.advert.name, "time_ns": s.host.unix_ns(),
                                  "lines": kept})  # fmt: skip
    return {"accepted": len(kept), "held": True}


def add_attribute(s: Scheduler, req: AddAttribute) -> dict[str, Any]:
    """A ColonyOS attribute on a process the executor holds (only the holder may)."""
    ex = s.slots.executor(req.executor_id)
    if not 0 < len(req.key) <= KEY_CHARS_MAX:
        raise ValidationError(f"key must be a string of 1..{KEY_CHARS_MAX} characters")
    if len(req.value) > ATTRIBUTE_VALUE_CHARS_MAX:
        raise ValidationError(f"value must be a string of at most {ATTRIBUTE_VALUE_CHARS_MAX}")
    kind = req.attributetype.upper()
    if kind not in ATTRIBUTE_TYPES:
        raise ValidationError("attributetype must be IN, OUT, ERR or ENV")
    if not held(s, ex, req.pid):
        raise NotHolder(f"executor {ex.advert.name} does not hold process {req.pid.hex()}")
    s.host.publish(ATTRIBUTE_KIND, {"processid": req.pid.hex(), "epoch": ex.running[req.pid],
                                    "key": req.key, "value": req.value,
                                    "attributetype": kind})  # fmt: skip
    return {"processid": req.pid.hex(), "key": req.key}


def close_run(s: Scheduler, req_id: int, req: CloseRun) -> None:
    """Commit a run's result; answered `{processid, committed, reason, state}`."""
    ex = s.slots.executor(req.executor_id)
    pid = req.pid
    epoch = ex.finish(pid, s.host.now_s, req.elapsed_s, closed=True)
    if epoch is None:
        raise NotHolder(f"executor {ex.advert.name} does not run process {pid.hex()}")
    if not s.host.holds(pid):
        raise NotHolder(
            f"the lease on {pid.hex()} was lost (maxexectime, a pause or a cancel): result refused"
        )
    outcome = Outcome.SUCCESS if req.success else Outcome.FAILED

    def done(event: Any) -> None:
        if event.committed:
            state = State.SUCCESS if req.success else State.FAILED
            s.closing.announce_close(pid, state, req.output, list(req.errors), epoch,
                                     ex.advert.name, event.view, cert=event.cert)  # fmt: skip
        reason = None if event.reason is None else Reason(event.reason).name
        known = s.book.state_of(pid)  # refused as CLOSED: this says by what, once heard
        s.host.answer(req_id, {"processid": pid.hex(), "committed": event.committed,
                               "reason": reason,
                               "state": None if known is None else known.name})  # fmt: skip

    s.host.lease(lrq.CloseProcess(pid, outcome, req.output, tuple(req.errors)), done)


def cancel(s: Scheduler, req_id: int, pid: bytes, by: str) -> None:
    """Close a process CANCELLED through the voters (its holder's lease is revoked)."""
    errors = (f"cancelled by {by}",)

    def done(event: Any) -> None:
        if event.committed:
            s.closing.announce_close(pid, State.CANCELLED, None, list(errors), 0, None, event.view,
                                     cert=event.cert)  # fmt: skip
        elif event.reason == Reason.CLOSED:
            s.book.mark_closed_elsewhere(pid)
            s.closing.settle_later(pid)
        reason = None if event.reason is None else Reason(event.reason).name
        state = s.book.state_of(pid)
        s.host.answer(req_id, {"processid": pid.hex(), "cancelled": event.committed,
                               "reason": reason,
                               "state": None if state is None else state.name})  # fmt: skip

    s.host.lease(lrq.CancelProcess(pid, State.CANCELLED, errors), done)
