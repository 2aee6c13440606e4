"""NodeCore's long-polls on processes (part of service.py's answers).

`WaitProcess` waits for one process to close; `WaitAny` for the first of many (what
`Client.as_completed` and `Client.map` ask, a request per batch of results rather than
one per process); `ProcessLogs` for a log record past the one it read. A long-poll is a
`Wait` in `core.waits` under each pid it watches, answered when the process view changes
(`wake_waits`, called by NodeCore) or at its deadline (a timer). A `WaitAny` has one
`Wait` per pid, sharing one `Group`: the first of them to wake answers with every
watched process closed by then and takes the others away.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from colonynode.core.errors import ColonyError, ValidationError
from colonynode.gossip.records import open_body
from colonynode.node.core import requests as rq
from colonynode.node.core.errors import NotFound

if TYPE_CHECKING:
    from colonynode.node.core.nodecore import NodeCore

__all__ = [
    "WAITS_PER_PROCESS_MAX",
    "WAIT_ANY_PIDS_MAX",
    "WAIT_MAX_S",
    "Group",
    "Wait",
    "logs_page",
    "long_poll",
    "wait_any",
    "wait_process",
    "wake_waits",
]

WAIT_MAX_S = 60.0  # the longest a long-poll (wait, logs) holds a request
WAITS_PER_PROCESS_MAX = 1024
WAIT_ANY_PIDS_MAX = 10_000  # processes one WaitAny watches


@dataclass(eq=False)
class Group:
    """The pids one `WaitAny` watches; `done` once it is answered."""

    pids: tuple[bytes, ...]
    done: bool = False
    brief: bool = False  # answered as `ProcessBook.brief`


def _closed_views(core: NodeCore, group: Group) -> list[Any]:
    if group.brief:
        return [core.book.brief(pid, closed=True) for pid in group.pids if _closed(core, pid)]
    return [core.book.get(pid) for pid in group.pids if _closed(core, pid)]


@dataclass(eq=False)
class Wait:
    """A long-poll on one process: `WaitProcess` (until closed), `ProcessLogs` (until
    a log record past `after` or closed), or one pid of a `WaitAny` (`group`)."""

    req: int
    pid: bytes
    logs_after: int | None = None  # None: waits for the process to close
    group: Group | None = field(default=None)


def _closed(core: NodeCore, pid: bytes) -> bool:
    state = core.book.state_of(pid)
    return state is not None and state.closed


def long_poll(core: NodeCore, wait: Wait, timeout_s: float) -> None:
    _add(core, wait)
    deadline = core.now_s + min(max(timeout_s, 0.0), WAIT_MAX_S)
    core.at(deadline, lambda now_s: _wait_due(core, wait))


def _add(core: NodeCore, wait: Wait) -> None:
    waits = core.waits.setdefault(wait.pid, [])
    if len(waits) >= WAITS_PER_PROCESS_MAX:
        raise ColonyError("too many requests wait on this process; try again")
    waits.append(wait)


def _remove(core: NodeCore, wait: Wait) -> bool:
    waits = core.waits.get(wait.pid)
    if not waits or wait not in waits:
        return False
    waits.remove(wait)
    if not waits:
        del core.waits[wait.pid]
    return True


def _wait_due(core: NodeCore, wait: Wait) -> None:
    if _remove(core, wait):  # else answered already, or its caller went away
        _answer_wait(core, wait)


def _answer_wait(core: NodeCore, wait: Wait) -> None:
    if wait.group is not None:
        _answer_group(core, wait.req, wait.group)
    elif wait.logs_after is None:
        view = core.book.get(wait.pid)
        if view is None:
            core.answer(wait.req, error=NotFound(f"no process {wait.pid.hex()} is known to this"
                                                 " node"))  # fmt: skip
        else:
            core.answer(wait.req, view)
    else:
        core.answer(wait.req, logs_page(core, wait.pid, wait.logs_after))


def _answer_group(core: NodeCore, req: int, group: Group) -> None:
    """Answer a WaitAny once: the watched processes closed by now (maybe none, at its
    deadline); its other waits go. A group its caller forgot has no waits left."""
    if group.done:
        return
    group.done = True
    alive = False
    for pid in group.pids:
        for wait in [w for w in core.waits.get(pid, ()) if w.group is group]:
            alive = _remove(core, wait) or alive
    if alive:
        core.answer(req, _closed_views(core, group))


def wake_waits(core: NodeCore, pid: bytes) -> None:
    """A process changed: answer the long-polls it satisfies."""
    closed = _closed(core, pid)
    logs = len(core.book.log_index(pid))
    ready = [
        w
        for w in core.waits.get(pid, ())
        if closed or (w.logs_after is not None and logs > w.logs_after)
    ]
    if not ready:
        return
    for wait in ready:
        if wait.group is None:
            _remove(core, wait)
    for wait in ready:
        _answer_wait(core, wait)


def wait_process(core: NodeCore, rid: int, req: rq.WaitProcess) -> None:
    """The process once it is closed, or as it is when `timeout_s` ran out (a process
    not heard of by then is a NotFound)."""
    if _closed(core, req.pid):
        core.answer(rid, core.book.get(req.pid))
        return
    long_poll(core, Wait(rid, req.pid), req.timeout_s)


def wait_any(core: NodeCore, rid: int, req: rq.WaitAny) -> None:
    """Every watched process closed by now, if one is; else those closed when the first
    of them closes, or `[]` when `timeout_s` ran out. A pid this node has not heard of
    yet is waited for like any other (its submission may still be on its way here)."""
    pids = tuple(dict.fromkeys(req.pids))
    if not pids or len(pids) > WAIT_ANY_PIDS_MAX:
        raise ValidationError(f"processids: give 1..{WAIT_ANY_PIDS_MAX} process ids")
    group = Group(pids, brief=req.brief)
    closed = _closed_views(core, group)
    if closed or req.timeout_s <= 0:
        core.answer(rid, closed)
        return
    added: list[Wait] = []
    try:
        for pid in pids:
            wait = Wait(rid, pid, group=group)
            _add(core, wait)
            added.append(wait)
    except ColonyError:
        for wait in added:
            _remove(core, wait)
        raise
    deadline = core.now_s + min(req.timeout_s, WAIT_MAX_S)
    core.at(deadline, lambda now_s: _answer_group(core, rid, group))


def logs_page(core: NodeCore, pid: bytes, after: int) -> dict[str, Any]:
    index = core.book.log_index(pid)
    lines: list[dict[str, Any]] = []
    for author, seq in index[after:]:
        env = core.gossip.record(author, seq)
        if env is None:  # compacted after its retention
            continue
        rec = open_body(env).body
        for text in rec.get("lines", ()):
            lines.append({"time_ns": rec.get("time_ns"), "executor": rec.get("executor"),
                          "epoch": rec.get("epoch"), "message": text})  # fmt: skip
    closed = _closed(core, pid)
    return {"processid": pid.hex(), "logs": lines, "next": len(index), "closed": closed}
