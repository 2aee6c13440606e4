"""The server side of DhtCore: answering peers' requests, and what a storer does when it
meets a new contact (hand-off). A mixin over the core's state: `DhtCore` is the one class
that holds it, this module only keeps core.py to a readable size."""

from __future__ import annotations

from collections.abc import Callable

from colonynode.core.effects import Effects
from colonynode.core.envelope import Envelope
from colonynode.core.errors import ColonyError
from colonynode.core.ids import NodeId
from colonynode.dht.config import DhtConfig
from colonynode.dht.local import LocalRecords, Providers, RateLimiter
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
from colonynode.dht.records import Namespace, SignedRecord, namespace_of, open_record
from colonynode.dht.routing import KEY_BITS, RoutingTable, key_of

__all__ = ["DhtServer"]


class DhtServer:
    """Request handlers; the state is DhtCore's (declared here for the type checker)."""

    config: DhtConfig
    table: RoutingTable
    records: LocalRecords
    providers: Providers
    rate: RateLimiter
    namespaces: dict[str, Namespace]
    verify: Callable[[Envelope], None]
    may_write: Callable[[NodeId, str], bool] | None
    joined: bool
    stats: dict[str, int]
    _effects: Effects
    _table_dirty: bool

    def _new_id(self) -> int:
        raise NotImplementedError

    def _send(self, peer: NodeId, msg: object, addrs: tuple[str, ...] = ()) -> None:
        raise NotImplementedError

    def check_records(self, key: str | None, envelopes: tuple[Envelope, ...]) -> list[SignedRecord]:
        """Open and validate records for one key (`key`, or the first record's): raises
        ColonyError for a bad signature, size, shape, namespace or writer."""
        records = [open_record(e, self.verify, self.config.value_bytes_max) for e in envelopes]
        key = key if key is not None else records[0].key
        if len(key.encode()) > self.config.key_bytes_max:
            raise ColonyError(f"key over {self.config.key_bytes_max} bytes")
        ns = namespace_of(self.namespaces, key)
        for r in records:
            if r.key != key:
                raise ColonyError(f"a record of {r.key} among records of {key}")
            ns.validate(key, r.author, r.record.value)
            if self.may_write is not None and not self.may_write(r.author, key):
                raise ColonyError(f"{key} may not be written by that author")
        return records

    # -- the routing table ---------------------------------------------------------------

    def _seen(self, now_s: float, peer: NodeId, addrs: tuple[str, ...] = ()) -> None:
        if peer in self.table:
            self.table.seen(peer, now_s, addrs)
        elif self.table.seen(peer, now_s, addrs):
            self._table_dirty = True
            if self.joined:  # while joining, our view is too thin to judge who is close
                self._hand_off(peer)

    def _hand_off(self, peer: NodeId) -> None:
        """A new contact gets the records it should hold (Kademlia §2.5: whoever learns of
        a new node stores on it the records it is now among the k closest to). To avoid a
        storm of redundant stores, only the holder closest to the key among those it knows
        hands a record over, and only to a newcomer among the k closest it knows."""
        contact = self.table.get(peer)
        assert contact is not None
        ours = self.table.self_key
        k = self.config.k
        removals = self.table.removals
        sent = 0
        for entry in self.records.entries.values():
            if entry.closer_known == removals:
                continue  # a contact closer to it than us was known (and none left since)
            target = entry.target
            mine = ours ^ target
            closest = self.table.closest(target, k)
            if any(c.key ^ target < mine for c in closest if c is not contact):
                entry.closer_known = removals
                continue  # someone we know is closer than us: theirs to hand over
            if contact not in closest:
                continue
            self._send(peer, PutValue(self._new_id(), tuple(h.envelope for h in entry.heads)))
            sent += 1
            if sent >= self.config.handoff_max:
                return

    def _peers_near(self, target: int, exclude: NodeId) -> tuple[PeerInfo, ...]:
        k = self.config.k
        out = [c.info for c in self.table.closest(target, k + 1) if c.node_id != exclude]
        return tuple(out[:k])

    # -- requests from peers (the server side) ---------------------------------------------

    def _on_find_node(self, now_s: float, sender: NodeId, msg: FindNode) -> None:
        self._seen(now_s, sender)
        self.stats["requests"] += 1
        if len(msg.target) != KEY_BITS // 8:
            return
        peers = self._peers_near(int.from_bytes(msg.target, "big"), sender)
        self._effects.sends.append((sender, Nodes(msg.rid, peers)))

    def _on_get_value(self, now_s: float, sender: NodeId, msg: GetValue) -> None:
        self._seen(now_s, sender)
        self.stats["requests"] += 1
        if len(msg.key.encode()) > self.config.key_bytes_max:
            return
        heads = tuple(h.envelope for h in self.records.get(msg.key))
        peers = self._peers_near(key_of(msg.key.encode()), sender)
        self._effects.sends.append((sender, Value(msg.rid, heads, peers)))

    def _on_get_providers(self, now_s: float, sender: NodeId, msg: GetProviders) -> None:
        self._seen(now_s, sender)
        self.stats["requests"] += 1
        found = tuple(PeerInfo(p, a) for p, a in self.providers.get(msg.key))
        peers = self._peers_near(key_of(msg.key), sender)
        self._effects.sends.append((sender, ProvidersMsg(msg.rid, found, peers)))

    def _on_put_value(self, now_s: float, sender: NodeId, msg: PutValue) -> None:
        self._seen(now_s, sender)
        self.stats["requests"] += 1
        reason = self._accept_records(now_s, sender, msg.records)
        if reason in ("invalid", "too big"):
            self.stats["refused_invalid"] += 1
        self._effects.sends.append((sender, PutAck(msg.rid, not reason, reason)))

    def _accept_records(self, now_s: float, sender: NodeId, envelopes: tuple[Envelope, ...]) -> str:
        if not envelopes or len(envelopes) > self.config.heads_max:
            return "invalid"
        if not self.rate.allow(sender, now_s):
            self.stats["refused_rate"] += 1
            return "rate"
        if self.records.refresh(now_s, envelopes):
            return ""  # we hold exactly these records already: no need to check them again
        try:
            records = self.check_records(None, envelopes)
        except ColonyError as exc:
            return "too big" if " over " in str(exc) else "invalid"
        ns = namespace_of(self.namespaces, records[0].key)
        return self.records.offer(now_s, ns, records, self._effects.writes)

    def _on_add_provider(self, now_s: float, sender: NodeId, msg: AddProvider) -> None:
        self._seen(now_s, sender)
        self.stats["requests"] += 1
        if not self.rate.allow(sender, now_s):
            self.stats["refused_rate"] += 1
            reason = "rate"
        elif len(msg.key) > self.config.key_bytes_max:
            reason = "too big"
        else:
            addrs = tuple(a for a in msg.addrs if len(a) <= self.config.addr_bytes_max)
            reason = self.providers.add(now_s, msg.key, sender, addrs)
        self._effects.sends.append((sender, PutAck(msg.rid, not reason, reason)))
