"""The ``fs`` scenario: ColonyFS chunks kept at R copies under churn and loss (DESIGN.md §9).

Every node runs `FsChunkCore` (_fs_core.py), a sans-IO model of the daemon's chunk service
(node/daemon/fs/: the chunk store, `files.upload`, `files.download`, `repair.Repair`),
whose decisions are NodeCore's own `placement` and `plan_repair` (node/core/fs.py):

- **store**: a node's chunk ids, one key each in its `MemoryStore`. A Store writes them
  lazily (not durable: a crash loses them unless a later sync made them durable); a Flush
  syncs everything written so far, as `ChunkStore.flush` does;
- **upload** (`files.upload`): a writer places each chunk on `placement(cid, up, R)` over
  itself and the members it is connected to, sends each target its chunks (Store batches
  of BATCH_CHUNKS) and then a Flush; the put is acknowledged once every chunk is durable
  on min(2, members up) nodes. Its revision then enters the colony's `FsIndex` (the real
  one) with every node at once: the gossip of fs records is not modelled;
- **repair** (`repair.Repair`): every `repair_s` after boot, and one pass at a time, a
  node takes the chunks it holds that a live revision names; members are *alive* when
  connected, or seen (a frame from them, or connected at a pass) within `grace_s` of now
  (from the node's boot when never seen); for each chunk `plan_repair(cid, me, alive, ())`
  names the targets; those connected are asked Has (which counts unflushed chunks too),
  one peer after another, and each is sent what it lacks: Store, then Flush
  (`chunks_repaired` counts these copies);
- **download** (`files.download`): a reader asks for each chunk the connected members in
  the chunk's placement order over every member, the fewest unanswered requests first,
  until one sends it (a member answering "missing" is not asked again), for at most
  `read_deadline_s`. The daemon asks the first eight, then the DHT's providers; here the
  walk goes on over every member instead ("any node").

Requests. The daemon waits on a stream until it answers or breaks; the simulated network
drops frames instead. So a request unanswered after `rpc_timeout_s` plus its chunk bytes
at `link_bytes_per_s` is sent again (same id: every request is idempotent), up to
`resends` times while the peer is connected (a stream retransmits); then it has failed.
A request to a peer that is no longer connected fails within CONNECTION_CHECK_S (its
stream breaks with the connection).

Placement over 1,000 members hashes 1,000 ids; each node does it for each chunk it holds
at each pass. By default the chunk's order over every member is computed once (the real
`placement`) and `plan_repair` / `placement` get the first RANK_PREFIX candidates in that
order: the same answer, since a rendezvous rank does not depend on who else is ranked
(tests/simulations/test_fs_scenario.py checks both the functions and whole runs).
`--param exact_placement=true` passes every candidate instead.

Workload, in simulated time: `puts` files of 1..`chunks_max` chunks written from random
live nodes; `reads` of random acknowledged revisions from random live nodes; `churn` of
the nodes crash once and restart about `down_s` later; `kill` of them crash for good
(their disks are gone: a restart, the liveness phase's included, is undone at once).

Checkers. ``fs-readable``: a read that fails while a holder of a failed chunk was up,
unpaused, unclogged and in the reader's partition for the whole read (holding the chunk
since it began, no partition change meanwhile, the reader up too) is a violation; at the
end, an acknowledged chunk that no store holds is a violation unless every node that ever
held it durably was killed (`lost_with_all_holders_killed`). Liveness (``converged``):
every node back (`heal_all`), every chunk of an acknowledged revision on at least
min(R, live nodes) live nodes (a copy is a chunk in a node's store, flushed or not: no
crash happens once the network is healed).

Planted bugs (`planted_bug`): ``skip_copy`` (repair asks Has but never copies),
``ignore_alive`` (repair places over every member, alive or not), ``read_first_only`` (a
read asks only the first member of the placement).

Modules: _fs_messages.py (constants, messages, events, `FsSimConfig`, `SharedFs`),
_fs_core.py (`FsChunkCore`), and this one (the checker, the scenario and its workload).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from colonynode.core.ids import NodeId
from colonynode.node.core.fs import CHUNK_BYTES, PUT_KIND, REPLICAS, Revision
from colonynode.simulations._fs_core import FsChunkCore, _GoneCore
from colonynode.simulations._fs_messages import (
    BUGS,
    HEADER_BYTES,
    TABLE,
    Booted,
    Chunks,
    ChunksDurable,
    ChunksStored,
    FsSimConfig,
    PutDone,
    ReadDone,
    RepairPassDone,
    SharedFs,
    StoreChunks,
)
from colonynode.simulations.checkers import BaseChecker
from colonynode.simulations.node import as_asked
from colonynode.simulations.scenario import Metric, ParamValue, Scenario, register_scenario
from colonynode.storage.api import Store

if TYPE_CHECKING:
    from colonynode.simulations.network import SimNetwork
    from colonynode.simulations.node import SimNode
    from colonynode.simulations.world import World

__all__ = ["FsChunkCore", "FsReadable", "FsScenario", "FsSimConfig", "SharedFs"]

PUT_START_S = 2.0
READ_START_S = 5.0
KILL_START_S = 10.0
WRITER_TRIES = 64
MESSAGES_MAX_PER_EXAMPLE = 3


# -- the checker ----------------------------------------------------------------------------


class FsReadable(BaseChecker):
    """Reads fail only when no holder was reachable; at the end, no acknowledged chunk is
    lost unless every node that ever held it durably was killed."""

    name = "fs-readable"

    def __init__(self, scenario: FsScenario) -> None:
        self.s = scenario

    def after_step(self, world: World) -> list[str]:
        found, self.s.found = self.s.found, []
        return found

    def at_end(self, world: World) -> list[str]:
        s = self.s
        present: dict[bytes, None] = {}
        for i, node in enumerate(world.nodes):
            if i not in s.killed:
                present.update((bytes(k), None) for k, _ in node.store.scan(TABLE))
        found: list[str] = []
        for cid in s.acked_chunks:
            if cid in present:
                continue
            ever = s.ever.get(cid, {})
            if all(h in s.killed for h in ever):
                s.lost_killed += 1
            elif len(found) < MESSAGES_MAX_PER_EXAMPLE:
                alive = sorted(h for h in ever if h not in s.killed)
                found.append(f"acknowledged chunk {cid.hex()[:12]} is on no node, though "
                             f"nodes {alive} held it durably and were not killed")  # fmt: skip
        return found


# -- the scenario ---------------------------------------------------------------------------


@dataclass(slots=True)
class _ReadRec:
    reader: int
    incarnation: int  # the reader's: a crash forgets the read
    rev: int
    start_s: float
    labels: list[int]  # the network's partition labels object when the read began


@register_scenario
class FsScenario(Scenario):
    name = "fs"
    description = "ColonyFS: acknowledged puts stay readable, repair restores R copies"
    rank = 3
    default_nodes = 1000
    safety_s = 60.0
    liveness_s = 60.0
    heal_all = True
    params: ClassVar[dict[str, ParamValue]] = {
        "puts": 2000,
        "chunks_max": 4,
        "reads": 1000,
        "churn": 0.2,
        "down_s": 4.0,
        "kill": 0.03,
        "repair_s": FsSimConfig.repair_s,
        "grace_s": FsSimConfig.grace_s,
        "rpc_timeout_s": FsSimConfig.rpc_timeout_s,
        "resends": FsSimConfig.resends,
        "link_bytes_per_s": FsSimConfig.link_bytes_per_s,
        "read_deadline_s": FsSimConfig.read_deadline_s,
        "exact_placement": False,
        "planted_bug": "",
    }
    main_series = "under_replicated"
    headline = ("revisions_acknowledged", "reads_failed", "chunks_repaired",
                "under_replicated_max", "lost_with_all_holders_killed")  # fmt: skip

    def __init__(self, params: dict[str, ParamValue] | None = None) -> None:
        super().__init__(params)
        bug = self.param_str("planted_bug")
        if bug not in BUGS:
            raise ValueError(f"planted_bug is one of {', '.join(b for b in BUGS if b)}")
        self.config = FsSimConfig(
            self.param_float("repair_s"), self.param_float("grace_s"),
            self.param_float("rpc_timeout_s"), self.param_int("resends"),
            self.param_float("link_bytes_per_s"),
            self.param_float("read_deadline_s"), bool(self.p["exact_placement"]), bug,
        )  # fmt: skip
        self.shared = SharedFs(())
        self.killed: dict[int, None] = {}
        self.found: list[str] = []
        # where chunks are, as the cores' events say (a crashed node's entries are stale
        # until it restarts: only live nodes are counted)
        self.vis: list[dict[bytes, float]] = []  # node -> chunk -> visible since
        self.holders: dict[bytes, dict[int, None]] = {}
        self.ever: dict[bytes, dict[int, None]] = {}  # nodes that held it durably
        self.files: dict[int, tuple[bytes, ...]] = {}  # put -> chunk ids
        self.acked: list[int] = []
        self.acked_chunks: dict[bytes, None] = {}
        self.reads: dict[int, _ReadRec] = {}
        self.counts = dict.fromkeys(
            ("puts_started", "puts_failed", "puts_not_started", "reads_started", "reads_ok",
             "reads_failed", "reads_failed_no_live_holder", "reads_skipped", "repair_passes",
             "chunks_repaired", "repair_failures", "churn_crashes", "kills"), 0)  # fmt: skip
        self.lost_killed = 0
        self.under_max = 0
        self.messages_at_sample = 0

    # -- building -------------------------------------------------------------------------

    def size_of(self, msg: Any) -> int:
        if type(msg) is StoreChunks:
            return HEADER_BYTES + CHUNK_BYTES * len(msg.ids)
        if type(msg) is Chunks:
            return HEADER_BYTES + CHUNK_BYTES * len(msg.ids) + 32 * len(msg.missing)
        return HEADER_BYTES + 32 * len(getattr(msg, "ids", ()))

    def build(self, world: World) -> None:
        self.shared = SharedFs(world.ids)
        self.vis = [{} for _ in range(world.n)]
        net = world.network
        config = self.config

        def make_core(node_id: NodeId, store: Store, rng: random.Random) -> Any:
            i = net.index_of[node_id]
            if i in self.killed:
                world.schedule(world.now_s, lambda w: w.nodes[i].crash())
                return _GoneCore()
            view = net.view(i)
            return FsChunkCore(node_id, store, self.shared, config, view.peers,
                               _connected(net, i))  # fmt: skip

        world.add_nodes(make_core, "fs", sync_policy=as_asked)
        world.add_checker(FsReadable(self))
        self._plan_puts(world, world.rng_for("puts"))
        self._plan_reads(world, world.rng_for("reads"))
        self._plan_churn(world, world.rng_for("churn"))
        self._plan_kills(world, world.rng_for("kills"))

    def _up(self, world: World, i: int) -> bool:
        node = world.nodes[i]
        return node.alive and not node.paused and i not in self.killed

    def _pick_up(self, world: World, rng: random.Random) -> int | None:
        for _ in range(WRITER_TRIES):
            i = rng.randrange(world.n)
            if self._up(world, i):
                return i
        return None

    def _plan_puts(self, world: World, rng: random.Random) -> None:
        end_s = max(PUT_START_S, world.safety_s - 15.0)
        for k in range(self.param_int("puts")):
            ids = tuple(
                rng.randbytes(32) for _ in range(rng.randint(1, self.param_int("chunks_max")))
            )
            self.files[k] = ids
            world.schedule(rng.uniform(PUT_START_S, end_s), _StartPut(self, k, rng))

    def start_put(self, world: World, k: int, rng: random.Random) -> None:
        i = self._pick_up(world, rng)
        if i is None:
            self.counts["puts_not_started"] += 1
            return
        ids = self.files[k]
        self.counts["puts_started"] += 1
        world.nodes[i].call(lambda core, now_s: core.put(now_s, k, ids))

    def _plan_reads(self, world: World, rng: random.Random) -> None:
        end_s = max(READ_START_S, world.safety_s - 2.0)
        for k in range(self.param_int("reads")):
            world.schedule(rng.uniform(READ_START_S, end_s), _StartRead(self, k, rng))

    def start_read(self, world: World, k: int, rng: random.Random) -> None:
        i = self._pick_up(world, rng)
        if i is None or not self.acked:
            self.counts["reads_skipped"] += 1
            return
        rev = self.acked[rng.randrange(len(self.acked))]
        ids = self.files[rev]
        self.counts["reads_started"] += 1
        self.reads[k] = _ReadRec(i, world.nodes[i].incarnation, rev, world.now_s,
                                 world.network.labels)  # fmt: skip
        world.nodes[i].call(lambda core, now_s: core.read(now_s, k, ids))

    def _plan_churn(self, world: World, rng: random.Random) -> None:
        down_s = self.param_float("down_s")
        for i in rng.sample(range(world.n), int(self.param_float("churn") * world.n)):
            at_s = rng.uniform(PUT_START_S, max(PUT_START_S, world.safety_s - 5.0))
            world.schedule(at_s, _Churn(self, i, rng.expovariate(1.0 / down_s)))

    def churn(self, world: World, i: int, down_s: float) -> None:
        node = world.nodes[i]
        if not node.alive or i in self.killed:
            return
        node.crash()
        self.counts["churn_crashes"] += 1
        incarnation = node.incarnation

        def restart(w: World) -> None:
            if not node.alive and node.incarnation == incarnation:
                node.restart()

        world.schedule(world.now_s + down_s, restart)

    def _plan_kills(self, world: World, rng: random.Random) -> None:
        victims = rng.sample(range(world.n), int(self.param_float("kill") * world.n))
        end_s = max(KILL_START_S, world.safety_s - 10.0)
        for i in victims:
            world.schedule(rng.uniform(KILL_START_S, end_s), _Kill(self, i))

    def kill(self, world: World, i: int) -> None:
        self.killed[i] = None
        self.counts["kills"] += 1
        world.nodes[i].crash()

    # -- events ---------------------------------------------------------------------------

    def on_event(self, world: World, node: SimNode[Any], event: Any) -> None:
        i = node.index
        kind = type(event)
        if kind is ChunksStored:
            self._stored(i, event.ids, world.now_s)
        elif kind is ChunksDurable:
            for cid in event.ids:
                self.ever.setdefault(cid, {})[i] = None
        elif kind is Booted:
            self._booted(i, event.ids, world.now_s)
        elif kind is RepairPassDone:
            self.counts["repair_passes"] += 1
            self.counts["chunks_repaired"] += event.copies
            self.counts["repair_failures"] += event.failures
        elif kind is PutDone:
            self._put_done(world, i, event)
        elif kind is ReadDone:
            self._read_done(world, event)

    def _stored(self, i: int, ids: Sequence[bytes], now_s: float) -> None:
        mine = self.vis[i]
        for cid in ids:
            mine[cid] = now_s
            self.holders.setdefault(cid, {})[i] = None

    def _booted(self, i: int, ids: Sequence[bytes], now_s: float) -> None:
        for cid in self.vis[i]:
            self.holders[cid].pop(i, None)
        self.vis[i] = {}
        self._stored(i, ids, now_s)
        for cid in ids:  # what a store keeps through a crash is durable
            self.ever.setdefault(cid, {})[i] = None

    def _put_done(self, world: World, i: int, event: PutDone) -> None:
        if not event.ok:
            self.counts["puts_failed"] += 1
            return
        ids = self.files[event.key]
        rev = Revision("/sim", f"file{event.key}", f"{event.key:x}",
                       hashlib.sha256(b"".join(ids)).digest(), len(ids) * CHUNK_BYTES, ids,
                       False, world.ids[i], int(world.now_s * 1e9))  # fmt: skip
        self.shared.index.on_record(world.ids[i], PUT_KIND, {"files": [rev.body()]})
        self.acked.append(event.key)
        self.acked_chunks.update(dict.fromkeys(ids))

    def _read_done(self, world: World, event: ReadDone) -> None:
        rec = self.reads.pop(event.key, None)
        if rec is None:
            return
        if not event.failed:
            self.counts["reads_ok"] += 1
            return
        self.counts["reads_failed"] += 1
        if not all(any(self._up(world, h) for h in self.holders.get(c, {})) for c in event.failed):
            self.counts["reads_failed_no_live_holder"] += 1
        for cid in event.failed:
            holder = self._fair_holder(world, rec, cid)
            if holder is not None:
                self.found.append(
                    f"node {rec.reader} failed to read chunk {cid.hex()[:12]} of revision "
                    f"{rec.rev} (read {event.key}, begun at {rec.start_s:.3f} s) though node "
                    f"{holder} held it and was reachable throughout"
                )
                return

    def _fair_holder(self, world: World, rec: _ReadRec, cid: bytes) -> int | None:
        """A node that held `cid` and was reachable from the reader for the whole read."""
        net = world.network
        start_s, reader = rec.start_s, rec.reader
        if net.labels is not rec.labels or world.nodes[reader].woke_s > start_s:
            return None  # the partitions changed, or the reader paused, during the read
        for h in self.holders.get(cid, {}):
            node = world.nodes[h]
            if (h == reader or not self._up(world, h) or node.woke_s > start_s
                    or self.vis[h].get(cid, math.inf) > start_s
                    or net.labels[h] != net.labels[reader]
                    or _clogged_since(net, reader, h, start_s)):  # fmt: skip
                continue
            return h
        return None

    # -- liveness and figures -------------------------------------------------------------

    def _short(self, world: World) -> tuple[list[bytes], int]:
        """Acknowledged chunks on fewer than min(R, live nodes) live nodes (those still
        on some node that is not killed), and that target."""
        up = [self._up(world, i) for i in range(world.n)]
        target = min(REPLICAS, sum(up))
        killed = self.killed
        short = []
        for cid in self.acked_chunks:
            holders = self.holders.get(cid, {})
            if sum(1 for h in holders if up[h]) >= target:
                continue
            if any(h not in killed for h in holders):  # else lost: counted at the end
                short.append(cid)
        return short, target

    def converged(self, world: World) -> bool:
        nodes, killed = world.nodes, self.killed
        if any(nodes[i].alive == (i in killed) for i in range(world.n)):
            return False  # heal_all: every node is back but the killed (crashed again)
        return not self._short(world)[0]

    def liveness_detail(self, world: World) -> str:
        down = [i for i in range(world.n) if i not in self.killed and not self._up(world, i)]
        short, target = self._short(world)
        if not short:
            return f"{len(down)} nodes not back" if down else ""
        cid = short[0]
        on = [h for h in self.holders.get(cid, {}) if self._up(world, h)]
        return (f"{len(short)} acknowledged chunks on fewer than {target} live nodes, e.g. "
                f"{cid.hex()[:12]} on {on} (of {sorted(self.holders.get(cid, {}))}); "
                f"{len(down)} nodes not back")  # fmt: skip

    def metrics(self, world: World) -> dict[str, Metric]:
        c = self.counts
        elapsed_s = max(world.now_s, 1e-9)
        nodes = world.nodes
        unfinished = sum(1 for r in self.reads.values()
                         if nodes[r.reader].incarnation == r.incarnation)  # fmt: skip
        return {
            "revisions_acknowledged": len(self.acked),
            "puts_abandoned": c["puts_started"] - len(self.acked) - c["puts_failed"],
            "chunks_acknowledged": len(self.acked_chunks),
            **{name: value for name, value in c.items()},
            "reads_abandoned": len(self.reads) - unfinished,  # the reader crashed
            "reads_unfinished": unfinished,  # still running when the run ended
            "under_replicated_max": self.under_max,
            "under_replicated_at_end": len(self._short(world)[0]),
            "lost_with_all_holders_killed": self.lost_killed,
            "messages_per_s": world.network.stats.messages_sent / elapsed_s,
        }

    def sample(self, world: World) -> dict[str, float]:
        short = len(self._short(world)[0])
        self.under_max = max(self.under_max, short)
        total = world.network.stats.messages_sent
        rate = (total - self.messages_at_sample) / world.sample_interval_s
        self.messages_at_sample = total
        return {"under_replicated": float(short), "messages_per_s": rate}


def _connected(net: SimNetwork, i: int) -> Callable[[NodeId], bool]:
    """Whether node i's transport is connected to a member: it runs, and no partition
    separates them (SimTransport.peers, for one member)."""
    index_of, up = net.index_of, net.up

    def connected(m: NodeId) -> bool:
        j = index_of[m]
        return j != i and bool(up[j]) and net.labels[j] == net.labels[i]

    return connected


def _clogged_since(net: SimNetwork, a: int, b: int, start_s: float) -> bool:
    """A clog of a, of b, or of a link between them, lasted past `start_s`."""
    if net.node_clog_until_s[a] > start_s or net.node_clog_until_s[b] > start_s:
        return True
    for key in (a * net.n + b, b * net.n + a):
        link = net.links.get(key)
        if link is not None and link.clog_until_s > start_s:
            return True
    return False


class _StartPut:
    __slots__ = ("k", "rng", "s")

    def __init__(self, scenario: FsScenario, k: int, rng: random.Random) -> None:
        self.s, self.k, self.rng = scenario, k, rng

    def __call__(self, world: World) -> None:
        self.s.start_put(world, self.k, self.rng)


class _StartRead:
    __slots__ = ("k", "rng", "s")

    def __init__(self, scenario: FsScenario, k: int, rng: random.Random) -> None:
        self.s, self.k, self.rng = scenario, k, rng

    def __call__(self, world: World) -> None:
        self.s.start_read(world, self.k, self.rng)


class _Churn:
    __slots__ = ("down_s", "i", "s")

    def __init__(self, scenario: FsScenario, i: int, down_s: float) -> None:
        self.s, self.i, self.down_s = scenario, i, down_s

    def __call__(self, world: World) -> None:
        self.s.churn(world, self.i, self.down_s)


class _Kill:
    __slots__ = ("i", "s")

    def __init__(self, scenario: FsScenario, i: int) -> None:
        self.s, self.i = scenario, i

    def __call__(self, world: World) -> None:
        self.s.kill(world, self.i)
