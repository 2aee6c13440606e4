"""What the application asks the lease core: `ConsensusCore.request(now_s, req) -> id`.

One entry point (raft's `Propose` is a `Step(MsgProp)`): every request is a frozen
dataclass here, and every one is answered by events carrying its id in `reqs`
(events.py), whether it was decided by the voters, refused by this node at once (BUSY,
NOT_ALLOWED, NOT_HOLDER) or timed out (reason None):

| request | answered by |
| --- | --- |
| `SubmitProcess(terms)` | `Submitted` once a majority holds it durably (or refused) |
| `ClaimLeases(pids, lease_s)` | one `Granted` or `ClaimFailed` per distinct pid |
| `CloseProcess(pid, outcome, output, errors)` | `Closed` (with the committed view) |
| `ReleaseLease(pid)`, `ReleaseAll()` | `Released` at once (the releases are sent) |
| `DropLease(pid)` | `Dropped` at once (nothing is sent: the lease expires) |
| `ExpireProcess(pid, epoch)` | `Expired` |
| `CancelProcess(pid, state, errors)` | `Cancelled` |
| `ReadRegister(pid)` | `ReadResult` (a majority read) |
| `ChangeVoters(version, voters)` | `VotersChanged` at once (seal-then-serve starts) |

A request for a pid that already has the same kind of request in flight (a second
submit, close, expire or cancel of it) joins the one in flight: both ids are answered by
the same event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from colonynode.consensus.messages import Outcome, ProcessTerms
from colonynode.core.ids import NodeId
from colonynode.core.process import State

__all__ = [
    "CancelProcess",
    "ChangeVoters",
    "ClaimLeases",
    "CloseProcess",
    "DropLease",
    "ExpireProcess",
    "ReadRegister",
    "ReleaseAll",
    "ReleaseLease",
    "Request",
    "SubmitProcess",
]


@dataclass(frozen=True, slots=True)
class SubmitProcess:
    terms: ProcessTerms


@dataclass(frozen=True, slots=True)
class ClaimLeases:
    """Claim processes in one batched request (`lease_s` None: the configured lease)."""

    pids: tuple[bytes, ...]
    lease_s: float | None = None


@dataclass(frozen=True, slots=True)
class CloseProcess:
    """Close with the held lease's epoch: SUCCESS with `output`, or FAILED (an explicit
    fail, never retried)."""

    pid: bytes
    outcome: Outcome
    output: Any = None
    errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReleaseLease:
    """Give a held lease back (stop acting first): WAITING again, no retry counted."""

    pid: bytes


@dataclass(frozen=True, slots=True)
class ReleaseAll:
    """A clean shutdown: release every lease held."""


@dataclass(frozen=True, slots=True)
class DropLease:
    """Forget a held lease without telling the voters (its executor died): it expires
    there and the process is retried elsewhere, counted as a retry."""

    pid: bytes


@dataclass(frozen=True, slots=True)
class ExpireProcess:
    """Close FAILED a process whose lease ran out with its retries spent, or that waited
    past maxwaittime (any node may)."""

    pid: bytes
    epoch: int = 0


@dataclass(frozen=True, slots=True)
class CancelProcess:
    """Abort a process whatever its lease: CANCELLED, or FAILED (a workflow parent
    failed). The voters accept it from its submitter or an owner."""

    pid: bytes
    state: State = State.CANCELLED
    errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReadRegister:
    """A majority read (`colonynode get --consistent`)."""

    pid: bytes


@dataclass(frozen=True, slots=True)
class ChangeVoters:
    """The roster's voter set changed to `voters` at `version` (the set of version - 1 is
    `previous`, by default the set this node knew): seal-then-serve."""

    version: int
    voters: tuple[NodeId, ...]
    previous: tuple[NodeId, ...] | None = None


Request = (
    SubmitProcess
    | ClaimLeases
    | CloseProcess
    | ReleaseLease
    | ReleaseAll
    | DropLease
    | ExpireProcess
    | CancelProcess
    | ReadRegister
    | ChangeVoters
)
