"""Processes as a node sees them (DESIGN.md §5): a local, eventually consistent view built
from gossip records, and submission through the lease quorum.

A submission is a gossip record of kind ``process`` (the ColonyOS spec, the submitter,
the submission time) plus a register on the voters (`consensus`): the user hears
"submitted" only once a majority of voters holds the register durably. Closing records
(kind ``process-closed``) come with the end-to-end issue's executors.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from typing import Any

from colonynode.consensus.messages import ProcessTerms
from colonynode.core.errors import ColonyError
from colonynode.core.ids import NodeId, peer_id_str
from colonynode.core.process import FunctionSpec, State, parse_spec, spec_to_json

__all__ = ["CLOSED_KIND", "PROCESS_KIND", "RUNNING_KIND", "ProcessBook", "new_pid", "terms_of"]

PROCESS_KIND = "process"
RUNNING_KIND = "process-running"
CLOSED_KIND = "process-closed"
PROCESSES_MAX = 100_000  # processes held in the view; the oldest are forgotten first
RUNNING_QUIET_S = 10.0  # after hearing a process started, leave it to its holder this long


def new_pid() -> bytes:
    return secrets.token_bytes(16)


def terms_of(pid: bytes, spec: FunctionSpec, submitter: NodeId, submission_ns: int) -> ProcessTerms:
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
    )


def _iso(ns: int | None) -> str | None:
    if not ns:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns / 1e9)) + f".{ns % 10**9:09d}Z"


class ProcessBook:
    """pid -> what this node knows of the process (bounded, insertion-ordered)."""

    def __init__(self) -> None:
        self._procs: OrderedDict[bytes, dict[str, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._procs)

    def on_record(
        self, author: NodeId | None, kind: str, body: Any, now_s: float | None = None
    ) -> None:
        if not isinstance(body, dict):
            return
        try:
            pid = bytes.fromhex(str(body["processid"]))
        except (KeyError, ValueError):
            return
        if kind == PROCESS_KIND:
            try:
                spec = parse_spec(body.get("spec"))
            except ColonyError:
                return
            entry = self._procs.setdefault(pid, {"state": State.WAITING})
            entry.update(
                spec=spec, submitter=author, submission_ns=int(body.get("submission_ns", 0))
            )
            while len(self._procs) > PROCESSES_MAX:
                self._procs.popitem(last=False)
        elif kind == RUNNING_KIND:
            entry = self._procs.setdefault(pid, {"state": State.WAITING})
            if not State(entry["state"]).closed:
                entry["state"] = State.RUNNING
                if now_s is not None:  # someone holds a lease: do not ask for a while
                    entry["busy_until_s"] = now_s + RUNNING_QUIET_S
                for key in ("epoch", "executor", "start_ns"):
                    if key in body:
                        entry[key] = body[key]
        elif kind == CLOSED_KIND:
            entry = self._procs.setdefault(pid, {"state": State.WAITING})
            state = str(body.get("state", "FAILED"))
            entry["state"] = State[state] if state in State.__members__ else State.FAILED
            for key in ("output", "errors", "epoch", "retries", "executor", "end_ns", "start_ns"):
                if key in body:
                    entry[key] = body[key]

    def waiting(self, now_s: float) -> list[tuple[bytes, FunctionSpec, int]]:
        """Processes that may be claimed: not closed, and not running under a lease this
        node heard of less than a lease ago (the voters decide in the end)."""
        out = []
        for pid, entry in self._procs.items():
            if "spec" not in entry or State(entry["state"]).closed:
                continue
            if entry.get("busy_until_s", 0.0) > now_s:
                continue
            out.append((pid, entry["spec"], int(entry.get("submission_ns", 0))))
        return out

    def mark_running(self, pid: bytes, until_s: float, epoch: int, executor: str,
                     start_ns: int) -> None:  # fmt: skip
        entry = self._procs.get(pid)
        if entry is not None:
            entry.update(state=State.RUNNING, busy_until_s=until_s, epoch=epoch,
                         executor=executor, start_ns=start_ns)  # fmt: skip

    def count_by_state(self) -> dict[str, int]:
        """How many processes of each state this node's view holds (for /metrics)."""
        counts = dict.fromkeys((s.name for s in State), 0)
        for entry in self._procs.values():
            if "spec" in entry:
                counts[State(entry["state"]).name] += 1
        return counts

    def submitted_by(self, pid: bytes, node: NodeId) -> bool:
        entry = self._procs.get(pid)
        return entry is not None and entry.get("submitter") == node

    def mark_closed_elsewhere(self, pid: bytes) -> None:
        """The voters say it is closed; its closing record has not reached us yet."""
        entry = self._procs.get(pid)
        if entry is not None and not State(entry["state"]).closed:
            entry["busy_until_s"] = float("inf")

    def get(self, pid: bytes) -> dict[str, Any] | None:
        entry = self._procs.get(pid)
        return None if entry is None or "spec" not in entry else self.as_json(pid, entry)

    def list(self, state: State | None, limit: int) -> list[dict[str, Any]]:
        out = []
        for pid, entry in reversed(self._procs.items()):
            if "spec" not in entry or (state is not None and entry["state"] != state):
                continue
            out.append(self.as_json(pid, entry))
            if len(out) >= limit:
                break
        return out

    @staticmethod
    def as_json(pid: bytes, entry: dict[str, Any]) -> dict[str, Any]:
        submitter = entry.get("submitter")
        return {
            "processid": pid.hex(),
            "state": State(entry["state"]).name,
            "spec": spec_to_json(entry["spec"]),
            "submitter": peer_id_str(submitter) if submitter else None,
            "output": entry.get("output", []),
            "errors": entry.get("errors", []),
            "retries": entry.get("retries", 0),
            "epoch": entry.get("epoch", 0),
            "executor": entry.get("executor"),
            "submissiontime": _iso(entry.get("submission_ns")),
            "starttime": _iso(entry.get("start_ns")),
            "endtime": _iso(entry.get("end_ns")),
        }
