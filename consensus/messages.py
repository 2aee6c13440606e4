"""The lease protocol's messages (DESIGN.md §6): requests to voters and their replies.

Every message is a frozen, slotted dataclass registered in `CODEC` under a `Tag`. A
request goes from a claimer (any node) to every voter; a voter answers with one `Reply`
per request, holding one `Verdict` per process the request named, each with the voter's
register state after the request (`RegisterView`), so a refused claimer learns the epoch
to beat and the state it lost to.

Tags and field order are wire format: append only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from colonynode.core.codec import MessageCodec
from colonynode.core.ids import NodeId
from colonynode.core.process import State

__all__ = [
    "CODEC",
    "LEASE_S_MAX",
    "Cancel",
    "Cert",
    "Claim",
    "ClaimItem",
    "Close",
    "Compact",
    "CompactAnswer",
    "Expire",
    "Handover",
    "HandoverRequest",
    "Merge",
    "Outcome",
    "ProcessTerms",
    "Push",
    "Read",
    "Reason",
    "RegisterCopy",
    "RegisterView",
    "Release",
    "Renew",
    "Reply",
    "State",
    "Submit",
    "Tag",
    "Verdict",
]


class Tag(IntEnum):
    """Message type tags. Append-only: values are wire format."""

    SUBMIT = 1
    CLAIM = 2
    RENEW = 3
    CLOSE = 4
    RELEASE = 5
    EXPIRE = 6
    READ = 7
    SCAN = 8  # retired (voters used to offer candidates to scheduling claimers)
    REPLY = 9
    CANDIDATES = 10  # retired
    PUSH = 11
    MERGE = 12
    HANDOVER_REQUEST = 13
    HANDOVER = 14
    CANCEL = 15
    COMPACT = 16
    COMPACT_ANSWER = 17


class Outcome(IntEnum):
    """How a holder closes a process. Append-only: values are wire format."""

    SUCCESS = 0
    FAILED = 1  # an explicit fail: closed, never retried


class Reason(IntEnum):
    """Why a voter accepted or refused one item. Append-only: values are wire format."""

    OK = 0
    UNKNOWN_PID = 1  # the voter holds no register for the process
    STALE_EPOCH = 2  # the epoch is not the one the request needs
    LEASE_HELD = 3  # another holder's lease has not expired at this voter
    CLOSED = 4  # the process is closed (SUCCESS, FAILED or CANCELLED)
    NOT_HOLDER = 5  # the sender does not hold the current lease
    NOT_RUNNING = 6
    RETRIES_SPENT = 7  # a re-claim after an expiry would pass maxretries
    EXEC_TIME_SPENT = 8  # a renew past maxexectime
    WAIT_TIME_SPENT = 9  # a claim of a process that waited past maxwaittime
    NOT_EXPIRABLE = 10  # an Expire of a process that has neither run out nor spent retries
    NOT_ALLOWED = 11  # the sender lacks the role the request needs
    CONFLICT = 12  # a Submit of a known pid with different terms
    NO_MATCH = 13  # the executor type does not match the process
    FULL = 14  # the voter's register table is at registers_max
    WRONG_VERSION = 15  # the voter does not serve the voter-set version the request names
    LEASE_EXPIRED = 16  # a close after the lease ran out at this voter
    BAD_STATE = 17  # a Cancel that asks for a state other than CANCELLED or FAILED
    BUSY = 18  # never sent: this node did not start the request (too many in flight)
    FROZEN = 19  # its result could not be settled in a voter-set change (an old voter is out)
    COMPACTED = 20  # a Submit at or before the voters' compaction horizon (compaction.py)


@dataclass(frozen=True, slots=True)
class ProcessTerms:
    """The part of a process (DESIGN.md §5) the register needs.

    `pid` is the process id; `submitter` the member that submitted it. Order: highest
    `priority` first, then lowest `seq` (the submitter's submission time in ns, or any
    increasing number), then pid. `maxexectime_s` and `maxwaittime_s` of 0 or less mean
    unlimited; `maxretries` of -1 means unlimited. `executortype` must equal the
    claimer's (empty: any). The full FunctionSpec travels by gossip (issue 9).
    """

    pid: bytes
    submitter: NodeId
    executortype: str = ""
    priority: int = 0
    seq: int = 0
    maxexectime_s: float = 0.0
    maxwaittime_s: float = 0.0
    maxretries: int = 0
    # The submission's signed gossip record (opaque here): every voter that takes the
    # register holds it too, so an acknowledged process's spec survives its submitter.
    record: bytes = b""
    # A cron tick's process (node/core/crons.py): its pid is derived from the tick, and
    # any member may fire the tick. Registers of one pid with the same non-empty `tick`
    # are the same firing, whoever submitted it (register.same_process).
    tick: bytes = b""
    # A register its submitter reads back after it is closed (a cron's or a generator's
    # definition: node/core/crons.py `hold_definition`): never compacted. Nor is one with
    # a `tick` and no `series`: its pid comes from the tick, so the same process may be
    # submitted again, and only the register says it ran.
    kept: bool = False
    # The ticks of one series (a cron's: its id) come in `seq` order (the tick's time):
    # once one is dropped, a Submit of the series at or below its seq is refused
    # COMPACTED (consensus/compaction.py, "series horizons"), so a tick never runs twice.
    # A generator's registers are its series too (args, batches), held back by pins.
    series: bytes = b""

    @property
    def compactable(self) -> bool:
        return not self.kept and (not self.tick or bool(self.series))

    def __post_init__(self) -> None:
        _pid(self.pid)
        if len(self.series) > SERIES_ID_MAX:
            raise ValueError(f"a series id of {len(self.series)} bytes, over {SERIES_ID_MAX}")


# -- requests (claimer -> voter) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submit:
    terms: ProcessTerms
    version: int = 0  # the voter-set version the sender addresses (roster order)


@dataclass(frozen=True, slots=True)
class ClaimItem:
    pid: bytes
    epoch: int

    def __post_init__(self) -> None:
        _pid(self.pid)


LEASE_S_MAX = 3600.0  # the longest lease a voter grants (a longer claim is refused)
NONCE_MAX = (1 << 64) - 1  # nonces are unsigned 64-bit (a read's is part of its op key)
PID_BYTES_MAX = 64  # a process id: 1..64 bytes (it keys the voters' registers)
SERIES_ID_MAX = 32  # a series id (ProcessTerms.series): a cron's id
SETTLE_PIDS_MAX = 256  # frozen processes one HandoverRequest asks about (settle.py)


def _pid(value: bytes) -> None:
    if not 1 <= len(value) <= PID_BYTES_MAX:
        raise ValueError(f"a process id is 1..{PID_BYTES_MAX} bytes, not {len(value)}")


def _nonce(value: int) -> None:
    if not 0 <= value <= NONCE_MAX:
        raise ValueError(f"a nonce is 0..2**64-1, not {value}")


@dataclass(frozen=True, slots=True)
class Claim:
    """One request that claims several processes, all for `lease_s` (at most
    LEASE_S_MAX)."""

    items: tuple[ClaimItem, ...]
    lease_s: float
    executortype: str = ""
    version: int = 0
    nonce: int = 0  # echoed in the Reply: a reply counts only for the request it answers

    def __post_init__(self) -> None:
        _nonce(self.nonce)


@dataclass(frozen=True, slots=True)
class Renew:
    items: tuple[ClaimItem, ...]
    version: int = 0
    nonce: int = 0  # echoed in the Reply (a late reply to an older renew must not count)

    def __post_init__(self) -> None:
        _nonce(self.nonce)


@dataclass(frozen=True, slots=True)
class Close:
    pid: bytes
    epoch: int
    outcome: Outcome
    output: Any = None
    errors: tuple[str, ...] = ()
    version: int = 0

    def __post_init__(self) -> None:
        _pid(self.pid)


@dataclass(frozen=True, slots=True)
class Release:
    pid: bytes
    epoch: int
    version: int = 0

    def __post_init__(self) -> None:
        _pid(self.pid)


@dataclass(frozen=True, slots=True)
class Expire:
    pid: bytes
    epoch: int
    version: int = 0

    def __post_init__(self) -> None:
        _pid(self.pid)


@dataclass(frozen=True, slots=True)
class Cancel:
    """Abort a process, whatever its lease: the submitter (or an owner) cancels it
    (`state` CANCELLED), or fails it (FAILED, e.g. a workflow parent failed). No epoch:
    it fences out every lease, the current one included."""

    pid: bytes
    state: State
    errors: tuple[str, ...] = ()
    version: int = 0

    def __post_init__(self) -> None:
        _pid(self.pid)


@dataclass(frozen=True, slots=True)
class Read:
    pid: bytes
    nonce: int

    def __post_init__(self) -> None:
        _pid(self.pid)
        _nonce(self.nonce)


# -- replies (voter -> claimer) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegisterView:
    """A voter's register for one process, as it answers."""

    pid: bytes
    state: State
    epoch: int
    holder: NodeId | None
    retries: int
    output: Any = None
    errors: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _pid(self.pid)


# A result's certificate (certs.py): (voter, its signature of the result), a majority
# of one voter set's.
Cert = tuple[tuple[NodeId, bytes], ...]


@dataclass(frozen=True, slots=True)
class Verdict:
    pid: bytes
    epoch: int  # the epoch the request named
    reason: Reason
    view: RegisterView | None  # None: the voter has no register for pid
    # LEASE_HELD: how long the lease this voter granted has left (its own clock), so a
    # claimer does not ask again before it may have lapsed
    lease_left_s: float = 0.0
    # OK, for a register of a series: the voter's horizon of that series (-1: none), so
    # a generator's batch takes a seq above it (node/core/generators.py `_close`)
    horizon: int = -1
    # a closed register: the voter's signature of its result (certs.py), or b""
    sig: bytes = b""

    @property
    def ok(self) -> bool:
        return self.reason is Reason.OK

    def __post_init__(self) -> None:
        _pid(self.pid)


@dataclass(frozen=True, slots=True)
class Reply:
    """A voter's answer to one request; `request` is the request's tag, `nonce` the
    nonce of a Read, Claim or Renew (0 otherwise)."""

    request: Tag
    verdicts: tuple[Verdict, ...]
    nonce: int = 0
    version: int = 0  # the voter-set version the voter decided under
    # a Read's reply: how many processes the voter holds frozen (handover.py); auto
    # mode gives them a grace period to settle before it changes the voters
    frozen: int = 0

    def __post_init__(self) -> None:
        _nonce(self.nonce)
        if not 0 <= self.frozen < 2**32:
            raise ValueError(f"frozen {self.frozen} out of range")


# -- repair (claimer -> voter -> voters) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Push:
    """Ask a voter to send its register for `pid` to the voters `to` (a claimer that
    saw the voters disagree: one lacks the process, or one has it closed)."""

    pid: bytes
    to: tuple[NodeId, ...]

    def __post_init__(self) -> None:
        _pid(self.pid)


@dataclass(frozen=True, slots=True)
class RegisterCopy:
    """A whole register, as one voter hands it to another (no local times)."""

    terms: ProcessTerms
    state: State
    epoch: int
    holder: NodeId | None
    lease_s: float
    retries: int
    output: Any = None
    errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Merge:
    """A voter's register for another voter to merge: a missing process is adopted, a
    closed register replaces an open one; nothing else changes. Only a voter that serves
    `version` (the set the sender serves) takes it: a copy never crosses voter sets."""

    copy: RegisterCopy
    version: int = 0  # the voter-set version its sender serves (0: an older sender's)
    # a closed result a majority of the set holds (compaction.py found it so): a voter
    # that holds another closed result adopts it (that one was never committed)
    majority: bool = False


# -- voter-set change (new voter -> old voter -> new voter) --------------------------


@dataclass(frozen=True, slots=True)
class HandoverRequest:
    """A voter of set `version` asks a voter of the previous set for its registers
    after pid `after` (b"" first). The old voter seals itself first: it stops accepting
    any change under the older version, so what it hands over is final. With `only`: its
    registers of those pids alone (a process still frozen after the handover: settle.py),
    whatever set the old voter serves now."""

    version: int
    after: bytes
    only: tuple[bytes, ...] = ()
    asked: int = 0  # the version of the previous set, as the asker knows it (0: not known)

    def __post_init__(self) -> None:
        if len(self.only) > SETTLE_PIDS_MAX:
            raise ValueError(
                f"{len(self.only)} pids in one HandoverRequest, over {SETTLE_PIDS_MAX}"
            )
        for pid in self.only:
            _pid(pid)


@dataclass(frozen=True, slots=True)
class Handover:
    """Registers of a sealed voter, in pid order; `done` when there are no more.
    `withheld`: the pids of this page's range the voter holds frozen and does not hand
    on (handover.py): the new voter freezes them too."""

    version: int
    after: bytes
    copies: tuple[RegisterCopy, ...]
    done: bool
    withheld: tuple[bytes, ...] = ()
    horizon: int = 0  # the sender's compaction horizon (compaction.py; 0: an older sender's)
    series: tuple[tuple[bytes, int], ...] = ()  # ... and its series horizons (`done` page)
    only: tuple[bytes, ...] = ()  # the pids a request `only` asked about (the answer's)

    def __post_init__(self) -> None:
        _series_horizons(self.series, 2 * SERIES_MAX)  # (a set's, and a new voter's own)
        if len(self.only) > SETTLE_PIDS_MAX:
            raise ValueError(
                f"{len(self.only)} pids in one Handover answer, over {SETTLE_PIDS_MAX}"
            )


# -- compaction (voter -> the other voters of its set -> voter) ----------------------

COMPACT_PIDS_MAX = 256  # processes one Compact names
SERIES_MAX = 4096  # series horizons a voter keeps (compaction.py); one Handover carries them


def _series_horizons(series: tuple[tuple[bytes, int], ...], most: int) -> None:
    if len(series) > most or any(len(s) > SERIES_ID_MAX for s, _ in series):
        raise ValueError(f"{len(series)} series horizons, over {most} (or a long id)")


@dataclass(frozen=True, slots=True)
class Compact:
    """A voter of set `version` that would drop the closed registers `pids` asks every
    other voter of its set whether it holds any of them open or closed otherwise
    (`results`: a digest of each one's closed result, in order); each first raises its
    compaction horizon to `horizon` (the highest `seq` among them)."""

    version: int
    pids: tuple[bytes, ...]
    horizon: int
    results: tuple[bytes, ...] = ()
    series: tuple[tuple[bytes, int], ...] = ()  # (series, the highest seq among its pids)

    def __post_init__(self) -> None:
        _series_horizons(self.series, COMPACT_PIDS_MAX)
        if len(self.pids) > COMPACT_PIDS_MAX:
            raise ValueError(f"{len(self.pids)} pids in one Compact, over {COMPACT_PIDS_MAX}")
        if len(self.results) != len(self.pids) or any(len(r) > 32 for r in self.results):
            raise ValueError("a Compact names one result digest (<= 32 bytes) per pid")
        for pid in self.pids:
            _pid(pid)


@dataclass(frozen=True, slots=True)
class CompactAnswer:
    """The asked pids this voter holds closed with the same result, or not at all
    (`pids`), and those of them it holds (`same`)."""

    version: int
    pids: tuple[bytes, ...]
    same: tuple[bytes, ...] = ()
    sigs: tuple[bytes, ...] = ()  # this voter's signature of each `same` result (certs.py)

    def __post_init__(self) -> None:
        if len(self.sigs) > len(self.same):
            raise ValueError("a CompactAnswer signs at most the results it holds")
        if len(self.pids) > COMPACT_PIDS_MAX or len(self.same) > len(self.pids):
            raise ValueError(f"{len(self.pids)} pids in one CompactAnswer, over {COMPACT_PIDS_MAX}")
        for pid in self.pids:
            _pid(pid)


CODEC = MessageCodec(
    "lease",
    {
        Tag.SUBMIT: Submit,
        Tag.CLAIM: Claim,
        Tag.RENEW: Renew,
        Tag.CLOSE: Close,
        Tag.RELEASE: Release,
        Tag.EXPIRE: Expire,
        Tag.READ: Read,
        Tag.REPLY: Reply,
        Tag.PUSH: Push,
        Tag.MERGE: Merge,
        Tag.HANDOVER_REQUEST: HandoverRequest,
        Tag.HANDOVER: Handover,
        Tag.CANCEL: Cancel,
        Tag.COMPACT: Compact,
        Tag.COMPACT_ANSWER: CompactAnswer,
    },
)
