"""Processes as a node sees them (DESIGN.md §5): a local, eventually consistent view built
from gossip records, and submission through the lease quorum.

A submission is a gossip record of kind ``process`` (the ColonyOS spec, the submitter,
the submission time, and for a workflow its graph id, parents and children) plus a
register on the voters (`consensus`): the user hears "submitted" only once a majority of
voters holds the register durably. The other kinds follow a process's life:

- ``process-running``: a node's executor holds a lease (epoch, executor, start time);
- ``process-released``: that lease was given back before a run began or while it ran
  (the process waits again; no retry is counted);
- ``process-closed``: the committed outcome (SUCCESS, FAILED, CANCELLED) and output;
- ``process-log``: a batch of log lines an executor wrote while it held the lease;
- ``process-attribute``: a key/value the lease holder added (ColonyOS attributes).

A node announces the running, released and closed processes of one step in one record
per kind (`{"processes": [item, ...]}`, up to ANNOUNCE_ITEMS_MAX items or about
ANNOUNCE_BYTES_MAX bytes): a busy node signs, and its peers verify, one record for many
processes. A record of a single item (the body is the item) reads the same.

Log records are not copied into memory: the view keeps where they are in the gossip
ledger (author, sequence), and NodeCore reads them from there on request.

A closing record carries what the voters committed (the register a majority holds: its
state, epoch, retries and errors), so every node's view of a closed process is the
voters' answer, not the announcing node's guess. Part of NodeCore: no I/O, no clock.
"""

from __future__ import annotations

import bisect
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from colonynode.consensus.messages import ProcessTerms
from colonynode.core.errors import ColonyError
from colonynode.core.ids import NodeId, peer_id_str
from colonynode.core.process import (
    FunctionSpec,
    State,
    parse_spec,
    priority_time_ns,
    spec_to_json,
)

__all__ = [
    "ANNOUNCED_KINDS",
    "ANNOUNCE_BYTES_MAX",
    "ANNOUNCE_ITEMS_MAX",
    "ATTRIBUTE_KIND",
    "CLOSED_KIND",
    "LOG_KIND",
    "OWN_CLAIM_KEY",
    "PROCESS_KIND",
    "RELEASED_KIND",
    "RUNNING_KIND",
    "ProcessBook",
    "iso_time",
    "terms_of",
]

PROCESS_KIND = "process"
RUNNING_KIND = "process-running"
RELEASED_KIND = "process-released"
CLOSED_KIND = "process-closed"
LOG_KIND = "process-log"
ATTRIBUTE_KIND = "process-attribute"
ANNOUNCED_KINDS = (RELEASED_KIND, RUNNING_KIND, CLOSED_KIND)  # batched, published in this order
ANNOUNCE_ITEMS_MAX = 64  # processes one announcement record names
ANNOUNCE_BYTES_MAX = 64 * 1024  # about this much of them (outputs) in one record
PROCESSES_MAX = 100_000  # processes held in the view; the oldest closed are forgotten first
RETENTION_S = 3600.0  # a process closed longer ago keeps only its outcome here (`compact`)
RUNNING_QUIET_S = 10.0  # after hearing a process started, leave it to its holder this long
OWN_CLAIM_KEY = "submitterclaims"  # a submission record's flag: its submitter claims it
OWN_CLAIM_QUIET_S = 1.0  # ... so others leave it this long (a claim's timeout) first
LOG_RECORDS_MAX = 1_024  # log records indexed per process (each up to LOG_BATCH_LINES_MAX)
ATTRIBUTES_MAX = 256  # attributes kept per process
PARENTS_MAX = 256  # parents (and children) a workflow process may name


def terms_of(
    pid: bytes,
    spec: FunctionSpec,
    submitter: NodeId,
    submission_ns: int,
    record: bytes = b"",
    *,
    tick: bytes = b"",
    series: bytes = b"",
) -> ProcessTerms:
    """The register's terms of a process; `record`: its signed gossip record (encoded),
    which every voter keeps with the register."""
    return ProcessTerms(
        pid=pid,
        submitter=submitter,
        # The node's scheduler matches executor types (and names, location, cpu, mem)
        # before it claims; the claim does not carry the executor's type yet, so the
        # voters' own type check is left off (see docs/decisions.md).
        executortype="",
        priority=spec.priority,
        seq=submission_ns,
        maxexectime_s=float(max(spec.maxexectime, 0)),
        maxwaittime_s=float(max(spec.maxwaittime, 0)),
        maxretries=spec.maxretries,
        record=record,
        tick=tick,
        series=series,
    )


def iso_time(ns: int | None) -> str | None:
    """RFC 3339 in UTC with nanoseconds, as ColonyOS prints times; None for none."""
    if not ns:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns / 1e9)) + f".{ns % 10**9:09d}Z"


def _pids(value: Any) -> tuple[bytes, ...]:
    if not isinstance(value, list):
        return ()
    out = []
    for item in value[:PARENTS_MAX]:
        try:
            out.append(bytes.fromhex(str(item)))
        except ValueError:
            return ()
    return tuple(out)


class ProcessBook:
    """pid -> what this node knows of the process (bounded, insertion-ordered).

    `on_change(pid)` is called after every change to a process (the daemon wakes its
    long-polls with it); `on_scheduled(record, pid)` with the first submission record of
    a process a cron or a generator started."""

    def __init__(
        self,
        on_change: Callable[[bytes], None] | None = None,
        *,
        parse: Callable[[Any], FunctionSpec] = parse_spec,
        me: NodeId | None = None,
    ) -> None:
        self.parse = parse  # a spec's JSON -> FunctionSpec (ColonyError if bad)
        self.me = me  # this node: its own records' hints are not for it
        self._procs: OrderedDict[bytes, dict[str, Any]] = OrderedDict()
        self._open: dict[bytes, None] = {}  # pids not closed, in arrival order
        # closed pids in the order they closed here: the first forgotten when full; and
        # those not compacted yet, with their end time (unix ns; 0: not known yet)
        self._closed: OrderedDict[bytes, None] = OrderedDict()
        self._whole: OrderedDict[bytes, int] = OrderedDict()
        self.forgotten_open = 0  # open processes forgotten because the view was full
        self.compacted = 0
        # The open processes whose spec is known, by (priority time, pid): a claim round
        # reads the head of the queue, not all of it.
        self._queue: list[tuple[int, bytes]] = []
        self.on_change = on_change
        self.on_scheduled: Callable[[dict[str, Any], bytes], None] | None = None

    def __len__(self) -> int:
        return len(self._procs)

    def __contains__(self, pid: bytes) -> bool:
        entry = self._procs.get(pid)
        return entry is not None and "spec" in entry

    def arrived_s(self, pid: bytes) -> float:
        """When this node first heard of a process (its local time)."""
        entry = self._procs.get(pid)
        return 0.0 if entry is None else float(entry.get("arrived_s", 0.0))

    def busy_until_s(self, pid: bytes) -> float | None:
        """Until when this node leaves a process to the holder it heard of, if any."""
        entry = self._procs.get(pid)
        return None if entry is None else entry.get("busy_until_s")

    def priority_time_ns(self, pid: bytes) -> int:
        """ColonyOS's priority time of a process in the view (lowest runs first)."""
        entry = self._procs[pid]
        return priority_time_ns(int(entry.get("submission_ns", 0)), entry["spec"].priority)

    def mark_unacked(self, pid: bytes) -> None:
        """This node's own submission, not yet held by a majority of voters: not
        claimable here until `mark_acked` (a claim before would be refused UNKNOWN_PID)."""
        self._entry(pid)["unacked"] = True

    def mark_acked(self, pid: bytes) -> None:
        entry = self._procs.get(pid)
        if entry is not None and entry.pop("unacked", None) and self.on_change is not None:
            self.on_change(pid)

    def _entry(self, pid: bytes) -> dict[str, Any]:
        entry = self._procs.get(pid)
        if entry is None:
            entry = self._procs[pid] = {"state": State.WAITING}
            self._open[pid] = None
            while len(self._procs) > PROCESSES_MAX:
                if self._closed:
                    evicted = self._closed.popitem(last=False)[0]
                    old = self._procs.pop(evicted)
                    self._whole.pop(evicted, None)
                else:  # every process held is open: the oldest goes (counted)
                    evicted, old = self._procs.popitem(last=False)
                    self.forgotten_open += 1
                self._open.pop(evicted, None)
                self._dequeue(old)
        return entry

    def _enqueue(self, pid: bytes, entry: dict[str, Any]) -> None:
        if "queued" in entry or pid not in self._open:
            return
        key = (priority_time_ns(int(entry.get("submission_ns", 0)), entry["spec"].priority), pid)
        entry["queued"] = key
        bisect.insort(self._queue, key)

    def _dequeue(self, entry: dict[str, Any]) -> None:
        key = entry.pop("queued", None)
        if key is None:
            return
        i = bisect.bisect_left(self._queue, key)
        assert i < len(self._queue) and self._queue[i] == key, "the queue lost an open process"
        del self._queue[i]

    def on_record(
        self,
        author: NodeId | None,
        kind: str,
        body: Any,
        now_s: float | None = None,
        seq: int = 0,
        spec: FunctionSpec | None = None,
    ) -> None:
        """Take a record into the view (`spec`: a submission's spec, already parsed by
        the node that makes the record)."""
        if not isinstance(body, dict):
            return
        items = body.get("processes")
        if type(items) is list and kind in ANNOUNCED_KINDS:  # a node's announcements of a step
            for item in items[:ANNOUNCE_ITEMS_MAX]:
                self.on_record(author, kind, item, now_s)
            return
        try:
            pid = bytes.fromhex(str(body["processid"]))
        except (KeyError, ValueError):
            return
        if kind == PROCESS_KIND:
            if "spec" in self._procs.get(pid, ()):
                return  # the first submission stands (a cron tick fired by two members)
            try:
                spec = spec or self.parse(body.get("spec"))
            except ColonyError:
                return
            entry = self._entry(pid)
            entry.update(
                spec=spec, submitter=author, submission_ns=int(body.get("submission_ns", 0))
            )
            if isinstance(body.get("input"), list):  # a cron's previous graph's output
                entry["input"] = body["input"]
            initiator = body.get("initiator")  # a ColonyOS identity's (the gateway)
            if isinstance(initiator, dict) and all(
                isinstance(initiator.get(k), str) and len(initiator[k]) <= 128
                for k in ("id", "name")
            ):
                entry["initiator"] = {"id": initiator["id"], "name": initiator["name"]}
            for key in ("cronid", "generatorid"):  # started by a cron or a generator
                if isinstance(body.get(key), str):
                    entry[key] = body[key]
                    if self.on_scheduled is not None:
                        self.on_scheduled(body, pid)
            entry.setdefault("arrived_s", now_s or 0.0)
            self._enqueue(pid, entry)
            own_claim = body.get(OWN_CLAIM_KEY) is True and author != self.me
            if own_claim and now_s is not None and entry["state"] is State.WAITING:
                # Its submitter claims it itself (the Claim follows the Submit): leave
                # it to the submitter until its RUNNING record can come.
                until_s = max(entry.get("busy_until_s", 0.0), now_s + OWN_CLAIM_QUIET_S)
                entry["busy_until_s"] = until_s
            if body.get("processgraphid"):
                entry.update(
                    graph=str(body["processgraphid"]),
                    parents=_pids(body.get("parents")),
                    children=_pids(body.get("children")),
                )
        elif kind == RUNNING_KIND:
            entry = self._entry(pid)
            if not entry["state"].closed:
                entry["state"] = State.RUNNING
                if now_s is not None:  # someone holds a lease: do not ask for a while
                    quiet_s = body.get("lease_s", RUNNING_QUIET_S)
                    if not isinstance(quiet_s, int | float) or not 0 < quiet_s <= 3600:
                        quiet_s = RUNNING_QUIET_S
                    entry["busy_until_s"] = now_s + float(quiet_s)
                for key in ("epoch", "executor", "start_ns"):
                    if key in body:
                        entry[key] = body[key]
        elif kind == RELEASED_KIND:
            epoch = body.get("epoch")
            if not isinstance(epoch, int) or not self._released(pid, epoch):
                return
        elif kind == CLOSED_KIND:
            entry = self._entry(pid)
            state = str(body.get("state", "FAILED"))
            entry["state"] = State[state] if state in State.__members__ else State.FAILED
            if entry["state"].closed:
                self._open.pop(pid, None)
                self._dequeue(entry)
                if pid not in self._closed:
                    self._closed[pid] = None
                    end_ns = body.get("end_ns")
                    self._whole[pid] = end_ns if type(end_ns) is int else 0
            for key in ("output", "errors", "epoch", "retries", "executor", "end_ns", "start_ns"):
                if key in body:
                    entry[key] = body[key]
        elif kind == LOG_KIND:
            if author is None or not seq:
                return
            logs = self._entry(pid).setdefault("logs", [])
            if len(logs) < LOG_RECORDS_MAX:
                logs.append((author, seq))
        elif kind == ATTRIBUTE_KIND:
            attrs = self._entry(pid).setdefault("attributes", [])
            if len(attrs) < ATTRIBUTES_MAX and isinstance(body.get("key"), str):
                attrs.append({"key": body["key"], "value": body.get("value"),
                              "attributetype": str(body.get("attributetype", "OUT")),
                              "epoch": body.get("epoch", 0)})  # fmt: skip
        else:
            return
        if self.on_change is not None:
            self.on_change(pid)

    def compact(self, now_ns: int, retention_s: float = RETENTION_S) -> int:
        """Processes closed more than `retention_s` ago keep their outcome, output,
        errors, times and the small part of their spec; their arguments, environment,
        logs index and attributes go. Returns how many were compacted."""
        horizon_ns = now_ns - int(retention_s * 1e9)
        due: list[bytes] = []
        for pid, end_ns in self._whole.items():  # (oldest first: no copy of all of it)
            if end_ns == 0:  # its end time was not said: its retention starts now
                self._whole[pid] = now_ns  # (a value, not a key: iterating goes on)
            elif end_ns > horizon_ns:
                break  # (closing order is about end order; a later one waits a pass)
            else:
                due.append(pid)
        for pid in due:
            del self._whole[pid]
            entry = self._procs[pid]
            spec = entry.get("spec")
            if spec is not None:
                entry["spec"] = replace(spec, args=(), kwargs={}, fs={}, env={}, channels=())
            for key in ("logs", "attributes", "input", "busy_until_s", "arrived_s"):
                entry.pop(key, None)
            entry["compacted"] = True
        self.compacted += len(due)
        return len(due)

    # -- workflows ----------------------------------------------------------------------

    def parents_state(self, pid: bytes) -> bool | None:
        """True when every parent succeeded (or there are none), False when one closed
        without success, None while some parent is still open (or not heard of yet)."""
        entry = self._procs.get(pid)
        pending = False
        for parent in () if entry is None else entry.get("parents", ()):
            p = self._procs.get(parent)
            state = State.WAITING if p is None else p["state"]
            if state is State.SUCCESS:
                continue
            if state.closed:
                return False
            pending = True
        return None if pending else True

    def input_of(self, pid: bytes) -> list[Any]:
        """A process's input: what its record carries (a cron's root: the previous
        graph's output), then its parents' outputs, concatenated in order."""
        entry = self._procs.get(pid)
        out: list[Any] = list(entry.get("input", ())) if entry is not None else []
        for parent in () if entry is None else entry.get("parents", ()):
            p = self._procs.get(parent)
            if p is not None:
                out.extend(p.get("output") or [])
        return out

    def blocked_by_failed_parent(self) -> list[tuple[bytes, bytes]]:
        """(pid, failed parent) for open workflow processes whose parent closed unsuccessfully."""
        out = []
        for pid in self._open:
            entry = self._procs[pid]
            if "parents" not in entry or entry["state"].closed:
                continue
            for parent in entry["parents"]:
                p = self._procs.get(parent)
                if p is not None and p["state"].closed and p["state"] != State.SUCCESS:
                    out.append((pid, parent))
                    break
        return out

    def log_index(self, pid: bytes) -> list[tuple[NodeId, int]]:
        entry = self._procs.get(pid)
        return [] if entry is None else list(entry.get("logs", ()))

    # -- scheduling ---------------------------------------------------------------------

    def waiting(self, now_s: float) -> list[tuple[bytes, FunctionSpec, int, float, bool]]:
        """Processes that may be claimed: not closed, not waiting for workflow parents,
        not this node's own submission before a majority acknowledged it, and not
        running under a lease this node heard of less than a lease ago (the voters
        decide in the end). (pid, spec, submission_ns, since when, lapsed): since when
        this node heard of it, or, `lapsed`, since its holder's quiet time ran out."""
        return list(self.waiting_in_order(now_s))

    def waiting_in_order(
        self, now_s: float
    ) -> Iterator[tuple[bytes, FunctionSpec, int, float, bool]]:
        """`waiting`, lazily, in ColonyOS order: by (priority time, pid)."""
        for _, pid in self._queue:
            entry = self._procs[pid]
            if "unacked" in entry or entry["state"].closed:
                continue
            if entry.get("busy_until_s", 0.0) > now_s:
                continue
            if entry.get("parents") and self.parents_state(pid) is not True:
                continue
            sub_ns = int(entry.get("submission_ns", 0))
            if entry["state"] is State.RUNNING and "busy_until_s" in entry:
                yield (pid, entry["spec"], sub_ns, float(entry["busy_until_s"]), True)
            else:
                yield (pid, entry["spec"], sub_ns, float(entry.get("arrived_s", 0.0)), False)

    def _released(self, pid: bytes, epoch: int) -> bool:
        """A lease of `epoch` was given back: the process waits again, unless a newer
        epoch ran it meanwhile (records of two nodes arrive in any order) or it closed."""
        entry = self._procs.get(pid)
        if entry is None or entry["state"] is not State.RUNNING or entry.get("epoch", 0) > epoch:
            return False
        entry["state"] = State.WAITING
        for key in ("busy_until_s", "executor", "start_ns"):
            entry.pop(key, None)
        return True

    def order_key(self, pid: bytes) -> tuple[int, bytes]:
        """A process's place in ColonyOS order: (priority time, pid)."""
        entry = self._procs[pid]
        return (priority_time_ns(int(entry.get("submission_ns", 0)), entry["spec"].priority), pid)

    def spec_of(self, pid: bytes) -> FunctionSpec:
        spec: FunctionSpec = self._procs[pid]["spec"]
        return spec

    def count_by_state(self) -> dict[str, int]:
        """How many processes of each state this node's view holds (for /metrics)."""
        counts = dict.fromkeys((s.name for s in State), 0)
        for entry in self._procs.values():
            if "spec" in entry:
                counts[entry["state"].name] += 1
        return counts

    def submitted_by(self, pid: bytes, node: NodeId) -> bool:
        entry = self._procs.get(pid)
        return entry is not None and entry.get("submitter") == node

    def submitter_of(self, pid: bytes) -> NodeId | None:
        entry = self._procs.get(pid)
        return None if entry is None else entry.get("submitter")

    def mark_closed_elsewhere(self, pid: bytes) -> None:
        """The voters say it is closed; its closing record has not reached us yet."""
        entry = self._procs.get(pid)
        if entry is not None and not entry["state"].closed:
            entry["busy_until_s"] = float("inf")

    def unmark_closed_elsewhere(self, pid: bytes) -> None:
        """A majority read did not find it closed after all: claimable again."""
        entry = self._procs.get(pid)
        if entry is not None and entry.get("busy_until_s") == float("inf"):
            entry["busy_until_s"] = 0.0

    def state_of(self, pid: bytes) -> State | None:
        entry = self._procs.get(pid)
        return None if entry is None or "spec" not in entry else entry["state"]

    def get(self, pid: bytes) -> dict[str, Any] | None:
        entry = self._procs.get(pid)
        return None if entry is None or "spec" not in entry else self.as_json(pid, entry)

    def list(
        self,
        state: State | None,
        limit: int,
        *,
        offset: int = 0,
        match: Callable[[dict[str, Any]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first; `match(entry)` filters further; `offset` skips that many matches."""
        out: list[dict[str, Any]] = []
        skipped = 0
        for pid, entry in reversed(self._procs.items()):
            if "spec" not in entry or (state is not None and entry["state"] != state):
                continue
            if match is not None and not match(entry):
                continue
            if skipped < offset:
                skipped += 1
                continue
            if len(out) >= limit:
                break
            out.append(self.as_json(pid, entry))
        return out

    def brief(self, pid: bytes, *, closed: bool = False) -> dict[str, Any] | None:
        """What a many-call client needs of a process: its id and state (`closed`: and
        its output and errors), without the whole object's cost to build and send."""
        entry = self._procs.get(pid)
        if entry is None or "spec" not in entry:
            return None
        out = {"processid": pid.hex(), "state": entry["state"].name}
        if closed:
            out["output"] = entry.get("output", [])
            out["errors"] = entry.get("errors", [])
        return out

    def as_json(self, pid: bytes, entry: dict[str, Any]) -> dict[str, Any]:
        submitter = entry.get("submitter")
        out = {
            "processid": pid.hex(),
            "state": entry["state"].name,
            "spec": spec_to_json(entry["spec"]),
            "submitter": peer_id_str(submitter) if submitter else None,
            "output": entry.get("output", []),
            "errors": entry.get("errors", []),
            "retries": entry.get("retries", 0),
            "epoch": entry.get("epoch", 0),
            "executor": entry.get("executor"),
            "submissiontime": iso_time(entry.get("submission_ns")),
            "starttime": iso_time(entry.get("start_ns")),
            "endtime": iso_time(entry.get("end_ns")),
            "attributes": list(entry.get("attributes", ())),
            "processgraphid": entry.get("graph"),
            "parents": [p.hex() for p in entry.get("parents", ())],
            "children": [c.hex() for c in entry.get("children", ())],
            "input": self.input_of(pid) if entry.get("parents") or "input" in entry else [],
            "cronid": entry.get("cronid"),
            "generatorid": entry.get("generatorid"),
            "initiator": entry.get("initiator"),
        }
        if entry.get("compacted"):
            out["compacted"] = True  # past the view's retention: outcome only
        return out
