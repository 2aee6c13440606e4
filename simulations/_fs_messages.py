"""The ``fs`` scenario's shared pieces (fs_scenario.py explains the design).

- the constants of the chunk service the cores model (node/daemon/fs/: `transfer`,
  `repair`, `files.upload`), and the values of `planted_bug`;
- the messages between cores: transfer.py's requests (Store, Flush, Has, Fetch) and their
  answers, each with a request id (every request is idempotent: a resend keeps its id);
- the events a core tells the scenario (Booted ... RepairPassDone);
- `FsSimConfig`, the knobs every core gets, and `SharedFs`, what every node knows alike:
  the members, the colony's `FsIndex` and each chunk's placement order over every member.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from colonynode.core.ids import NodeId
from colonynode.node.core.fs import FsIndex, placement

__all__ = [
    "ACK_COPIES",
    "BATCH_CHUNKS",
    "BUGS",
    "CONNECTION_CHECK_S",
    "HEADER_BYTES",
    "IDS_A_PASS",
    "IDS_MAX",
    "RANK_PREFIX",
    "TABLE",
    "Booted",
    "Chunks",
    "ChunksDurable",
    "ChunksStored",
    "FetchChunks",
    "FlushChunks",
    "Flushed",
    "FsSimConfig",
    "HasChunks",
    "Holding",
    "PutDone",
    "ReadDone",
    "RepairPassDone",
    "SharedFs",
    "StoreChunks",
    "Stored",
]

TABLE = "fs_chunks"
ACK_COPIES = 2  # files.upload: durable on min(2, members up) nodes before the commit
BATCH_CHUNKS = 3  # transfer.BATCH_BYTES // CHUNK_BYTES: chunks of one Store request
IDS_MAX = 4096  # transfer.IDS_MAX: ids of one Has request
IDS_A_PASS = 20_000  # repair.IDS_A_PASS
RANK_PREFIX = 8  # candidates handed to placement in rank order (>= REPLICAS; fs_scenario.py)
HEADER_BYTES = 24
CONNECTION_CHECK_S = 0.5  # how soon a request notices its peer went away
BUGS = ("", "skip_copy", "ignore_alive", "read_first_only")


# -- messages (transfer.py's requests, with a request id) -----------------------------------


@dataclass(frozen=True, slots=True)
class StoreChunks:
    req: int
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Stored:
    req: int
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class FlushChunks:
    req: int


@dataclass(frozen=True, slots=True)
class Flushed:
    req: int


@dataclass(frozen=True, slots=True)
class HasChunks:
    req: int
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Holding:
    req: int
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class FetchChunks:
    req: int
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Chunks:
    req: int
    ids: tuple[bytes, ...]  # the chunks sent (their bytes, in the daemon)
    missing: tuple[bytes, ...]


# -- events (what a core tells the scenario) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Booted:
    ids: tuple[bytes, ...]  # what the store kept: durable


@dataclass(frozen=True, slots=True)
class ChunksStored:
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ChunksDurable:
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class PutDone:
    key: int
    ok: bool


@dataclass(frozen=True, slots=True)
class ReadDone:
    key: int
    failed: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class RepairPassDone:
    asked: int  # peers asked
    copies: int  # chunks copied (flushed on their targets)
    failures: int  # peers whose Has, Store or Flush went unanswered


# -- what every node shares -----------------------------------------------------------------


@dataclass(frozen=True)
class FsSimConfig:
    repair_s: float = 2.0
    grace_s: float = 8.0
    rpc_timeout_s: float = 1.0
    resends: int = 2  # a stream retransmits: the simulated network just drops frames
    link_bytes_per_s: float = 100_000.0  # slowest link a deadline allows for
    read_deadline_s: float = 60.0
    exact_placement: bool = False
    planted_bug: str = ""


class SharedFs:
    """What every node knows alike: the members (a fixed roster), the file index (the real
    `FsIndex`, fed at once: gossip is not modelled), and each chunk's placement order over
    every member (`placement` of all members, memoised: the same on every node)."""

    def __init__(self, members: Sequence[NodeId]) -> None:
        self.members = list(members)
        self.index = FsIndex()
        self.ranks: dict[bytes, list[NodeId]] = {}
        self._live: set[bytes] = set()
        self._live_at = -1

    def rank(self, cid: bytes) -> list[NodeId]:
        ranked = self.ranks.get(cid)
        if ranked is None:
            ranked = self.ranks[cid] = placement(cid, self.members, len(self.members))
        return ranked

    def prefix(self, cid: bytes, among: set[NodeId] | frozenset[NodeId]) -> list[NodeId]:
        """The first RANK_PREFIX members of `among` in `cid`'s placement order."""
        out: list[NodeId] = []
        for m in self.rank(cid):
            if m in among:
                out.append(m)
                if len(out) == RANK_PREFIX:
                    break
        return out

    def live(self) -> set[bytes]:
        """Chunks a live revision names (membership tests only: never iterate it)."""
        revisions = self.index.counters["revisions"]
        if revisions != self._live_at:
            self._live_at = revisions
            self._live = self.index.referenced()[0]
        return self._live
