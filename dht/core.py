"""DhtCore: the sans-IO Kademlia node (DESIGN.md §2, §8).

Driver contract (the Trio daemon or the simulator): `on_message(now_s, sender, msg)` for
each message of the ``dht`` protocol (`messages.CODEC`), `on_tick(now_s)` when the timer
asked for in `Effects.wake_at_s` fires, `take_effects()` after each step. Writes go to
tables ``dht_records``, ``dht_authored`` and ``dht_contacts``. `set_peers` tells the core
which peers are connected; after it was called once, a send to another peer is preceded
by a `Dial` event.

Application calls return a request id; the result comes later as an event with that id:
`find_node` → FindNodeResult, `get`/`find_peer`/`fs_get` → GetResult, `put`/`set_addrs`/
`fs_add_revision` → PutResult, `add_provider` → ProvideResult, `get_providers` →
ProvidersResult. `bootstrap(now_s, peers)` joins through known peers (a self-lookup, then
refreshes of the buckets farther than our nearest neighbour) → Joined.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from colonynode.core.effects import Effects
from colonynode.core.envelope import Envelope, seal
from colonynode.core.errors import ColonyError
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId
from colonynode.dht.answers import DhtAnswers
from colonynode.dht.config import DhtConfig
from colonynode.dht.events import (
    Dial,
    Joined,
)
from colonynode.dht.fs import FileRevision, fs_key
from colonynode.dht.local import LocalRecords, Providers, RateLimiter, decode_heads, encode_heads
from colonynode.dht.lookup import Candidate, Lookup
from colonynode.dht.messages import (
    AddProvider,
    FindNode,
    GetProviders,
    GetValue,
    Nodes,
    PeerInfo,
    PutAck,
    PutValue,
    Value,
)
from colonynode.dht.messages import Providers as ProvidersMsg
from colonynode.dht.ops import FIND, GET, PROVIDE, PROVIDERS, PUT, Op
from colonynode.dht.records import (
    RECORD_DOMAIN,
    Namespace,
    PeerRecord,
    SignedRecord,
    ValueRecord,
    default_namespaces,
    namespace_of,
    peer_key,
    reduce,
)
from colonynode.dht.routing import RoutingTable, common_prefix_len, key_of
from colonynode.storage.api import Store

__all__ = ["AUTHORED_TABLE", "CONTACTS_TABLE", "DhtCore"]

AUTHORED_TABLE = "dht_authored"
CONTACTS_TABLE = "dht_contacts"
_CONTACTS_KEY = b"contacts"
DIALS_MAX = 1024  # peers we asked the driver to dial and have not heard of since


def _verify(envelope: Envelope) -> None:
    envelope.verify(RECORD_DOMAIN)


class DhtCore(DhtAnswers):
    """One node's Kademlia DHT: routing table, lookups, records and providers."""

    def __init__(
        self,
        node_id: NodeId,
        store: Store,
        rng: random.Random,
        config: DhtConfig | None = None,
        *,
        identity: Identity | None = None,
        addrs: Sequence[str] = (),
        seeds: Sequence[PeerInfo] = (),
        may_write: Callable[[NodeId, str], bool] | None = None,
        is_member: Callable[[NodeId], bool] | None = None,
        verify: Callable[[Envelope], None] = _verify,
        namespaces: dict[str, Namespace] | None = None,
    ) -> None:
        if identity is not None and identity.node_id != node_id:
            raise ValueError("the identity must be this node's")
        self.node_id = node_id
        self.store = store
        self.rng = rng
        self.config = config = config or DhtConfig()
        self.identity = identity
        self.addrs = tuple(addrs)
        self.may_write = may_write
        self.is_member = is_member
        self.verify = verify
        self.namespaces = namespaces or default_namespaces()
        self.table = RoutingTable(
            node_id,
            k=config.k,
            replacements_max=config.replacements_max,
            failures_max=config.contact_failures_max,
            addrs_max=config.addrs_max,
        )
        self.records = LocalRecords(store, config)
        self.providers = Providers(config)
        self.rate = RateLimiter(config.store_rate_per_s, config.store_burst, config.rate_peers_max)
        self.ops: dict[int, Op] = {}
        # rid -> (op id, peer, is a store): lookup queries and stores awaiting an answer
        self.queries: dict[int, tuple[int, NodeId, bool]] = {}
        self._deadlines: list[tuple[float, int]] = []  # (deadline, rid or -op id), lazy
        self.authored: dict[str, SignedRecord] = {}
        self.republish_at: dict[str, float] = {}
        self.provided: dict[bytes, float] = {}  # content key -> next announce
        self.connected: set[NodeId] | None = None
        self.dialed: dict[NodeId, None] = {}
        self.seeds: list[PeerInfo] = list(seeds)
        self.joined = False
        self.join_op: int | None = None
        self.join_retry_s: float | None = None
        self._next_id = rng.getrandbits(40) + 1
        self._started = False
        self._next_sweep_s = 0.0
        self._next_refresh_s = 0.0
        self._next_save_s = 0.0
        self._table_dirty = False
        self._effects = Effects()
        self.stats: dict[str, int] = {
            "requests": 0,
            "refused_rate": 0,
            "refused_invalid": 0,
            "refused_member": 0,
            "timeouts": 0,
            "expired": 0,
        }
        for raw_key, value in store.scan(AUTHORED_TABLE, limit=config.authored_max):
            [signed] = decode_heads(value)
            self.authored[raw_key.decode()] = signed
            self.republish_at[raw_key.decode()] = 0.0  # republish soon after a restart
        saved = store.get(CONTACTS_TABLE, _CONTACTS_KEY) or []
        known = {p.node_id for p in self.seeds}
        for raw_id, raw_addrs in saved:
            if NodeId(raw_id) not in known:
                self.seeds.append(PeerInfo(NodeId(raw_id), tuple(raw_addrs)))

    # -- the driver's side ---------------------------------------------------------------

    def take_effects(self) -> Effects:
        effects = self._effects
        self._effects = Effects()
        effects.wake_at_s = self._next_wake_s()
        return effects

    def set_peers(self, now_s: float, peers: Iterable[NodeId]) -> None:
        """The peers the driver is connected to now (enables `Dial` requests)."""
        self.connected = set(peers)
        for p in self.connected:
            self.dialed.pop(p, None)

    def peer_seen(self, now_s: float, node_id: NodeId, addrs: Sequence[str] = ()) -> None:
        """The driver talked to a peer (a new connection): a routing table candidate."""
        if self.is_member is None or self.is_member(node_id):
            self._seen(now_s, node_id, tuple(addrs))

    def on_tick(self, now_s: float) -> None:
        if not self._started:
            self._started = True
            self._next_sweep_s = now_s + self.config.expire_sweep_s
            self._next_refresh_s = now_s + self.config.refresh_interval_s
            self._next_save_s = now_s + self.config.table_save_interval_s
            self.records.sweep(now_s, self._effects.writes)
            if self.seeds:
                self.bootstrap(now_s, self.seeds)
        self._expire_deadlines(now_s)
        if self.join_retry_s is not None and now_s >= self.join_retry_s:
            self.join_retry_s = None
            self.bootstrap(now_s, self.seeds)
        if now_s >= self._next_sweep_s:
            self._next_sweep_s = now_s + self.config.expire_sweep_s
            self.stats["expired"] += self.records.sweep(now_s, self._effects.writes)
            self.providers.sweep(now_s)
        if not self.joined and self.join_op is None and self.join_retry_s is None and self.table:
            self.bootstrap(now_s, ())  # the first node: peers found us; look around
        if self.joined:
            self._republish(now_s)
            if now_s >= self._next_refresh_s:
                self._next_refresh_s = now_s + self.config.refresh_interval_s
                for index in self.table.stale_buckets(now_s, self.config.refresh_interval_s):
                    self._refresh(now_s, index)
        if now_s >= self._next_save_s:
            self._next_save_s = now_s + self.config.table_save_interval_s
            self._save_contacts()

    def on_message(self, now_s: float, sender: NodeId, msg: Any) -> None:
        if self.is_member is not None and not self.is_member(sender):
            self.stats["refused_member"] += 1
            return
        if self.connected is not None:
            self.connected.add(sender)
        self.dialed.pop(sender, None)
        handler = _HANDLERS.get(type(msg))
        if handler is not None:
            handler(self, now_s, sender, msg)

    # -- application calls ----------------------------------------------------------------

    def bootstrap(self, now_s: float, peers: Sequence[PeerInfo]) -> int:
        """Join through `peers` (one is enough): a self-lookup fills the table."""
        for p in peers:
            self.table.seen(p.node_id, now_s, p.addrs)
            if all(s.node_id != p.node_id for s in self.seeds):
                self.seeds.append(p)
        if self.join_op is not None:
            return self.join_op
        self.join_op = self._start(now_s, Op(FIND, key_of(self.node_id), internal=True))
        return self.join_op

    def find_node(self, now_s: float, target: bytes) -> int:
        """The k peers closest to `target` (32 bytes of key space) → FindNodeResult."""
        return self._start(now_s, Op(FIND, int.from_bytes(target, "big")))

    def get(self, now_s: float, key: str) -> int:
        """The best record under `key` from a quorum of its closest peers → GetResult."""
        return self._start(now_s, Op(GET, key_of(key.encode()), key=key))

    def put(self, now_s: float, key: str, value: Any, ttl_s: float | None = None) -> int:
        """Sign and store `value` under `key` with the next sequence number → PutResult.

        For /fs/ keys, `value` is a FileRevision (or several) added to the file's history."""
        op = Op(PUT, key_of(key.encode()), key=key, value=value)
        op.ttl_s = ttl_s or self.config.record_ttl_s
        if self.identity is None:
            return self._fail(now_s, op, "this node has no identity to sign with")
        try:
            namespace_of(self.namespaces, key)
        except ColonyError as exc:
            return self._fail(now_s, op, str(exc))
        return self._start(now_s, op)

    def set_addrs(self, now_s: float, addrs: Sequence[str]) -> int:
        """Our multiaddrs: published as our signed /peer/ record → PutResult."""
        self.addrs = tuple(addrs)[: self.config.addrs_max]
        return self.put(now_s, peer_key(self.node_id), PeerRecord(self.addrs))

    def find_peer(self, now_s: float, node_id: NodeId) -> int:
        """A peer's signed address record → GetResult whose value is a PeerRecord."""
        return self.get(now_s, peer_key(node_id))

    def fs_add_revision(
        self, now_s: float, colony: str, label: str, name: str, revision: FileRevision
    ) -> int:
        return self.put(now_s, fs_key(colony, label, name), revision)

    def fs_get(self, now_s: float, colony: str, label: str, name: str) -> int:
        """The file's merged history → GetResult whose value is a FileRecord."""
        return self.get(now_s, fs_key(colony, label, name))

    def add_provider(self, now_s: float, key: bytes) -> int:
        """Announce that we hold content `key` to its k closest peers → ProvideResult."""
        if key not in self.provided and len(self.provided) >= self.config.provided_max:
            return self._fail(now_s, Op(PROVIDE, key_of(key), content=key), "providing too much")
        self.provided[key] = now_s + self.config.provider_ttl_s * self.config.republish_fraction
        return self._start(now_s, Op(PROVIDE, key_of(key), content=key))

    def get_providers(self, now_s: float, key: bytes, count: int | None = None) -> int:
        """Up to `count` (default k) providers of content `key` → ProvidersResult."""
        op = Op(PROVIDERS, key_of(key), content=key)
        op.wanted = count or self.config.k
        for provider, addrs in self.providers.get(key):
            op.found[provider] = addrs
        return self._start(now_s, op)

    def closest_peers(self, target: bytes, n: int | None = None) -> list[PeerInfo]:
        """From our own table (no network): for `colonynode peers`."""
        contacts = self.table.closest(int.from_bytes(target, "big"), n or self.config.k)
        return [PeerInfo(c.node_id, c.addrs) for c in contacts]

    # -- operations: lookups, then stores ---------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _start(self, now_s: float, op: Op) -> int:
        op.op_id = self._new_id()
        if len(self.ops) >= self.config.lookups_max:
            return self._fail(now_s, op, "too many lookups running")
        deadline_s = now_s + self.config.lookup_timeout_s
        op.lookup = Lookup(
            self.node_id,
            op.target,
            k=self.config.k,
            alpha=self.config.alpha,
            deadline_s=deadline_s,
            candidates_max=self.config.candidates_max,
        )
        op.lookup.add(
            ((c.node_id, c.addrs) for c in self.table.closest(op.target, self.config.k)), 0
        )
        if op.kind in (GET, PUT):
            assert op.key is not None
            for head in self.records.get(op.key):
                op.pool.setdefault(head.digest, head)
        self.table.touch(op.target, now_s)
        self.ops[op.op_id] = op
        heapq.heappush(self._deadlines, (deadline_s, -op.op_id))
        self._advance(now_s, op)
        return op.op_id

    def _fail(self, now_s: float, op: Op, reason: str) -> int:
        if not op.op_id:
            op.op_id = self._new_id()
        op.reason = reason
        self._finish(now_s, op)
        return op.op_id

    def _advance(self, now_s: float, op: Op) -> None:
        """Send what the op can send now; finish its phase when it is done."""
        lookup = op.lookup
        assert lookup is not None
        if op.phase == 0:
            for c in lookup.next_queries():
                self._query(now_s, op, c.node_id, c.addrs)
            if lookup.done:
                op.phase = 1
                self._lookup_done(now_s, op)
        if op.phase == 1 and op.acks_waiting == 0:
            self._finish(now_s, op)

    def _query(self, now_s: float, op: Op, peer: NodeId, addrs: tuple[str, ...]) -> None:
        if len(self.queries) >= self.config.queries_max:
            assert op.lookup is not None
            op.lookup.failed(peer)
            return
        rid = self._new_id()
        self.queries[rid] = (op.op_id, peer, False)
        heapq.heappush(self._deadlines, (now_s + self.config.query_timeout_s, rid))
        self._send(peer, op.request(rid), addrs)

    def _send(self, peer: NodeId, msg: Any, addrs: tuple[str, ...] = ()) -> None:
        if self.connected is not None and peer not in self.connected and peer not in self.dialed:
            if not addrs:
                contact = self.table.get(peer)
                addrs = contact.addrs if contact is not None else ()
            self.dialed[peer] = None
            if len(self.dialed) > DIALS_MAX:
                del self.dialed[next(iter(self.dialed))]
            self._effects.events.append(Dial(peer, addrs))
        self._effects.sends.append((peer, msg))

    def _lookup_done(self, now_s: float, op: Op) -> None:
        """The lookup phase ended: stores (put, provide, repair) or nothing more."""
        lookup = op.lookup
        assert lookup is not None
        closest = lookup.closest()
        if op.kind == PUT:
            self._store_phase(now_s, op, closest)
        elif op.kind == PROVIDE:
            assert op.content is not None
            for c in closest:
                self._store(now_s, op, c.node_id, AddProvider(0, op.content, self.addrs))
            if self._self_among_closest(op.target, closest):
                self.providers.add(now_s, op.content, self.node_id, self.addrs)
                op.stored += 1
        elif op.kind == GET:
            self._repair(op, [c.node_id for c in closest])

    def _store_phase(self, now_s: float, op: Op, closest: list[Candidate]) -> None:
        assert op.key is not None and self.identity is not None
        ns = namespace_of(self.namespaces, op.key)
        heads = reduce(ns, op.pool.values(), self.config.heads_max)
        if op.republish is not None:
            signed = op.republish
            best = reduce(ns, [*op.pool.values(), signed], self.config.heads_max)
            if signed.digest not in {h.digest for h in best}:
                op.reason = "a newer record exists"  # it covers ours: nothing to republish
                return
        else:
            own = self.authored.get(op.key)
            seq = max([h.seq for h in heads] + [own.seq if own is not None else -1]) + 1
            try:
                value = ns.prepare(op.key, self.node_id, heads, op.value)
                record = ValueRecord(op.key, seq, value, op.ttl_s)
                ns.validate(op.key, self.node_id, value)
                signed = SignedRecord(seal(self.identity, RECORD_DOMAIN, record), record)
            except ColonyError as exc:
                op.reason = f"cannot write {op.key}: {exc}"
                return
            if len(signed.envelope.payload) > self.config.value_bytes_max:
                op.reason = f"record of {len(signed.envelope.payload)} B over the cap"
                return
            self._remember_authored(now_s, signed)
        op.seq = signed.seq
        msg_records = (signed.envelope,)
        for c in closest:
            self._store(now_s, op, c.node_id, PutValue(0, msg_records))
        if self._self_among_closest(op.target, closest) and not self.records.offer(
            now_s, ns, [signed], self._effects.writes
        ):
            op.stored += 1

    def _self_among_closest(self, target: int, closest: Sequence[Candidate]) -> bool:
        if len(closest) < self.config.k:
            return True
        return (self.table.self_key ^ target) < closest[-1].distance

    def _remember_authored(self, now_s: float, signed: SignedRecord) -> None:
        key = signed.key
        if key not in self.authored and len(self.authored) >= self.config.authored_max:
            oldest = next(iter(self.authored))
            del self.authored[oldest]
            self.republish_at.pop(oldest, None)
            self._effects.writes.append((AUTHORED_TABLE, oldest.encode(), None))
        self.authored[key] = signed
        # The first store again comes soon (the closest peers of a young network, or of
        # a churning one, are not those of a few seconds later), then every TTL/2.
        every_s = signed.record.ttl_s * self.config.republish_fraction
        self.republish_at[key] = now_s + min(every_s, self.config.settle_republish_s)
        self._effects.writes.append((AUTHORED_TABLE, key.encode(), encode_heads([signed])))

    def _store(self, now_s: float, op: Op, peer: NodeId, msg: PutValue | AddProvider) -> None:
        rid = self._new_id()
        self.queries[rid] = (op.op_id, peer, True)
        heapq.heappush(self._deadlines, (now_s + self.config.query_timeout_s, rid))
        op.acks_waiting += 1
        self._send(peer, replace(msg, rid=rid))

    def _repair(self, op: Op, closest: list[NodeId]) -> None:
        """Send the best records to the closest peers that answered with worse or none."""
        assert op.key is not None
        ns = namespace_of(self.namespaces, op.key)
        heads = reduce(ns, op.pool.values(), self.config.heads_max)
        op.heads = heads
        if not heads:
            return
        best = {h.digest for h in heads}
        envelopes = tuple(h.envelope for h in heads)
        for peer in closest:
            if op.held.get(peer, frozenset()) != best:
                op.repaired += 1
                self._effects.sends.append((peer, PutValue(self._new_id(), envelopes)))

    def _finish(self, now_s: float, op: Op) -> None:
        self.ops.pop(op.op_id, None)
        if op.op_id == self.join_op:
            self._join_done(now_s, op)
            return
        if op.internal:
            return
        value = None
        if op.kind == GET and op.heads:
            assert op.key is not None
            value = namespace_of(self.namespaces, op.key).view(op.heads)
        quorum = min(self.config.get_quorum, max(1, len(self.table)))
        event = op.result(value, quorum, self.config.put_quorum)
        if event is not None:
            self._effects.events.append(event)

    def _join_done(self, now_s: float, op: Op) -> None:
        self.join_op = None
        lookup = op.lookup
        if lookup is None or lookup.answers == 0:
            for p in self.seeds:  # the seeds failed; try them again later
                self.table.seen(p.node_id, now_s, p.addrs)
            self.join_retry_s = now_s + self.config.join_retry_s
            return
        was_joined, self.joined = self.joined, True
        self._table_dirty = True
        self._save_contacts()
        self._effects.events.append(Joined(len(self.table), lookup.hops))
        for index in self._join_refreshes():
            self._refresh(now_s, index)
        if not was_joined and self.addrs and self.identity is not None:
            self.set_addrs(now_s, self.addrs)

    def _join_refreshes(self) -> list[int]:
        """The buckets a join refreshes, of those farther than our nearest neighbour and
        not full: first the ones at the edge of our k closest (the self-lookup learned
        only those k: the subtree just past them, about k nodes, is unknown to all of
        them unless someone looks there), deepest first; then the farthest."""
        table, k = self.table, self.config.k
        nearest = table.closest(table.self_key, k)
        if not nearest:
            return []
        depth = common_prefix_len(table.self_key, nearest[0].key)
        edge = common_prefix_len(table.self_key, nearest[-1].key) if len(nearest) >= k else depth
        open_ = [i for i in range(depth) if i >= len(table.buckets) or len(table.buckets[i]) < k]
        chosen = [i for i in reversed(open_) if i <= edge][: self.config.refresh_edge_on_join_max]
        far = [i for i in open_ if i not in chosen][: self.config.refresh_on_join_max]
        return chosen + far

    def _refresh(self, now_s: float, index: int) -> None:
        target = self.table.random_key_in_bucket(index, self.rng)
        self._start(now_s, Op(FIND, target, internal=True))

    def _republish(self, now_s: float) -> None:
        for key, at_s in list(self.republish_at.items()):
            if at_s <= now_s and len(self.ops) < self.config.lookups_max // 2:
                signed = self.authored[key]
                self.republish_at[key] = (
                    now_s + signed.record.ttl_s * self.config.republish_fraction
                )
                op = Op(PUT, key_of(key.encode()), key=key, internal=True)
                op.republish = signed
                op.ttl_s = signed.record.ttl_s
                self._start(now_s, op)
        for content, at_s in list(self.provided.items()):
            if at_s <= now_s and len(self.ops) < self.config.lookups_max // 2:
                self.provided[content] = (
                    now_s + self.config.provider_ttl_s * self.config.republish_fraction
                )
                self._start(now_s, Op(PROVIDE, key_of(content), content=content, internal=True))

    # -- timers --------------------------------------------------------------------------

    def _expire_deadlines(self, now_s: float) -> None:
        heap = self._deadlines
        while heap and heap[0][0] <= now_s:
            _, ident = heapq.heappop(heap)
            if ident < 0:
                op = self.ops.get(-ident)
                if op is not None and op.lookup is not None:
                    op.lookup.expired = True
                    op.acks_waiting = 0
                    self._advance(now_s, op)
                continue
            entry = self.queries.pop(ident, None)
            if entry is None:
                continue
            op_id, peer, is_store = entry
            self.stats["timeouts"] += 1
            if self.table.failed(peer):
                self._table_dirty = True
            op = self.ops.get(op_id)
            if op is None:
                continue
            if is_store:
                op.acks_waiting -= 1
            else:
                assert op.lookup is not None
                op.lookup.failed(peer)
            self._advance(now_s, op)

    def _next_wake_s(self) -> float | None:
        wake = min(self._next_sweep_s, self._next_save_s)
        if self.joined:
            wake = min(wake, self._next_refresh_s)
            if self.republish_at:
                wake = min(wake, min(self.republish_at.values()))
            if self.provided:
                wake = min(wake, min(self.provided.values()))
        heap = self._deadlines
        while heap and not self._pending(heap[0][1]):
            heapq.heappop(heap)  # answered or finished: no need to wake for it
        if heap:
            wake = min(wake, heap[0][0])
        if self.join_retry_s is not None:
            wake = min(wake, self.join_retry_s)
        return wake if self._started else None

    def _pending(self, ident: int) -> bool:
        """Whether a deadline (a query's rid, or minus an op's id) still matters."""
        return (-ident in self.ops) if ident < 0 else (ident in self.queries)

    def _save_contacts(self) -> None:
        if not self._table_dirty:
            return
        self._table_dirty = False
        contacts = self.table.closest(self.table.self_key, self.config.saved_contacts_max)
        value = [[c.node_id, list(c.addrs)] for c in contacts]
        self._effects.writes.append((CONTACTS_TABLE, _CONTACTS_KEY, value))


_HANDLERS: dict[type, Callable[[DhtCore, float, NodeId, Any], None]] = {
    FindNode: DhtCore._on_find_node,
    Nodes: DhtCore._on_nodes,
    GetValue: DhtCore._on_get_value,
    Value: DhtCore._on_value,
    PutValue: DhtCore._on_put_value,
    PutAck: DhtCore._on_put_ack,
    AddProvider: DhtCore._on_add_provider,
    GetProviders: DhtCore._on_get_providers,
    ProvidersMsg: DhtCore._on_providers,
}
