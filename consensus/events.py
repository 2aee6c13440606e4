"""Events the lease core hands to the application (`Effects.events`).

Local times (`deadline_s`) are on the node's own monotonic clock, as passed to the core.
"""

from __future__ import annotations

from dataclasses import dataclass

from colonynode.consensus.messages import Outcome, Reason, RegisterView, State

__all__ = [
    "Cancelled",
    "ClaimFailed",
    "Closed",
    "Expired",
    "Granted",
    "LeaseEnded",
    "ReadResult",
    "Renewed",
    "Submitted",
    "VoterCommitted",
]


@dataclass(frozen=True, slots=True)
class Submitted:
    """A submission finished: `acked` when a majority of voters holds it durably."""

    pid: bytes
    acked: bool
    reason: Reason | None = None


@dataclass(frozen=True, slots=True)
class Granted:
    """A majority granted the lease: act on the process until `deadline_s` (local)."""

    pid: bytes
    epoch: int
    deadline_s: float


@dataclass(frozen=True, slots=True)
class ClaimFailed:
    pid: bytes
    epoch: int
    reason: Reason | None  # the refusal most voters gave; None: a timeout


@dataclass(frozen=True, slots=True)
class Renewed:
    pid: bytes
    epoch: int
    deadline_s: float


@dataclass(frozen=True, slots=True)
class LeaseEnded:
    """This node no longer holds a valid lease: stop acting on the process.

    `why`: ``closing`` (a close was sent), ``released``, ``lost`` (the deadline passed
    without a renew), ``dropped`` (the application gave it up without a release),
    ``closed`` (a majority refused a renew because the process is closed: it was
    cancelled, or failed, by its submitter or an owner; a close would be refused)."""

    pid: bytes
    epoch: int
    why: str


@dataclass(frozen=True, slots=True)
class Closed:
    """A close finished: `committed` when a majority accepted it; else `reason` is the
    refusal (STALE_EPOCH for a holder fenced out by a newer lease) or None (timeout)."""

    pid: bytes
    epoch: int
    outcome: Outcome
    committed: bool
    reason: Reason | None = None


@dataclass(frozen=True, slots=True)
class Expired:
    """An Expire this node sent finished: `committed` when a majority closed it FAILED."""

    pid: bytes
    committed: bool


@dataclass(frozen=True, slots=True)
class Cancelled:
    """A cancel this node sent finished: `committed` when a majority closed the process
    as `state` (CANCELLED, or FAILED); else `reason` is the refusal most voters gave
    (CLOSED: it was closed already; NOT_ALLOWED: neither its submitter nor an owner;
    UNKNOWN_PID: no voter has it) or None (a timeout: it may still have reached a
    majority)."""

    pid: bytes
    state: State
    committed: bool
    reason: Reason | None = None


@dataclass(frozen=True, slots=True)
class ReadResult:
    """A majority read. `committed`: a majority reported the same closed register
    (`view` is it); otherwise `view` is the highest-epoch register a voter reported
    (None: no voter knows the pid), and may not be final."""

    pid: bytes
    nonce: int
    view: RegisterView | None
    committed: bool
    answered: int


@dataclass(frozen=True, slots=True)
class VoterCommitted:
    """A voter made a terminal transition durable (for checkers and metrics), while
    serving voter-set `version` (or taking it over)."""

    pid: bytes
    view: RegisterView
    version: int = 0
