"""One running operation of the core: a lookup, then (for put, provide, repair) stores."""

from __future__ import annotations

from typing import Any

from colonynode.core.ids import NodeId
from colonynode.dht.events import (
    FindNodeResult,
    GetResult,
    ProvideResult,
    ProvidersResult,
    PutResult,
)
from colonynode.dht.lookup import Lookup
from colonynode.dht.messages import FindNode, GetProviders, GetValue, PeerInfo
from colonynode.dht.records import SignedRecord
from colonynode.dht.routing import KEY_BITS

__all__ = ["FIND", "GET", "KINDS", "PROVIDE", "PROVIDERS", "PUT", "Op"]

FIND, GET, PUT, PROVIDE, PROVIDERS = 0, 1, 2, 3, 4
KINDS = ("find", "get", "put", "provide", "providers")


class Op:
    __slots__ = (
        "acks_waiting",
        "content",
        "found",
        "heads",
        "held",
        "internal",
        "key",
        "kind",
        "lookup",
        "op_id",
        "phase",
        "pool",
        "reason",
        "repaired",
        "republish",
        "seq",
        "stored",
        "target",
        "ttl_s",
        "value",
        "wanted",
    )

    def __init__(
        self,
        kind: int,
        target: int,
        *,
        key: str | None = None,
        value: Any = None,
        content: bytes | None = None,
        internal: bool = False,
    ) -> None:
        self.kind = kind
        self.target = target
        self.key = key  # GET, PUT: the record key
        self.value = value  # PUT: what the application writes
        self.content = content  # PROVIDE, PROVIDERS: the content key
        self.internal = internal  # no result event (join, refresh, republish)
        self.op_id = 0
        self.lookup: Lookup | None = None
        self.phase = 0  # 0: lookup; 1: stores sent, waiting for acks
        self.acks_waiting = 0
        self.stored = 0
        self.seq = -1
        self.reason = ""
        self.ttl_s = 0.0
        self.republish: SignedRecord | None = None  # PUT of a record we already signed
        self.pool: dict[bytes, SignedRecord] = {}  # GET, PUT: every valid record seen
        self.held: dict[NodeId, frozenset[bytes]] = {}  # GET: what each peer answered
        self.heads: list[SignedRecord] = []
        self.repaired = 0
        self.found: dict[NodeId, tuple[str, ...]] = {}  # PROVIDERS
        self.wanted = 0

    def request(self, rid: int) -> FindNode | GetValue | GetProviders:
        """The query this op's lookup sends to one peer."""
        if self.kind in (GET, PUT):
            assert self.key is not None
            return GetValue(rid, self.key)
        if self.kind == PROVIDERS:
            assert self.content is not None
            return GetProviders(rid, self.content)
        return FindNode(rid, self.target.to_bytes(KEY_BITS // 8, "big"))

    def result(self, value: Any, get_quorum: int, put_quorum: int) -> Any:
        """The event that reports this op to the application (None: no event)."""
        lookup = self.lookup
        hops = lookup.hops if lookup is not None else None
        if self.internal:
            return None
        if self.kind == FIND:
            peers = tuple(PeerInfo(c.node_id, c.addrs) for c in lookup.closest()) if lookup else ()
            queries, failures = (lookup.queries, lookup.failures) if lookup else (0, 0)
            target = self.target.to_bytes(KEY_BITS // 8, "big")
            return FindNodeResult(self.op_id, target, peers, hops, queries, failures)
        if self.kind == GET:
            answers = lookup.answers if lookup is not None else 0
            seq = max(h.seq for h in self.heads) if self.heads else None
            quorum = answers >= get_quorum
            key = self.key or ""
            expired = lookup is not None and lookup.expired
            return GetResult(self.op_id, key, value, seq, answers, quorum, hops, self.repaired,
                             expired)  # fmt: skip
        if self.kind == PUT:
            ok = not self.reason and self.stored >= put_quorum
            reason = self.reason or ("" if ok else f"{self.stored} stores acknowledged")
            if self.republish is not None:
                return None
            return PutResult(self.op_id, self.key or "", self.seq, self.stored, ok, reason)
        content = self.content or b""
        if self.kind == PROVIDE:
            return ProvideResult(self.op_id, content, self.stored, self.stored >= 1)
        found = tuple(PeerInfo(p, a) for p, a in self.found.items())[: self.wanted]
        return ProvidersResult(self.op_id, content, found, hops)
