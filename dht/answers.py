"""The client side of DhtCore's lookups: the answers peers send to this node's queries
(Nodes, Value, Providers, PutAck), each matched to its op and fed to the lookup. A
mixin over the core's state like `DhtServer`: `DhtCore` is the one class that holds it,
this module only keeps core.py to a readable size."""

from __future__ import annotations

from collections.abc import Callable

from colonynode.core.errors import ColonyError
from colonynode.core.ids import NodeId
from colonynode.dht.messages import Nodes, PeerInfo, PutAck, Value
from colonynode.dht.messages import Providers as ProvidersMsg
from colonynode.dht.ops import Op
from colonynode.dht.records import record_digest
from colonynode.dht.server import DhtServer

__all__ = ["DhtAnswers"]


class DhtAnswers(DhtServer):
    """Answer handlers; the state is DhtCore's (declared here for the type checker)."""

    ops: dict[int, Op]
    queries: dict[int, tuple[int, NodeId, bool]]  # query id -> (op id, peer, a store?)
    is_member: Callable[[NodeId], bool] | None

    def _advance(self, now_s: float, op: Op) -> None:
        raise NotImplementedError

    def _answer(self, now_s: float, sender: NodeId, rid: int, *, store: bool = False) -> Op | None:
        """The op a valid answer belongs to (the query is consumed), or None."""
        entry = self.queries.get(rid)
        if entry is None or entry[1] != sender or entry[2] != store:
            return None
        del self.queries[rid]
        op = self.ops.get(entry[0])
        lookup = op.lookup if op is not None else None
        candidate = lookup.candidates.get(sender) if lookup is not None else None
        self._seen(now_s, sender, candidate.addrs if candidate is not None else ())
        return op

    def _on_peers_answer(
        self, now_s: float, sender: NodeId, op: Op, peers: tuple[PeerInfo, ...]
    ) -> None:
        if op.phase != 0:
            return
        assert op.lookup is not None
        pairs = [
            (p.node_id, tuple(p.addrs[: self.config.addrs_max])) for p in peers[: self.config.k]
        ]
        if self.is_member is not None:
            pairs = [p for p in pairs if self.is_member(p[0])]
        if op.lookup.answered(sender, pairs):
            self._advance(now_s, op)

    def _on_nodes(self, now_s: float, sender: NodeId, msg: Nodes) -> None:
        op = self._answer(now_s, sender, msg.rid)
        if op is not None:
            self._on_peers_answer(now_s, sender, op, msg.peers)

    def _on_value(self, now_s: float, sender: NodeId, msg: Value) -> None:
        op = self._answer(now_s, sender, msg.rid)
        if op is None:
            return
        if op.phase == 0 and op.key is not None:
            held: set[bytes] = set()
            for env in msg.records[: self.config.heads_max]:
                digest = record_digest(env)
                if digest in op.pool:  # the same signed bytes as a record already checked
                    held.add(digest)
                    continue
                try:
                    [signed] = self.check_records(op.key, (env,))
                except ColonyError:
                    self.stats["refused_invalid"] += 1
                    continue
                held.add(signed.digest)
                op.pool.setdefault(signed.digest, signed)
            op.held[sender] = frozenset(held)
        self._on_peers_answer(now_s, sender, op, msg.peers)

    def _on_providers(self, now_s: float, sender: NodeId, msg: ProvidersMsg) -> None:
        op = self._answer(now_s, sender, msg.rid)
        if op is None:
            return
        for p in msg.providers[: self.config.providers_per_key_max]:
            if len(op.found) < op.wanted:
                op.found.setdefault(p.node_id, tuple(p.addrs[: self.config.addrs_max]))
        if len(op.found) >= op.wanted and op.lookup is not None:
            op.lookup.answered(sender, ())
            op.lookup.expired = True  # enough providers: stop early
            self._advance(now_s, op)
            return
        self._on_peers_answer(now_s, sender, op, msg.peers)

    def _on_put_ack(self, now_s: float, sender: NodeId, msg: PutAck) -> None:
        op = self._answer(now_s, sender, msg.rid, store=True)
        if op is None or op.phase != 1:
            return
        op.acks_waiting -= 1
        if msg.stored:
            op.stored += 1
        elif msg.reason and not op.reason and msg.reason == "stale":
            op.reason = "a newer record exists"
        self._advance(now_s, op)
