"""GossipCore: the sans-IO gossip state machine (DESIGN.md §7).

One topic per colony, GossipSub-style:

- **mesh**: each node keeps D (4..12) peers it pushes every new record to at once
  (eager push); GRAFT asks a peer into the mesh, PRUNE takes it out (with a backoff);
  the heartbeat (1 s) repairs the degree;
- **no relay to a peer the author reached**: a push names the peers its sender sent its
  own records of that push to as well (`sent_to`); a receiver relays those records to
  the rest of its mesh only (in a full mesh of n nodes, n - 2 of every record's n - 1
  relays went to a peer that had it). What a receiver left out, it offers by IHAVE at its
  next heartbeat, so a copy the author lost on the way costs a heartbeat, not the record;
- **lazy gossip**: each heartbeat, IHAVE of the records of the last `history_gossip_hb`
  heartbeats goes to `d_lazy` random non-mesh peers (and to the peers a relay left out),
  which ask with IWANT for what they lack;
- **anti-entropy**: every `anti_entropy_every_hb` heartbeats a node sends a random peer a
  SUMMARY (a hash of its high-water marks); if the peer's differs it answers with its
  DIGEST (author -> highest contiguous seq), and the node pushes what the peer lacks and
  sends IWANT for exactly the ranges it lacks itself. Compacted records are answered with
  GONE so a node that was away longer than the retention can move past them;
- **validation**: a record is dropped and counted, never relayed, when its sender is not a
  member (every message from a non-member is dropped), its author is not a member, its
  payload is malformed, it is a duplicate or a replay of a compacted record, or its
  signature is bad. Signatures are checked once per record (duplicates are recognised by
  signature bytes or by (author, seq) before any check). A peer that sends more than
  `invalid_per_hb_max` invalid records in a heartbeat is ignored for `graylist_s`.

Application calls: `publish`, `publish_envelope`, `set_peers`, `stats`; events:
`Accepted` for every newly held record (own records included, `local=True`).
All state changes happen in this module and in `_pull` (IHAVE, IWANT, Gone and
anti-entropy), split off by job; `_ledger.Ledger` holds the records.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Any

from colonynode.core.effects import BEFORE_SENDS, LAZY, Effects
from colonynode.core.envelope import Envelope
from colonynode.core.errors import ColonyError, DecodeError
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId
from colonynode.core.roster import SEQ_LIMIT
from colonynode.gossip import _pull
from colonynode.gossip._ledger import Ledger
from colonynode.gossip.config import GossipConfig
from colonynode.gossip.events import Accepted
from colonynode.gossip.messages import (
    SENT_TO_ID_BYTES,
    SENT_TO_MAX,
    Digest,
    Gone,
    Graft,
    IHave,
    IWant,
    Prune,
    Push,
    Summary,
    split_push,
)
from colonynode.gossip.records import (
    RECORD_DOMAIN,
    RecordBody,
    RecordId,
    open_body,
    ranges_of,
    seal_record,
)
from colonynode.storage.api import Store

__all__ = ["COUNTERS", "GossipCore", "OpenBody", "Verify", "verify_record"]

Verify = Callable[[Envelope], bool]
OpenBody = Callable[[Envelope], RecordBody]  # decode a record's payload (DecodeError if bad)

# Counters of stats(); every drop has one.
COUNTERS = (
    "published",
    "accepted",  # records newly held (own ones included)
    "received",  # record copies that arrived (duplicates included)
    "relayed",  # record copies sent (eager push, IWANT answers, anti-entropy)
    "relays_skipped",  # relays not sent: the author had sent the record to that peer itself
    "duplicates",
    "replays",  # a record whose body was already compacted here
    "invalid_signature",
    "non_member_author",
    "non_member_peer",  # messages from a sender that is not a member
    "malformed",
    "too_far_ahead",
    "too_many_authors",
    "graylisted",  # messages ignored from a graylisted peer
    "graylistings",
    "outbox_dropped",
    "ihave_sent",
    "ihave_ignored",
    "iwant_sent",
    "own_seqs_skipped",  # own sequence numbers passed over (a restart, a lost store)
    "iwant_served",
    "iwant_ignored",
    "grafts_sent",
    "prunes_sent",
    "ae_rounds",  # summaries sent
    "ae_digests",  # digests sent (summaries that differed)
    "ae_pushed",  # records pushed by anti-entropy
    "gone_sent",
    "gone_skipped",
    "gone_held",  # a Gone of another author's records one member alone said
)


def verify_record(env: Envelope) -> bool:
    """The default check: an Ed25519 signature by the author for the record domain."""
    try:
        env.verify(RECORD_DOMAIN)
    except ColonyError:
        return False
    return True


SEQ_ANY = SEQ_LIMIT - 1  # a member's records: any sequence number


class GossipCore:
    """The gossip protocol of one node (see the module docstring)."""

    def __init__(
        self,
        identity: Identity,
        store: Store,
        rng: random.Random,
        config: GossipConfig | None = None,
        *,
        is_member: Callable[[NodeId], bool],
        verify: Verify | None = None,
        open_record: OpenBody | None = None,
        author_seq_max: Callable[[NodeId], int | None] | None = None,
    ) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self.rng = rng
        self.config = config = config or GossipConfig.lan()
        self.is_member = is_member
        # the highest sequence number an author may sign (None: none): any for a member,
        # up to its removal for a former one (core/roster.py `Former`)
        self.author_seq_max = author_seq_max or (lambda a: SEQ_ANY if is_member(a) else None)
        self.verify = verify or verify_record
        self.open_record = open_record or open_body
        self.ledger = Ledger(store, config)
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._pass_reserved_seqs()
        self.peers: list[NodeId] = []
        self._peer_set: set[NodeId] = set()
        self.mesh: dict[NodeId, None] = {}  # an ordered set
        self.backoff: dict[NodeId, float] = {}  # peer -> no GRAFT to it before this
        self.graylist: dict[NodeId, float] = {}  # peer -> ignored until
        self._invalid_hb: dict[NodeId, int] = {}
        self._ihave_hb: dict[NodeId, int] = {}
        self._iwant_hb: dict[NodeId, int] = {}
        self._seen: OrderedDict[bytes, None] = OrderedDict()  # signatures of held records
        self._windows: list[list[RecordId]] = [[]]  # newest first: ids per heartbeat
        # ids in the windows -> the peers (id prefixes) sure to get them another way
        self._sure: dict[RecordId, frozenset[bytes]] = {}
        self._pending: dict[RecordId, float] = {}  # asked with IWANT, until
        self._outbox: dict[NodeId, list[Envelope]] = {}
        self._skipped: dict[NodeId, None] = {}  # peers a relay left out since the heartbeat
        # author -> member -> up to where that member says the author's records are gone
        self._gone_claims: dict[NodeId, dict[NodeId, int]] = {}
        self._effects = Effects()
        self.next_heartbeat_s: float | None = None
        self.heartbeats = 0
        self._ae_countdown = 0  # heartbeats to the next anti-entropy round

    # -- application calls --------------------------------------------------------------

    def publish(
        self, now_s: float, kind: str, body: Any, *, reached: Collection[NodeId] = ()
    ) -> Envelope:
        """Sign `body` as this node's next record, hold it and push it to the peers but
        those it `reached` another way (they hear of it at the next heartbeat's IHAVE,
        should that way fail)."""
        seq = self.ledger.take_seq()
        env = seal_record(self.identity, seq, kind, body)
        self.counters["published"] += 1
        self._accept(now_s, env, seq, kind, body, sender=self.node_id, local=True,
                     reached=_prefixes(reached), sure=True)  # fmt: skip
        return env

    def publish_envelope(
        self, now_s: float, env: Envelope, *, reached: Collection[NodeId] = ()
    ) -> str:
        """(Re)inject a record already signed by its author (e.g. an owner's roster
        record a joiner brought; `reached`: peers that have it another way). Returns
        "accepted" or the counter it was dropped under."""
        return self._receive(now_s, self.node_id, env, _prefixes(reached), sure=True)

    def highest_seq(self, author: NodeId) -> int:
        """The highest sequence number of `author`'s records this node has heard of."""
        ledger = self.ledger
        return max(ledger.hwm.get(author, 0), max(ledger.ahead.get(author, ()), default=0))

    def resume_after(self, seq: int) -> None:
        """Records of this node's up to `seq` exist, from a life whose store was lost (its
        key kept): number new ones past them, and past `OWN_SEQ_MARGIN` more that may be
        on their way, or the peers that hold the old ones would drop the new as copies.
        The skipped numbers count as held here, so the peers that ask for them hear they
        are gone."""
        ledger = self.ledger
        floor = seq + OWN_SEQ_MARGIN if seq > 0 else 0
        if floor < ledger.next_seq:
            return
        self.counters["own_seqs_skipped"] += floor - ledger.next_seq + 1
        if floor > ledger.hwm.get(self.node_id, 0):
            ledger.skip(self.node_id, ledger.hwm.get(self.node_id, 0) + 1, floor)
        ledger.bump_next_seq(floor + 1)

    def _pass_reserved_seqs(self) -> None:
        """A restart resumes numbering at the stored reservation (_ledger.py). The
        numbers between the last own record held and it are filled at the first tick
        with VOID records (signed, empty, ignored by every application), so no peer sees
        a gap: a gap of an author's is repaired only by the author's word or two
        members', which a member far from the author may wait for long. (One of them
        that a crash lost after its record left, in an early Submit, stays that record
        at the voters that got it; elsewhere it is void.)"""
        ledger = self.ledger
        held = ledger.hwm.get(self.node_id, 0)
        self._voids = range(held + 1, ledger.next_seq)
        self.counters["own_seqs_skipped"] += len(self._voids)

    def _publish_voids(self, now_s: float) -> None:
        for seq in self._voids:
            env = seal_record(self.identity, seq, VOID_KIND, None)
            self._accept(now_s, env, seq, VOID_KIND, None, sender=self.node_id, local=True,
                         sure=True)  # fmt: skip
            self.ledger.own = True
        self._voids = range(0)

    def set_peers(self, now_s: float, peers: Collection[NodeId]) -> None:
        """The members this node is connected to now (the driver calls it on changes)."""
        keep = [p for p in peers if p != self.node_id and self.is_member(p)]
        keep = sorted(set(keep))[: self.config.peers_max]
        self.peers = keep
        self._peer_set = set(keep)
        for p in [p for p in self.mesh if p not in self._peer_set]:
            del self.mesh[p]
        if len(self.mesh) < self.config.d_low:
            self._fill_mesh(now_s)

    def stats(self) -> dict[str, int]:
        """Counters (for `colonynode status --json` under `gossip`)."""
        out = dict(self.counters)
        out.update(self.ledger.stats())
        out["peers"] = len(self.peers)
        out["mesh"] = len(self.mesh)
        out["pending_iwant"] = len(self._pending)
        return out

    def has(self, author: NodeId, seq: int) -> bool:
        return self.ledger.has(author, seq)

    def digest(self) -> dict[NodeId, int]:
        """author -> highest contiguous sequence held (or compacted)."""
        return self.ledger.digest()

    def record(self, author: NodeId, seq: int) -> Envelope | None:
        return self.ledger.get(author, seq)

    # -- ProtocolCore -------------------------------------------------------------------

    def on_message(self, now_s: float, sender: NodeId, msg: Any) -> None:
        until = self.graylist.get(sender)
        if until is not None and until > now_s:
            self.counters["graylisted"] += 1
            return
        if not self.is_member(sender):
            self.counters["non_member_peer"] += 1
            return
        handler = _HANDLERS.get(type(msg))
        if handler is None:
            self.counters["malformed"] += 1
            return
        handler(self, now_s, sender, msg)

    def on_tick(self, now_s: float) -> None:
        if self.next_heartbeat_s is None:
            self.ledger.start(now_s)
            self._publish_voids(now_s)
            self.next_heartbeat_s = now_s + self.rng.uniform(0.0, self.config.heartbeat_s)
        if now_s >= self.next_heartbeat_s:
            self._heartbeat(now_s)
            hb = self.config.heartbeat_s
            self.next_heartbeat_s += hb
            if self.next_heartbeat_s <= now_s:  # a pause: skip what we missed
                self.next_heartbeat_s = now_s + hb

    def take_effects(self) -> Effects:
        self._flush_outbox()
        effects, self._effects = self._effects, Effects()
        ledger = self.ledger
        if ledger.writes:
            effects.writes, ledger.writes = ledger.writes, []
            # Records of others need no durability: a node that lost them in a crash gets
            # them again (anti-entropy). Its own must be durable before they are sent.
            effects.durability = BEFORE_SENDS if ledger.own else LAZY
            ledger.own = False
            ledger.reserved_out = ledger.reserved  # committed with these writes
        effects.wake_at_s = 0.0 if self.next_heartbeat_s is None else self.next_heartbeat_s
        return effects

    # -- records in -----------------------------------------------------------------------

    def _on_push(self, now_s: float, sender: NodeId, msg: Push) -> None:
        reached = frozenset(msg.sent_to)
        for env in msg.records:
            self._receive(now_s, sender, env, reached if env.author == sender else _NOBODY)
            if sender in self.graylist:
                return  # graylisted by this record: the rest is ignored unread

    def _receive(
        self,
        now_s: float,
        sender: NodeId,
        env: Envelope,
        reached: frozenset[bytes] = frozenset(),
        *,
        sure: bool = False,
    ) -> str:
        """Validate one record copy; accept it if new. Returns the outcome."""
        counters = self.counters
        counters["received"] += 1
        if env.signature in self._seen:
            counters["duplicates"] += 1
            return "duplicates"
        if env.domain != RECORD_DOMAIN:
            return self._invalid(now_s, sender, "malformed")
        author = env.author
        seq_max = self.author_seq_max(author)
        if seq_max is None:
            return self._invalid(now_s, sender, "non_member_author")
        try:
            body = self.open_record(env)
        except DecodeError:
            return self._invalid(now_s, sender, "malformed")
        ledger = self.ledger
        seq = body.seq
        if seq > seq_max:  # signed by a former member after it was removed
            return self._invalid(now_s, sender, "non_member_author")
        if ledger.has(author, seq):
            outcome = "duplicates"
            if seq <= ledger.hwm.get(author, 0) and ledger.get(author, seq) is None:
                outcome = "replays"
            counters[outcome] += 1
            return outcome
        refused = ledger.room_for(author, seq)
        if refused:
            counters[refused] += 1
            return refused
        if not self.verify(env):
            return self._invalid(now_s, sender, "invalid_signature")
        self._accept(now_s, env, seq, body.kind, body.body, sender=sender, local=False,
                     reached=reached, sure=sure)  # fmt: skip
        return "accepted"

    def _invalid(self, now_s: float, sender: NodeId, reason: str) -> str:
        self.counters[reason] += 1
        if sender == self.node_id:
            return reason
        n = self._invalid_hb.get(sender, 0) + 1
        self._invalid_hb[sender] = n
        if n > self.config.invalid_per_hb_max and sender not in self.graylist:
            self.graylist[sender] = now_s + self.config.graylist_s
            self.counters["graylistings"] += 1
            if sender in self.mesh:
                del self.mesh[sender]
                self._send(sender, Prune(self.config.graylist_s))
        return reason

    def _accept(
        self,
        now_s: float,
        env: Envelope,
        seq: int,
        kind: str,
        body: Any,
        *,
        sender: NodeId,
        local: bool,
        reached: frozenset[bytes] = frozenset(),
        sure: bool = False,
    ) -> None:
        """Hold a new record; queue it for the mesh (own records with flood_publish: every
        peer) but its sender, its author and the peers its author's push `reached`. Those
        hear of it at the next heartbeat's IHAVE, should that copy be lost, unless the
        caller is `sure` they get it another way (a voter, in its Submit: the claimer
        sends it again until the voter answers)."""
        author = env.author
        self.ledger.add(now_s, env, seq, kind)
        self.counters["accepted"] += 1
        seen = self._seen
        seen[env.signature] = None
        if len(seen) > self.config.seen_max:
            seen.popitem(last=False)
        self._pending.pop((author, seq), None)
        window = self._windows[0]
        if len(window) < self.config.gossip_ids_max:
            window.append((author, seq))
            if sure and reached:
                self._sure[(author, seq)] = reached
        if author == self.node_id:
            self.ledger.bump_next_seq(seq + 1)
        self._effects.events.append(Accepted(author, seq, kind, body, env, local))
        targets = self.peers if local and self.config.flood_publish else self.mesh
        for p in targets:
            if p in (sender, author):
                continue
            if reached and p[:SENT_TO_ID_BYTES] in reached:
                if not sure:
                    self._skipped[p] = None
                self.counters["relays_skipped"] += 1
                continue
            self._queue(p, env)

    # -- mesh -----------------------------------------------------------------------------

    def _on_graft(self, now_s: float, sender: NodeId, msg: Graft) -> None:
        if sender not in self._peer_set:
            return
        if sender in self.mesh:
            return
        if len(self.mesh) >= self.config.d_high:
            self.counters["prunes_sent"] += 1
            self._send(sender, Prune(self.config.prune_backoff_s))
            return
        self.mesh[sender] = None

    def _on_prune(self, now_s: float, sender: NodeId, msg: Prune) -> None:
        self.mesh.pop(sender, None)
        backoff_s = min(max(msg.backoff_s, 0.0), self.config.prune_backoff_s)
        self.backoff[sender] = now_s + backoff_s

    def _fill_mesh(self, now_s: float) -> None:
        config = self.config
        candidates = [
            p
            for p in self.peers
            if p not in self.mesh
            and self.backoff.get(p, 0.0) <= now_s
            and self.graylist.get(p, 0.0) <= now_s
        ]
        need = min(config.d - len(self.mesh), len(candidates))
        if need <= 0:
            return
        for p in self.rng.sample(candidates, need):
            self.mesh[p] = None
            self.counters["grafts_sent"] += 1
            self._send(p, Graft())

    def _maintain_mesh(self, now_s: float) -> None:
        config = self.config
        for p in [p for p in self.mesh if p not in self._peer_set or not self.is_member(p)]:
            del self.mesh[p]
        if len(self.mesh) < config.d_low:
            self._fill_mesh(now_s)
        elif len(self.mesh) > config.d_high:
            members = list(self.mesh)
            for p in self.rng.sample(members, len(members) - config.d):
                del self.mesh[p]
                self.counters["prunes_sent"] += 1
                self._send(p, Prune(config.prune_backoff_s))

    # -- the heartbeat --------------------------------------------------------------------

    def _heartbeat(self, now_s: float) -> None:
        config = self.config
        self.heartbeats += 1
        self._invalid_hb.clear()
        self._ihave_hb.clear()
        self._iwant_hb.clear()
        for table in (self.graylist, self.backoff):
            for p in [p for p, until in table.items() if until <= now_s]:
                del table[p]
        pending = self._pending
        for key in [k for k, until in pending.items() if until <= now_s]:
            del pending[key]
        self._maintain_mesh(now_s)
        self._gossip()
        if self.peers:
            self._ae_countdown -= 1
            if self._ae_countdown <= 0:
                self._ae_countdown = config.anti_entropy_every_hb
                peer = self.peers[self.rng.randrange(len(self.peers))]
                self.counters["ae_rounds"] += 1
                ledger = self.ledger
                self._send(peer, Summary(len(ledger.hwm), ledger.digest_hash()))
        self.ledger.compact(now_s)

    def _gossip(self) -> None:
        """IHAVE of the recent windows to d_lazy random non-mesh peers; rotate windows."""
        config = self.config
        ids = [i for window in self._windows for i in window]
        skipped, self._skipped = self._skipped, {}
        if ids:
            others = [p for p in self.peers if p not in self.mesh]
            chosen = self.rng.sample(others, min(config.d_lazy, len(others))) if others else []
            chosen += [p for p in skipped if p in self._peer_set and p not in chosen]
            shared: IHave | None = None
            for p in chosen:
                msg = self._ihave_for(p, ids)
                if msg is None:
                    if shared is None:
                        shared = IHave(tuple(ranges_of(ids, config.ihave_ranges_max)))
                    msg = shared
                if msg.ranges:
                    self.counters["ihave_sent"] += 1
                    self._send(p, msg)
        self._windows.insert(0, [])
        for old in self._windows[config.history_gossip_hb :]:
            for i in old:
                self._sure.pop(i, None)
        del self._windows[config.history_gossip_hb :]

    def _ihave_for(self, peer: NodeId, ids: list[RecordId]) -> IHave | None:
        """An IHAVE for `peer` without the records it is sure to get another way (a
        voter's submission records come in its Submits, which may queue behind a burst:
        an IHAVE first would have it fetch each twice). None: nothing to leave out."""
        sure = self._sure
        if not sure:
            return None
        prefix = peer[:SENT_TO_ID_BYTES]
        kept = [i for i in ids if prefix not in sure.get(i, ())]
        if len(kept) == len(ids):
            return None
        return IHave(tuple(ranges_of(kept, self.config.ihave_ranges_max)))

    # -- sending --------------------------------------------------------------------------

    def _send(self, peer: NodeId, msg: Any) -> None:
        self._effects.sends.append((peer, msg))

    def _queue(self, peer: NodeId, env: Envelope) -> None:
        box = self._outbox.get(peer)
        if box is None:
            self._outbox[peer] = [env]
        elif len(box) < self.config.outbox_records_max:
            box.append(env)
        else:
            self.counters["outbox_dropped"] += 1

    def _flush_outbox(self) -> None:
        """One Push a peer (split at the cap), each naming the other peers that this
        flush sends every own record of that push to as well (`sent_to`)."""
        if not self._outbox:
            return
        per = self.config.records_per_message_max
        sends = self._effects.sends
        me = self.node_id
        holders: dict[bytes, set[NodeId]] = {}  # own record (signature) -> peers it goes to
        for peer, box in self._outbox.items():
            for env in box:
                if env.author == me:
                    holders.setdefault(env.signature, set()).add(peer)
        relayed = 0
        for peer, box in self._outbox.items():
            relayed += len(box)
            for chunk in split_push(box, per):
                sends.append((peer, Push(chunk, self._sent_to(peer, chunk, holders))))
        self.counters["relayed"] += relayed
        self._outbox = {}

    def _sent_to(
        self, peer: NodeId, chunk: tuple[Envelope, ...], holders: dict[bytes, set[NodeId]]
    ) -> tuple[bytes, ...]:
        sets = [holders[e.signature] for e in chunk if e.signature in holders]
        common = set.intersection(*sets) - {peer} if sets else set()
        return tuple(sorted(p[:SENT_TO_ID_BYTES] for p in common)[:SENT_TO_MAX])


_NOBODY: frozenset[bytes] = frozenset()
# Own records a node that lost its store may have published past what the member that
# told it of them had heard (well inside the peers' ahead window, ahead_max).
OWN_SEQ_MARGIN = 256
VOID_KIND = "void"  # an own sequence number a restart passed over (_pass_reserved_seqs)

_HANDLERS: dict[type, Callable[[GossipCore, float, NodeId, Any], None]] = {
    Push: GossipCore._on_push,
    IHave: _pull.on_ihave,
    IWant: _pull.on_iwant,
    Graft: GossipCore._on_graft,
    Prune: GossipCore._on_prune,
    Summary: _pull.on_summary,
    Digest: _pull.on_digest,
    Gone: _pull.on_gone,
}


def _prefixes(nodes: Collection[NodeId]) -> frozenset[bytes]:
    return frozenset(bytes(n)[:SENT_TO_ID_BYTES] for n in nodes) if nodes else _NOBODY
