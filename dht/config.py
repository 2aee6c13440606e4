"""The DHT's parameters in one place, with named presets (STYLE.md 10).

Kademlia (Maymounkov & Mazières 2002) with libp2p's choices: k = 20 contacts per bucket
and replicas per record, α = 3 queries in flight per lookup. Every table, cache and queue
of the core has its `*_max` here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["DhtConfig"]


@dataclass(frozen=True, slots=True)
class DhtConfig:
    # -- Kademlia -----------------------------------------------------------------------
    k: int = 20  # bucket size, closest peers a lookup returns, replicas of a record
    alpha: int = 3  # queries in flight per lookup
    query_timeout_s: float = 5.0  # one request unanswered this long counts as failed
    lookup_timeout_s: float = 60.0  # a lookup ends with what it has after this long
    # A contact that failed this many queries in a row leaves the table (its bucket takes
    # the freshest contact of the replacement cache instead).
    contact_failures_max: int = 2
    replacements_max: int = 8  # per bucket, contacts waiting for a place
    addrs_max: int = 8  # multiaddrs kept per contact
    addr_bytes_max: int = 256  # one multiaddr
    # -- joining and refreshing ----------------------------------------------------------
    join_retry_s: float = 2.0  # a join that reached nobody tries again after this
    refresh_interval_s: float = 600.0  # a bucket untouched this long is refreshed
    # After its self-lookup a join refreshes the farthest buckets that are not full, at most
    # this many: they cover 1/2, 1/4, 1/8 of the network; periodic refreshes do the rest.
    refresh_on_join_max: int = 3
    # ... and first the buckets at the edge of its k closest, deepest first, at most this
    # many: a self-lookup learns only the k closest, so a neighbouring subtree of about k
    # nodes just past them stayed unknown, and lookups for keys in it ended short of it
    # (docs/dht.md, "Empty reads").
    refresh_edge_on_join_max: int = 2
    table_save_interval_s: float = 60.0  # contacts saved for a restart this often
    saved_contacts_max: int = 64
    # -- records ------------------------------------------------------------------------
    # Reads ask the k closest peers a lookup can reach (a quorum of them must answer) and
    # return the best record of all the answers; never the local copy alone.
    get_quorum: int = 3
    put_quorum: int = 1  # stores acknowledged before a put reports success
    record_ttl_s: float = 24 * 3600.0  # a storer keeps a record this long after a store
    # Authors store their records again at TTL/2, so a record outlives churn of storers.
    republish_fraction: float = 0.5
    # A new record is stored once more this long after its write (the network around it
    # may have changed: a colony starting, churn), then every TTL/2.
    settle_republish_s: float = 60.0
    provider_ttl_s: float = 24 * 3600.0
    expire_sweep_s: float = 10.0  # how often storers drop expired records and providers
    value_bytes_max: int = 64 * 1024  # one signed record's payload
    key_bytes_max: int = 256
    records_max: int = 10_000  # records a node stores for others
    handoff_max: int = 64  # records handed to one new contact (it is closer to them)
    heads_max: int = 8  # concurrent records kept under one merge-namespace key
    providers_max: int = 10_000  # provider entries a node stores
    providers_per_key_max: int = 20
    authored_max: int = 1_000  # records this node authored and republishes
    provided_max: int = 1_000  # keys this node provides and re-announces
    # -- load limits ----------------------------------------------------------------------
    store_rate_per_s: float = 10.0  # stores a peer may make here per second ...
    store_burst: float = 100.0  # ... after a burst of this many
    rate_peers_max: int = 1024  # peers whose store rate is tracked (oldest forgotten)
    lookups_max: int = 256  # lookups running at once; more are refused (an error result)
    queries_max: int = 1024  # requests in flight at once
    candidates_max: int = 200  # peers a lookup keeps in view (closest first)

    def __post_init__(self) -> None:
        if not 1 <= self.alpha <= self.k:
            raise ValueError("alpha is between 1 and k")
        if self.query_timeout_s <= 0 or self.lookup_timeout_s <= 0:
            raise ValueError("timeouts are positive")
        if not 0 < self.republish_fraction < 1:
            raise ValueError("republish_fraction is in (0, 1)")
        if self.candidates_max < self.k:
            raise ValueError("a lookup keeps at least k candidates")
        if not 1 <= self.get_quorum <= self.k or not 1 <= self.put_quorum <= self.k:
            raise ValueError("quorums are between 1 and k")
        if self.refresh_on_join_max < 0 or self.refresh_edge_on_join_max < 0:
            raise ValueError("a join refreshes zero buckets or more")

    @property
    def republish_s(self) -> float:
        """Authors store their records again this long after the last store (TTL/2)."""
        return self.record_ttl_s * self.republish_fraction

    # -- presets --------------------------------------------------------------------------

    @classmethod
    def wan(cls) -> DhtConfig:
        """The defaults: internet round trips of up to a few hundred ms."""
        return cls()

    @classmethod
    def lan(cls) -> DhtConfig:
        """A LAN: sub-millisecond round trips, so failures are known sooner."""
        return cls(query_timeout_s=1.0, lookup_timeout_s=15.0)

    @classmethod
    def local(cls) -> DhtConfig:
        """Tests and the simulator: short timeouts and TTLs so expiry is observable."""
        return cls(
            query_timeout_s=0.5,
            lookup_timeout_s=10.0,
            join_retry_s=0.5,
            record_ttl_s=120.0,
            provider_ttl_s=120.0,
            expire_sweep_s=1.0,
            table_save_interval_s=5.0,
            settle_republish_s=5.0,
        )

    def with_(self, **changes: float | int) -> DhtConfig:
        return replace(self, **changes)  # type: ignore[arg-type]
