"""GossipConfig: every parameter of the gossip core, with LAN / WAN / local presets.

Formulas (hashicorp/memberlist `config.go` style; RTT = a typical round trip):

- mesh degree: D = 6, D_low = 4, D_high = 12 (GossipSub v1.1). A record reaches
  n nodes in about log_(D-1)(n) mesh hops: 4.3 hops for 1,000 nodes;
- d_lazy = D: IHAVE goes to that many non-mesh peers per heartbeat;
- history_gossip_hb = 3: IHAVE repeats the ids of the last 3 heartbeats, so a record a
  node missed in the eager push is offered to it ~3 × d_lazy × (its peers' share) times;
- iwant_followup_s ≈ 3 × RTT_max: after that an unanswered IWANT may be sent again;
- anti_entropy_every_hb: a digest exchange with one random peer every that many
  heartbeats; a node behind by R records of one author is repaired in about
  R / ae_records_max exchanges, and it takes part in ~2 exchanges per round (its own and
  one a peer starts), so ae_records_max = 512 repairs a 1,000-record burst in ~1 round;
- prune_backoff_s = 60 × heartbeat_s (GossipSub's 1 minute);
- graylist: a peer that sends more than invalid_per_hb_max invalid records in one
  heartbeat is ignored for graylist_s (no CPU spent on its signatures);
- retention_s: a record's body is kept that long after it was accepted here (a restart
  counts as a fresh acceptance), then compacted to its high-water mark; retention_by_kind
  overrides it for some kinds (e.g. closed processes); records_max caps bodies kept;
- every cache and queue has a `*_max` below.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from colonynode.gossip.messages import (
    DIGEST_ENTRIES_MAX,
    RANGES_PER_MESSAGE_MAX,
    RECORDS_PER_MESSAGE_MAX,
)

__all__ = ["GossipConfig"]


@dataclass(frozen=True, slots=True)
class GossipConfig:
    heartbeat_s: float = 1.0
    d: int = 6
    d_low: int = 4
    d_high: int = 12
    d_lazy: int = 6
    history_gossip_hb: int = 3
    flood_publish: bool = True  # own records go to every peer, not only the mesh
    iwant_followup_s: float = 1.0
    anti_entropy_every_hb: int = 3
    prune_backoff_s: float = 60.0
    graylist_s: float = 30.0
    invalid_per_hb_max: int = 16
    retention_s: float = 7 * 86_400.0
    retention_by_kind: tuple[tuple[str, float], ...] = ()
    # -- bounds ---------------------------------------------------------------------------
    peers_max: int = 1024  # peers considered (set_peers keeps the first peers_max)
    authors_max: int = DIGEST_ENTRIES_MAX  # authors tracked (a colony has <= 4096 members)
    ahead_max: int = 4096  # records held past an author's high-water mark (a gap)
    records_max: int = 200_000  # bodies kept; past it the oldest are compacted early
    seen_max: int = 65_536  # recent signatures: duplicates dropped without decoding
    cache_max: int = 8_192  # recent records kept in memory to answer IWANT
    gossip_ids_max: int = 4_096  # ids per heartbeat window offered by IHAVE
    ihave_ranges_max: int = RANGES_PER_MESSAGE_MAX
    ihave_per_peer_hb_max: int = 10  # IHAVEs from one peer acted on per heartbeat
    iwant_records_max: int = 512  # records asked for or served per IWANT
    iwant_per_peer_hb_max: int = 20  # IWANTs from one peer served per heartbeat
    iwant_pending_max: int = 16_384  # ids asked for and not yet received
    ae_records_max: int = 512  # records pushed to a peer per anti-entropy exchange
    outbox_records_max: int = 4_096  # records queued for one peer in one step
    records_per_message_max: int = RECORDS_PER_MESSAGE_MAX
    compact_per_hb_max: int = 10_000  # bodies compacted per heartbeat

    def __post_init__(self) -> None:
        if not 0 < self.d_low <= self.d <= self.d_high:
            raise ValueError("mesh degrees need 0 < d_low <= d <= d_high")
        if self.heartbeat_s <= 0 or self.anti_entropy_every_hb < 1:
            raise ValueError("heartbeat_s > 0 and anti_entropy_every_hb >= 1")
        if not 0 < self.records_per_message_max <= RECORDS_PER_MESSAGE_MAX:
            raise ValueError(f"records_per_message_max is 1..{RECORDS_PER_MESSAGE_MAX}")
        if not 0 < self.ihave_ranges_max <= RANGES_PER_MESSAGE_MAX:
            raise ValueError(f"ihave_ranges_max is 1..{RANGES_PER_MESSAGE_MAX}")
        if not 0 < self.authors_max <= DIGEST_ENTRIES_MAX:
            raise ValueError(f"authors_max is 1..{DIGEST_ENTRIES_MAX}")

    def retention_of(self, kind: str) -> float:
        for name, seconds in self.retention_by_kind:
            if name == kind:
                return seconds
        return self.retention_s

    @classmethod
    def lan(cls) -> GossipConfig:
        """A data centre or office LAN: RTT ~1 ms, RTT_max ~50 ms."""
        return cls()

    @classmethod
    def wan(cls) -> GossipConfig:
        """Nodes across the internet: RTT ~100 ms, RTT_max ~1 s.

        iwant_followup_s = 3 × 1 s; anti-entropy every 5 heartbeats (digests cost more
        on slow links); the IHAVE window grows to 5 heartbeats to cover slow paths.
        """
        return cls(iwant_followup_s=3.0, anti_entropy_every_hb=5, history_gossip_hb=5)

    @classmethod
    def local(cls) -> GossipConfig:
        """A few daemons on one machine (tests, demos): RTT < 1 ms, fast heartbeats.

        heartbeat 0.2 s (5× LAN), so convergence takes a fraction of a second;
        prune_backoff_s = 60 × 0.2 s = 12 s.
        """
        return replace(
            cls(),
            heartbeat_s=0.2,
            iwant_followup_s=0.2,
            anti_entropy_every_hb=2,
            prune_backoff_s=12.0,
            graylist_s=6.0,
        )
