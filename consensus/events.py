"""Events the lease core hands to the application (`Effects.events`).

Local times (`deadline_s`) are on the node's own monotonic clock, as passed to the core.
An event that answers requests (requests.py) carries their ids in `reqs`; the others
(`Renewed`, `LeaseEnded`, `VoterCommitted`) carry none. `reqs` and the committed `view`
an answer brings are left out of equality: two events are equal when they say the same
thing happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from colonynode.consensus.messages import (
    Cert,
    Outcome,
    ProcessTerms,
    Reason,
    RegisterView,
    State,
)

__all__ = [
    "Cancelled",
    "ClaimFailed",
    "Closed",
    "Compacted",
    "Dropped",
    "Expired",
    "Granted",
    "LeaseEnded",
    "ReadResult",
    "Registered",
    "Released",
    "Renewed",
    "Submitted",
    "VoterCommitted",
    "VotersChanged",
]

Reqs = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Submitted:
    """A submission finished: `acked` when a majority of voters holds it durably."""

    pid: bytes
    acked: bool
    reason: Reason | None = None
    reqs: Reqs = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class Granted:
    """A majority granted the lease: act on the process until `deadline_s` (local)."""

    pid: bytes
    epoch: int
    deadline_s: float
    reqs: Reqs = field(default=(), compare=False)
    horizon: int = -1  # the highest series horizon a granting voter named (Verdict.horizon)
    cert: Cert = field(default=(), compare=False)  # a majority's signatures of the grant


@dataclass(frozen=True, slots=True)
class ClaimFailed:
    """`reason`: the refusal most voters gave; None: a timeout; BUSY or NOT_ALLOWED
    without asking the voters (too many in flight; held or claimed here already)."""

    pid: bytes
    epoch: int
    reason: Reason | None
    reqs: Reqs = field(default=(), compare=False)
    retry_after_s: float = field(default=0.0, compare=False)  # LEASE_HELD: the lease left


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
    """A close finished: `committed` when a majority accepted it (`view`: the register
    they hold now); else `reason` is the refusal (STALE_EPOCH for a holder fenced out
    by a newer lease, NOT_HOLDER when no lease is held here) or None (timeout)."""

    pid: bytes
    epoch: int
    outcome: Outcome
    committed: bool
    reason: Reason | None = None
    view: RegisterView | None = field(default=None, compare=False)  # committed: a majority's
    reqs: Reqs = field(default=(), compare=False)
    cert: Cert = field(default=(), compare=False)  # committed: its certificate (certs.py)


@dataclass(frozen=True, slots=True)
class Expired:
    """An Expire this node sent finished: `committed` when a majority closed it FAILED."""

    pid: bytes
    committed: bool
    reason: Reason | None = None
    view: RegisterView | None = field(default=None, compare=False)  # committed: a majority's
    reqs: Reqs = field(default=(), compare=False)
    cert: Cert = field(default=(), compare=False)  # committed: its certificate (certs.py)


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
    view: RegisterView | None = field(default=None, compare=False)  # committed: a majority's
    reqs: Reqs = field(default=(), compare=False)
    cert: Cert = field(default=(), compare=False)  # committed: its certificate (certs.py)


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
    reqs: Reqs = field(default=(), compare=False)
    cert: Cert = field(default=(), compare=False)  # committed: its certificate (certs.py)


@dataclass(frozen=True, slots=True)
class Released:
    """A release (or a release of all) was handled: `pids` are the leases given back
    (empty: none was held). The voters are told; nobody waits for their answer."""

    pids: tuple[bytes, ...]
    reqs: Reqs = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class Dropped:
    """A drop was handled: `dropped` if a lease on `pid` was held (it expires there)."""

    pid: bytes
    dropped: bool
    reqs: Reqs = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class VotersChanged:
    """A voter-set change was taken (`changed`: it was newer than the one known)."""

    version: int
    changed: bool
    reqs: Reqs = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class Registered:
    """A voter took a new process's register (durable with this step's writes); the
    application may keep `terms.record`, the submission's signed gossip record."""

    terms: ProcessTerms


@dataclass(frozen=True, slots=True)
class VoterCommitted:
    """A voter made a terminal transition durable (for checkers and metrics), while
    serving voter-set `version` (or taking it over)."""

    pid: bytes
    view: RegisterView
    version: int = 0


@dataclass(frozen=True, slots=True)
class Compacted:
    """A voter dropped these closed registers (compaction.py): no voter of set
    `version` held any of them open. `views`: what they held (the voter's node
    announces a result its own view never heard of: after this, nobody can read it)."""

    pids: tuple[bytes, ...]
    version: int
    views: tuple[RegisterView, ...] = ()
    certs: tuple[Cert, ...] = ()  # each view's certificate: the voters that held it (certs.py)
