"""The ``dht`` scenario: the Kademlia core of dht/ on many nodes (issue 7).

Nodes have real Ed25519 keys drawn from the seed and join through node 0. Then, in
simulated time:

1. **lookups** (from `lookups_at_s`): `lookups` FIND_NODEs of random keys from random
   live nodes. `lookup_hops_median` / `lookup_hops_p99`: sequential query rounds until
   the closest node was found (dht/lookup.py); `lookup_exact`: the fraction whose first
   result is the true closest live node (brute force).
2. **write, update, read under churn** (from `write_at_s`): `records` nodes publish a new
   version of their signed /peer/ record and `files` /fs/ records get a first revision;
   `update_after_s` later each gets a newer version (the /fs/ one from another writer);
   then every node reads every one of them. Meanwhile `churn` of the nodes crash and
   restart (down `down_s`). `stale_reads`: reads started after the newest version was
   acknowledged that return an older one (or nothing).
3. **losing nodes** (at `kill_at_s`): `kill` of the nodes crash for good; then the records
   of phase 2 and `survivors` random /peer/ records (killed authors' included) are read
   from random live nodes. `lost_records`: records no read found.

Signature checks are memoized by exact bytes (author, payload, signature) for speed: a
record is verified once per run, not once per node; the cores still call the verifier
on every record they receive.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from colonynode.core.envelope import Envelope
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId
from colonynode.dht.config import DhtConfig
from colonynode.dht.core import DhtCore
from colonynode.dht.events import FindNodeResult, GetResult, PutResult
from colonynode.dht.fs import FileRecord, FileRevision, fs_key
from colonynode.dht.messages import Nodes, PeerInfo, Providers, PutValue, Value
from colonynode.dht.records import RECORD_DOMAIN, PeerRecord, peer_key
from colonynode.dht.routing import key_of
from colonynode.simulations.checkers import BaseChecker
from colonynode.simulations.examples import percentile
from colonynode.simulations.scenario import Metric, ParamValue, Scenario, register_scenario
from colonynode.storage.api import Store

if TYPE_CHECKING:
    from colonynode.simulations.node import SimNode
    from colonynode.simulations.world import World

__all__ = ["DhtScenario", "ReadsMatchWrites"]

VERIFIED_MAX = 1_000_000  # memoized signature checks
SPREAD_S = 2.0  # each workload burst is spread over this long
RETRY_S = 3.0  # a call to a node that is down is tried again this much later
COLONY = "sim"


class _Tracked:
    """A record of phase 2: what was acknowledged when, and how reads went."""

    __slots__ = ("acked_s", "key", "seq", "values")

    def __init__(self, key: str) -> None:
        self.key = key
        self.seq = -1  # newest acknowledged sequence number
        self.acked_s = float("inf")
        self.values: dict[int, Any] = {}  # seq -> value acknowledged under it


class ReadsMatchWrites(BaseChecker):
    """A read of a /peer/ record returns, for a sequence number, the value its author
    wrote under it (one author per key: a seq names one value)."""

    name = "reads-match-writes"

    def __init__(self, scenario: DhtScenario) -> None:
        self.scenario = scenario

    def after_step(self, world: World) -> list[str]:
        found: list[str] = []
        for node, event in world.step_events:
            if isinstance(event, GetResult) and event.seq is not None:
                tracked = self.scenario.tracked.get(event.key)
                if tracked is None or not event.key.startswith("/peer/"):
                    continue
                written = tracked.values.get(event.seq)
                if written is not None and written != event.value:
                    found.append(
                        f"node {node} read {event.key} seq {event.seq} as {event.value}, "
                        f"its author wrote {written}"
                    )
        return found


@register_scenario
class DhtScenario(Scenario):
    name = "dht"
    description = "Kademlia: lookup hops, newest-version reads under churn, records surviving loss"
    rank = 2
    default_nodes = 200
    safety_s = 40.0
    liveness_s = 0.0
    params: ClassVar[dict[str, ParamValue]] = {
        "lookups": 200,
        "lookups_at_s": 6.0,
        "records": 2,
        "files": 1,
        "write_at_s": 9.0,
        "update_after_s": 3.0,
        "read_at_s": 15.0,
        "churn": 0.2,
        "down_s": 2.0,
        "kill": 0.25,
        "kill_at_s": 26.0,
        "survivors": 100,
        "readers": 5,
        "publish_peers": True,
        "join_refreshes": DhtConfig().refresh_on_join_max,
        "edge_refreshes": DhtConfig().refresh_edge_on_join_max,
        "k": DhtConfig().k,
    }
    main_series = "messages_per_s"
    headline = ("lookup_hops_median", "lookup_hops_p99", "stale_reads", "lost_records")

    def __init__(self, params: dict[str, ParamValue] | None = None) -> None:
        super().__init__(params)
        self.identities: list[Identity] = []
        self.verified: dict[tuple[bytes, bytes, bytes], bool] = {}
        self.keys: list[int] = []
        self.hops: list[int] = []
        self.lookups_done = 0
        self.lookups_exact = 0
        self.expected_closest: dict[tuple[int, int], int] = {}  # (node, req) -> node
        self.tracked: dict[str, _Tracked] = {}
        self.reads: dict[tuple[int, int], tuple[str, float]] = {}  # (node, req) -> key, at
        self.read_count = 0
        self.reads_racing = 0
        self.stale = 0
        self.empty = self.empty_expired = self.empty_no_quorum = 0  # stale reads of nothing
        self.empty_held_near = 0  # ... while one of the key's k closest live nodes held it
        self.stale_examples: list[str] = []
        self.put_failures = 0
        self.survival: dict[tuple[int, int], str] = {}  # (node, req) -> key
        self.survival_found: dict[str, bool] = {}
        self.killed: set[int] = set()
        self.world_now_s: Callable[[], float] = lambda: 0.0
        self.messages_at_sample = 0

    # -- world building ---------------------------------------------------------------------

    def make_node_id(self, rng: random.Random, index: int) -> NodeId:
        identity = Identity(rng.randbytes(32))
        self.identities.append(identity)
        return identity.node_id

    def verify(self, envelope: Envelope) -> None:
        memo = (envelope.author, envelope.payload, envelope.signature)
        if memo in self.verified:
            return
        envelope.verify(RECORD_DOMAIN)
        if len(self.verified) >= VERIFIED_MAX:
            self.verified.clear()
        self.verified[memo] = True

    def build(self, world: World) -> None:
        self.world_now_s = lambda: world.now_s
        config = DhtConfig.local().with_(
            refresh_on_join_max=self.param_int("join_refreshes"),
            refresh_edge_on_join_max=self.param_int("edge_refreshes"),
            k=self.param_int("k"),
        )
        self.k = config.k  # (the nodes' k: `_held_near`)
        ids = world.ids
        self.keys = [key_of(i) for i in ids]
        index_of = world.network.index_of
        bootstrap = (PeerInfo(ids[0], ("/sim/0",)),)
        publish = bool(self.p["publish_peers"])

        def make_core(node_id: NodeId, store: Store, rng: random.Random) -> DhtCore:
            i = index_of[node_id]
            return DhtCore(
                node_id,
                store,
                rng,
                config,
                identity=self.identities[i],
                addrs=(f"/sim/{i}",) if publish else (),
                seeds=() if i == 0 else bootstrap,
                verify=self.verify,
            )

        world.add_nodes(make_core, "dht")
        world.add_checker(ReadsMatchWrites(self))
        rng = world.rng_for("workload")
        self._plan_lookups(world, rng)
        self._plan_writes(world, rng)
        self._plan_churn(world, rng)
        self._plan_kill(world, rng)

    def size_of(self, msg: Any) -> int:
        if isinstance(msg, Nodes | Providers):
            return 16 + 48 * len(msg.peers)
        if isinstance(msg, Value):
            return 16 + 48 * len(msg.peers) + sum(len(e.payload) + 100 for e in msg.records)
        if isinstance(msg, PutValue):
            return 16 + sum(len(e.payload) + 100 for e in msg.records)
        return 48

    # -- workloads ----------------------------------------------------------------------------

    def _call(
        self, world: World, at_s: float, i: int, fn: Callable[[DhtCore, float], None]
    ) -> None:
        """Call node i's core at `at_s`; if it is down then, try again later."""

        def run(w: World) -> None:
            if i in self.killed:
                return
            if not w.nodes[i].call(fn) and w.now_s + RETRY_S < self.kill_at_s:
                w.schedule(w.now_s + RETRY_S, run)

        world.schedule(at_s, run)

    @property
    def kill_at_s(self) -> float:
        return self.param_float("kill_at_s")

    def _plan_lookups(self, world: World, rng: random.Random) -> None:
        start = self.param_float("lookups_at_s")
        for _ in range(self.param_int("lookups")):
            i = rng.randrange(world.n)
            target = rng.randbytes(32)
            self._call(world, start + rng.uniform(0, SPREAD_S), i, self._lookup(world, i, target))

    def _lookup(self, world: World, i: int, target: bytes) -> Callable[[DhtCore, float], None]:
        def fn(core: DhtCore, now_s: float) -> None:
            t = int.from_bytes(target, "big")
            alive = [j for j in range(world.n) if world.nodes[j].alive and j != i]
            if alive:
                best = min(alive, key=lambda j: self.keys[j] ^ t)
                self.expected_closest[(i, core.find_node(now_s, target))] = best

        return fn

    def _plan_writes(self, world: World, rng: random.Random) -> None:
        write_s = self.param_float("write_at_s")
        update_s = write_s + self.param_float("update_after_s")
        writers = rng.sample(range(1, world.n), min(world.n - 1, self.param_int("records")))
        for w in writers:
            key = peer_key(world.ids[w])
            self.tracked[key] = _Tracked(key)
            for version, at_s in ((1, write_s), (2, update_s)):
                addrs = (f"/sim/{w}/v{version}",)
                self._call(world, at_s + rng.uniform(0, 1), w, self._set_addrs(addrs))
        for f in range(self.param_int("files")):
            key = fs_key(COLONY, "data", f"file{f}")
            self.tracked[key] = _Tracked(key)
            a, b = rng.sample(range(world.n), 2)
            for version, (at_s, who) in enumerate(((write_s, a), (update_s, b)), start=1):
                rev = FileRevision(
                    f"r{version}",
                    bytes([version]) * 32,
                    version,
                    (bytes([version]) * 32,),
                    world.ids[who],
                    version,
                )
                self._call(
                    world, at_s + rng.uniform(0, 1), who, self._add_revision(f"file{f}", rev)
                )
        read_s = self.param_float("read_at_s")
        for key in self.tracked:
            for i in range(world.n):
                self._call(world, read_s + rng.uniform(0, SPREAD_S), i, self._read(i, key))

    def _set_addrs(self, addrs: tuple[str, ...]) -> Callable[[DhtCore, float], None]:
        def fn(core: DhtCore, now_s: float) -> None:
            core.set_addrs(now_s, addrs)

        return fn

    def _add_revision(self, name: str, rev: FileRevision) -> Callable[[DhtCore, float], None]:
        def fn(core: DhtCore, now_s: float) -> None:
            core.fs_add_revision(now_s, COLONY, "data", name, rev)

        return fn

    def _read(self, i: int, key: str) -> Callable[[DhtCore, float], None]:
        def fn(core: DhtCore, now_s: float) -> None:
            # the world's time, not the node's: acknowledgements are timed in it too
            self.reads[(i, core.get(now_s, key))] = (key, self.world_now_s())

        return fn

    def _plan_churn(self, world: World, rng: random.Random) -> None:
        count = int(self.param_float("churn") * world.n)
        start = self.param_float("write_at_s")
        end = self.param_float("read_at_s") + SPREAD_S + 2.0
        down_s = self.param_float("down_s")
        for i in rng.sample(range(world.n), count):
            at_s = rng.uniform(start, end)

            def crash(w: World, i: int = i) -> None:
                w.nodes[i].crash()
                w.schedule(w.now_s + down_s, lambda w2: w2.nodes[i].restart())

            world.schedule(at_s, crash)

    def _plan_kill(self, world: World, rng: random.Random) -> None:
        victims = rng.sample(range(world.n), int(self.param_float("kill") * world.n))
        survivors = [i for i in range(world.n) if i not in set(victims)]
        sample = rng.sample(range(world.n), min(world.n, self.param_int("survivors")))
        keys = list(self.tracked)
        if self.p["publish_peers"]:
            keys += [
                peer_key(world.ids[i]) for i in sample if peer_key(world.ids[i]) not in self.tracked
            ]
        read_s = self.kill_at_s + 2.0

        def kill(w: World) -> None:
            for i in victims:
                self.killed.add(i)
                w.nodes[i].crash()

        world.schedule(self.kill_at_s, kill)
        for key in keys:
            self.survival_found[key] = False
            for reader in rng.sample(survivors, min(len(survivors), self.param_int("readers"))):
                world.schedule(read_s + rng.uniform(0, SPREAD_S), self._survival_read(reader, key))

    def _survival_read(self, i: int, key: str) -> Callable[[World], None]:
        def run(w: World) -> None:
            def fn(core: DhtCore, now_s: float) -> None:
                self.survival[(i, core.get(now_s, key))] = key

            w.nodes[i].call(fn)

        return run

    # -- results ------------------------------------------------------------------------------

    def on_event(self, world: World, node: SimNode[Any], event: Any) -> None:
        i = node.index
        if isinstance(event, FindNodeResult):
            expected = self.expected_closest.pop((i, event.req_id), None)
            if expected is None:
                return
            self.lookups_done += 1
            if event.hops is not None:
                self.hops.append(event.hops)
            if event.peers and event.peers[0].node_id == world.ids[expected]:
                self.lookups_exact += 1
        elif isinstance(event, PutResult):
            tracked = self.tracked.get(event.key)
            if tracked is None:
                return
            if not event.ok:
                self.put_failures += 1
            elif event.seq > tracked.seq:
                tracked.seq = event.seq
                tracked.acked_s = world.now_s
        elif isinstance(event, GetResult):
            self._on_read(world, i, event)

    def _on_read(self, world: World, i: int, event: GetResult) -> None:
        survival_key = self.survival.pop((i, event.req_id), None)
        if survival_key is not None:
            if event.value is not None:
                self.survival_found[survival_key] = True
            return
        read = self.reads.pop((i, event.req_id), None)
        if read is None:
            return
        key, started_s = read
        tracked = self.tracked[key]
        if started_s < tracked.acked_s:
            self.reads_racing += 1
            return
        self.read_count += 1
        if event.seq is None:  # nothing found: why (docs/dht.md)
            self.empty += 1
            self.empty_expired += event.expired
            self.empty_no_quorum += not event.quorum
            self.empty_held_near += self._held_near(world, key)
        if event.seq is None or event.seq < tracked.seq or not self._has_newest(key, event):
            self.stale += 1
            if len(self.stale_examples) < 3:
                self.stale_examples.append(
                    f"node {i} read {key} at seq {event.seq}, newest acknowledged {tracked.seq}"
                )

    def _held_near(self, world: World, key: str) -> bool:
        """Whether one of the key's k closest live nodes holds a record under it now
        (brute force: for the rare empty read)."""
        t = key_of(key.encode())
        alive = [j for j in range(world.n) if world.nodes[j].alive]
        near = sorted(alive, key=lambda j: self.keys[j] ^ t)[: self.k]
        return any((core := world.nodes[j].core) and core.records.get(key) for j in near)

    def _has_newest(self, key: str, event: GetResult) -> bool:
        """An /fs/ read holds both revisions, the second as the latest."""
        if not key.startswith("/fs/"):
            return isinstance(event.value, PeerRecord)
        value = event.value
        return isinstance(value, FileRecord) and value.latest == "r2" and len(value.revisions) == 2

    def metrics(self, world: World) -> dict[str, Metric]:
        hops = sorted(float(h) for h in self.hops)
        lost = sum(1 for found in self.survival_found.values() if not found)
        return {
            "lookups": self.lookups_done,
            "lookup_hops_median": percentile(hops, 0.5),
            "lookup_hops_p99": percentile(hops, 0.99),
            "lookup_hops_max": hops[-1] if hops else None,
            "lookup_exact": self.lookups_exact / self.lookups_done if self.lookups_done else None,
            "reads": self.read_count,
            "reads_racing": self.reads_racing,
            "stale_reads": self.stale,
            "stale_example": "; ".join(self.stale_examples),
            "empty_reads": self.empty,  # (of stale_reads) found nothing; of them:
            "empty_reads_expired": self.empty_expired,  # the lookup's deadline ended it
            "empty_reads_no_quorum": self.empty_no_quorum,  # fewer than get_quorum answered
            "empty_reads_held_near": self.empty_held_near,  # the key's k closest held it
            "put_failures": self.put_failures,
            "records_checked": len(self.survival_found),
            "lost_records": lost,
        }

    def sample(self, world: World) -> dict[str, float]:
        total = world.network.stats.messages_sent
        rate = (total - self.messages_at_sample) / world.sample_interval_s
        self.messages_at_sample = total
        return {"messages_per_s": rate}
