"""What the API and executors ask NodeCore, and what it tells its driver.

`NodeCore.request(now_s, req) -> id` takes one of the requests below; the answer is an
`Answer(req, value, error)` event in this or a later step's effects (a long-poll such
as `Assign` or `WaitProcess` is answered when it can be, or at its deadline). The values
are plain JSON data for the API, except where a request says otherwise. A caller that
goes away tells NodeCore with `NodeCore.forget(now_s, id)`: an `Assign` it forgets
releases the lease a late grant brings.

Notices are events for the driver to act on: `Dial`, `Disconnect`, `Silenced`, and
`RunStopped` (an executor's run must stop: its lease was lost or the process
cancelled). NodeCore also passes through the lease core's events (`Granted`,
`LeaseEnded`, `VoterCommitted`, ...) for the simulator's checkers; drivers ignore them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from colonynode.consensus.requests import Request as LeaseRequest
from colonynode.core.envelope import Envelope
from colonynode.core.errors import ColonyError
from colonynode.core.ids import NodeId
from colonynode.core.process import FunctionSpec
from colonynode.core.scheduling import ExecutorAdvert, Waiting
from colonynode.dht import FileRevision
from colonynode.node.core.messages import JoinAccepted, JoinRequest

__all__ = [
    "AddAttribute",
    "AddCron",
    "AddGenerator",
    "Admit",
    "Answer",
    "Assign",
    "AutoVoters",
    "CancelProcess",
    "CloseRun",
    "CreateInvite",
    "Detach",
    "Dial",
    "Disconnect",
    "FindPeer",
    "FsAddRevision",
    "FsCommit",
    "FsGet",
    "FsProvide",
    "FsProviders",
    "FsRemove",
    "FsSnapshot",
    "FsSnapshotRemove",
    "GetCron",
    "GetGenerator",
    "GetProcess",
    "Heartbeat",
    "Joined",
    "Lease",
    "ListCrons",
    "ListGenerators",
    "LogLines",
    "PackGenerator",
    "Planned",
    "ProcessLogs",
    "PublishRecord",
    "RegisterExecutor",
    "ReleaseAll",
    "RemoveCron",
    "RemoveGenerator",
    "RemoveMember",
    "Request",
    "RunCron",
    "RunStopped",
    "SetVoters",
    "Silenced",
    "SubmitProcess",
    "SubmitWorkflow",
    "WaitAny",
    "WaitProcess",
]

# -- processes -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Initiator:
    """Who asked for a process, where that is more than the submitting node: a ColonyOS
    identity through the Colonies gateway (its key id and name)."""

    id: str
    name: str

    def as_json(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name}


@dataclass(frozen=True, slots=True)
class SubmitProcess:
    """Answered with the process once a majority of voters holds it durably (`brief`:
    its id and state only, `ProcessBook.brief`)."""

    spec: FunctionSpec
    brief: bool = False
    initiator: Initiator | None = None


@dataclass(frozen=True, slots=True)
class SubmitWorkflow:
    """A ColonyOS WorkflowSpec (validated: `core.process.parse_workflow`); answered with
    `{processgraphid, processes}` once a majority holds every step."""

    specs: tuple[FunctionSpec, ...]
    initiator: Initiator | None = None


@dataclass(frozen=True, slots=True)
class AddChild:
    """A new step of a workflow, child of `parent`, which must be RUNNING in `graph`
    (ColonyOS's addchild): it waits for the parent and gets its output as input.
    Answered with the child once a majority of voters holds it."""

    graph: bytes
    parent: bytes
    spec: FunctionSpec


@dataclass(frozen=True, slots=True)
class GetProcess:
    """This node's view of a process; `consistent` overlays a majority read."""

    pid: bytes
    consistent: bool = False


@dataclass(frozen=True, slots=True)
class WaitProcess:
    """Answered once the process is closed, or at `timeout_s` as it is then."""

    pid: bytes
    timeout_s: float


@dataclass(frozen=True, slots=True)
class WaitAny:
    """Answered with the list of these processes closed by then, once one is; `[]` at
    `timeout_s`."""

    pids: tuple[bytes, ...]
    timeout_s: float
    brief: bool = False  # each process as `ProcessBook.brief`


@dataclass(frozen=True, slots=True)
class ProcessLogs:
    """Log lines from the `after`-th log record on; with `wait_s`, waits that long for
    a first new one unless the process is closed."""

    pid: bytes
    after: int = 0
    wait_s: float = 0.0


@dataclass(frozen=True, slots=True)
class CancelProcess:
    """Close a process CANCELLED at a majority of voters (its submitter's node or the
    owner's node only)."""

    pid: bytes


# -- crons ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddCron:
    """A ColonyOS cron (`name`, `cronexpression` or `interval`, `random`,
    `waitforprevprocessgraph`, `workflowspec`); answered with it once a majority of
    voters holds it."""

    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class GetCron:
    cronid: bytes


@dataclass(frozen=True, slots=True)
class ListCrons:
    pass


@dataclass(frozen=True, slots=True)
class RemoveCron:
    cronid: bytes


@dataclass(frozen=True, slots=True)
class RunCron:
    """Fire a cron now (a tick of its own); answered with the graph once a majority
    holds it."""

    cronid: bytes


@dataclass(frozen=True, slots=True)
class AddGenerator:
    """A ColonyOS generator (`name`, `workflowspec`, `trigger`, `timeout`); answered with
    it once a majority of voters holds it."""

    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PackGenerator:
    """Queue an arg; answered `{generatorid, argid}` once a majority holds it."""

    generatorid: bytes
    arg: str


@dataclass(frozen=True, slots=True)
class GetGenerator:
    generatorid: bytes


@dataclass(frozen=True, slots=True)
class ListGenerators:
    pass


@dataclass(frozen=True, slots=True)
class RemoveGenerator:
    generatorid: bytes


# -- executors -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegisterExecutor:
    """Attach an executor; answered with `{executor_id, name, silent_s_max}`. `slots`:
    how many processes it runs at once (how many `Assign` calls may wait together)."""

    advert: ExecutorAdvert
    slots: int = 1


@dataclass(frozen=True, slots=True)
class Assign:
    """A process claimed for the executor (its view, with epoch and input), or None
    after `timeout_s`. A claim still out at the deadline is waited for."""

    executor_id: str
    timeout_s: float


@dataclass(frozen=True, slots=True)
class CloseRun:
    """Commit a run's result under its lease's epoch: SUCCESS with `output`, or FAILED
    with `errors` (never retried). `elapsed_s`: how long the run took, as the executor
    measured it (it tells the node how far ahead to claim for it)."""

    executor_id: str
    pid: bytes
    success: bool
    output: Any = None
    errors: tuple[str, ...] = ()
    elapsed_s: float | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The executor lives; answered `{"processes": {pid: held | lost | cancelled}}`."""

    executor_id: str


@dataclass(frozen=True, slots=True)
class LogLines:
    executor_id: str
    pid: bytes
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AddAttribute:
    executor_id: str
    pid: bytes
    key: str
    value: str
    attributetype: str = "OUT"


@dataclass(frozen=True, slots=True)
class Detach:
    """The executor leaves: `release` gives its leases back at once (no retry counted);
    without it (its connection died) they are dropped and expire at the voters."""

    executor_id: str
    release: bool = True


# -- the lease quorum, the DHT -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lease:
    """A raw lease-core request (the /v1/leases primitives); answered with the lease
    core's event, or, for a claim, the list of one event per pid in order."""

    req: LeaseRequest


@dataclass(frozen=True, slots=True)
class FsAddRevision:
    label: str
    name: str
    revision: FileRevision


@dataclass(frozen=True, slots=True)
class FsGet:
    label: str
    name: str


@dataclass(frozen=True, slots=True)
class FsCommit:
    """ColonyFS revisions whose chunks are stored (each a dict: label, name, sha256,
    size, chunks, tree); answered with their JSON once a majority of voters holds them."""

    files: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class FsRemove:
    """Every revision of `name` in `label`, or (no name) of every file under `label`."""

    label: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class FsSnapshot:
    label: str
    name: str


@dataclass(frozen=True, slots=True)
class FsSnapshotRemove:
    name: str


@dataclass(frozen=True, slots=True)
class FsProvide:
    """Announce in the DHT that this node holds chunk `key` (answered with whether a
    provider record was stored)."""

    key: bytes


@dataclass(frozen=True, slots=True)
class FsProviders:
    """The members a DHT provider record names for chunk `key` (a tuple of NodeIds)."""

    key: bytes


@dataclass(frozen=True, slots=True)
class FindPeer:
    """A member's addresses from its signed /peer/ record (answered with a tuple)."""

    node: NodeId


# -- membership ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateInvite:
    """The owner's node issues an invite; answered with the token."""

    roles: tuple[str, ...]
    ttl_s: float


@dataclass(frozen=True, slots=True)
class RemoveMember:
    member: str  # a name or peer id


@dataclass(frozen=True, slots=True)
class SetVoters:
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AutoVoters:
    """`voters auto`: the owner's node keeps the voters (node/core/voters_auto.py);
    `never`: member names never to vote (None: as before), `grace_s`: how long a voter
    may be away before it is replaced (None: as before)."""

    never: tuple[str, ...] | None = None
    grace_s: float | None = None


@dataclass(frozen=True, slots=True)
class Admit:
    """The owner's node admits `joiner` presenting `join` (answered with the
    `JoinAccepted` to send back, or an error the joiner should see)."""

    joiner: NodeId
    join: JoinRequest


@dataclass(frozen=True, slots=True)
class Joined:
    """This node joined: the owner's answer to take (answered with the roster's
    colony name, or JoinFailed)."""

    accepted: JoinAccepted


@dataclass(frozen=True, slots=True)
class ColoniesKeyChange:
    """A change to the roster's Colonies keys (docs/colonies-api.md), made by the owner's
    node; answered `{key, roster_version}` (`key`: the entry as it stands, or None once
    removed). `signer`: the Colonies key id that signed the request asking for it (the
    daemon checked the signature), "" for a member's request for its own user key
    (`member`). `op`: add_colony, add_user, add_executor, approve, reject, remove."""

    op: str
    key_id: str = ""
    name: str = ""
    executortype: str = ""
    signer: str = ""
    member: NodeId | None = None


@dataclass(frozen=True, slots=True)
class LanPeer:
    """A node seen on the LAN (an mDNS advert, node/daemon/lan.py): a hint of a
    member's addresses, never an identity (the dial's Noise handshake checks the peer
    id each address names). Answered True if it is a member this node will dial."""

    node: NodeId
    addrs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OfferRoster:
    """A roster envelope from the owner's answer: taken if newer (answered True then)."""

    roster: Envelope


@dataclass(frozen=True, slots=True)
class PublishRecord:
    """A signed gossip record for every member; answered `{author, seq, kind}`."""

    kind: str
    body: Any


@dataclass(frozen=True, slots=True)
class ReleaseAll:
    """A clean shutdown: release every lease held; answered with how many."""


Request = (
    SubmitProcess
    | SubmitWorkflow
    | AddChild
    | GetProcess
    | WaitProcess
    | WaitAny
    | ProcessLogs
    | CancelProcess
    | ColoniesKeyChange
    | OfferRoster
    | LanPeer
    | RegisterExecutor
    | Assign
    | CloseRun
    | Heartbeat
    | LogLines
    | AddAttribute
    | Detach
    | Lease
    | FsAddRevision
    | FsGet
    | FsCommit
    | FsRemove
    | FsSnapshot
    | FsSnapshotRemove
    | FsProvide
    | FsProviders
    | FindPeer
    | CreateInvite
    | RemoveMember
    | SetVoters
    | AutoVoters
    | Admit
    | Joined
    | PublishRecord
    | ReleaseAll
)

# -- events ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to request `req`: `value`, or `error` (a ColonyError to raise)."""

    req: int
    value: Any = None
    error: ColonyError | None = None


@dataclass(frozen=True, slots=True)
class Dial:
    """Connect to `addr` (a full multiaddr ending in /p2p/<peer id>)."""

    addr: str


@dataclass(frozen=True, slots=True)
class Disconnect:
    peer: NodeId


@dataclass(frozen=True, slots=True)
class Silenced:
    """A roster dropped this node: stop talking to the colony, close every connection."""


@dataclass(frozen=True, slots=True)
class Planned:
    """A claim round at local time `at_s` chose `chosen` for `waiting` executors among
    `candidates` (for the simulator's scheduling checker; drivers ignore it)."""

    chosen: tuple[bytes, ...]
    waiting: int
    candidates: tuple[Waiting, ...] = ()
    at_s: float = 0.0
    own: bool = False  # a submission's own first claim (the short path)


@dataclass(frozen=True, slots=True)
class RunStopped:
    """The run of `pid` on executor `executor_id` must stop: `why` is ``lost`` (the
    lease ran out, was refused or the executor was detached) or ``cancelled``."""

    executor_id: str
    pid: bytes
    why: str
