"""Pulling records, a part of `GossipCore` (core.py) split off by job. Lazy gossip: an
IHAVE is answered with an IWANT for the records this node lacks and did not just ask
for, an IWANT with the records held (a `Gone` for those compacted), and a `Gone` is
believed from the records' author or from two other members. Anti-entropy: a `Summary`
that differs from ours is answered with our `Digest`; a `Digest` with what the peer
lacks, and an IWANT for what we lack. Functions of the core: they change its state as
its methods do, in the same step."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from colonynode.core.ids import NodeId
from colonynode.gossip.messages import Digest, Gone, IHave, IWant, Summary
from colonynode.gossip.records import RecordId, SeqRange, ranges_of

if TYPE_CHECKING:
    from colonynode.gossip.core import GossipCore

__all__ = ["GONE_CLAIMS_MAX", "on_digest", "on_gone", "on_ihave", "on_iwant", "on_summary", "want"]

GONE_CLAIMS_MAX = 64  # members whose Gone claims about one author are kept


def _within(core: GossipCore, counts: dict[NodeId, int], sender: NodeId, limit: int,
            ignored: str) -> bool:  # fmt: skip
    """Count one more message of `sender`'s this heartbeat; False (counted as `ignored`)
    once it is over `limit`."""
    n = counts[sender] = counts.get(sender, 0) + 1
    if n > limit:
        core.counters[ignored] += 1
        return False
    return True


def on_ihave(core: GossipCore, now_s: float, sender: NodeId, msg: IHave) -> None:
    if _within(core, core._ihave_hb, sender, core.config.ihave_per_peer_hb_max, "ihave_ignored"):
        want(core, now_s, sender, msg.ranges)


def want(core: GossipCore, now_s: float, peer: NodeId, ranges: Collection[SeqRange]) -> None:
    """Ask `peer` for the records of `ranges` this node lacks and did not just ask."""
    config = core.config
    budget = config.iwant_records_max
    pending = core._pending
    ledger = core.ledger
    wanted: list[RecordId] = []
    until = now_s + config.iwant_followup_s
    pending_max = config.iwant_pending_max
    examined = 4 * budget  # bounds the work one message can cause
    for r in ranges:
        author = r.author
        last = min(r.last, core.author_seq_max(author) or 0)  # (a former member's: up to
        if last <= ledger.hwm.get(author, 0):  # its removal)
            continue
        for seq in ledger.missing(author, r.first, last):
            examined -= 1
            if budget <= 0 or examined < 0 or len(pending) >= pending_max:
                break
            key = (author, seq)
            asked = pending.get(key)
            if asked is not None and asked > now_s:
                continue
            pending[key] = until
            wanted.append(key)
            budget -= 1
    if wanted:
        core.counters["iwant_sent"] += len(wanted)
        core._send(peer, IWant(tuple(ranges_of(wanted, config.ihave_ranges_max))))


def on_iwant(core: GossipCore, now_s: float, sender: NodeId, msg: IWant) -> None:
    if not _within(core, core._iwant_hb, sender, core.config.iwant_per_peer_hb_max,
                   "iwant_ignored"):  # fmt: skip
        return
    budget = core.config.iwant_records_max
    ledger = core.ledger
    gone: list[RecordId] = []
    for r in msg.ranges:
        hwm = ledger.hwm.get(r.author, 0)
        seq = r.first
        while seq <= r.last and budget > 0:
            budget -= 1
            env = ledger.get(r.author, seq)
            if env is not None:
                core._queue(sender, env)
                core.counters["iwant_served"] += 1
            elif seq <= hwm:
                gone.append((r.author, seq))
            seq += 1
    if gone:
        core.counters["gone_sent"] += len(gone)
        core._send(sender, Gone(tuple(ranges_of(gone, core.config.ihave_ranges_max))))


def on_gone(core: GossipCore, now_s: float, sender: NodeId, msg: Gone) -> None:
    """Records a peer compacted: skip them, if their author says so, or two other
    members do (up to where both say): one member's word alone would let it blind
    this node to another's records, which it would then never ask for again."""
    ledger = core.ledger
    for r in msg.ranges:
        author = r.author
        if core.author_seq_max(author) is None or not r.first <= ledger.hwm.get(author, 0) + 1:
            continue
        if sender == author:
            last = r.last
        else:
            claims = core._gone_claims.setdefault(author, {})
            if sender not in claims and len(claims) >= GONE_CLAIMS_MAX:
                continue
            claims[sender] = max(claims.get(sender, 0), r.last)
            if len(claims) < 2:
                core.counters["gone_held"] += 1
                continue
            last = sorted(claims.values())[-2]  # what two members say at least
        before = ledger.hwm.get(author, 0)
        if ledger.skip(author, before + 1, last):
            core.counters["gone_skipped"] += ledger.hwm.get(author, 0) - before
            core._gone_claims.pop(author, None)


def on_summary(core: GossipCore, now_s: float, sender: NodeId, msg: Summary) -> None:
    ledger = core.ledger
    if msg.digest_hash == ledger.digest_hash() and msg.authors == len(ledger.hwm):
        return
    core.counters["ae_digests"] += 1
    core._send(sender, Digest(ledger.digest()))


def on_digest(core: GossipCore, now_s: float, sender: NodeId, msg: Digest) -> None:
    limit = core.config.ihave_per_peer_hb_max  # digests share the IHAVE budget
    if not _within(core, core._ihave_hb, sender, limit, "ihave_ignored"):
        return
    ledger = core.ledger
    theirs = msg.hwms
    # What they lack: push it (bounded), or say it is gone.
    budget = core.config.ae_records_max
    gone: list[RecordId] = []
    for author in [*ledger.hwm, *(a for a in ledger.ahead if a not in ledger.hwm)]:
        hwm = ledger.hwm.get(author, 0)
        seq = theirs.get(author, 0) + 1
        while seq <= hwm and budget > 0:
            budget -= 1
            env = ledger.get(author, seq)
            if env is None:
                gone.append((author, seq))
            else:
                core._queue(sender, env)
                core.counters["ae_pushed"] += 1
            seq += 1
        # and what this node holds past a gap (they may lack it: the digests say only
        # hwms), so that a gap nobody can fill does not hide it from them for good
        for later in sorted(s for s in ledger.ahead.get(author, ()) if s >= seq)[:budget]:
            env = ledger.get(author, later)
            if env is not None:
                budget -= 1
                core._queue(sender, env)
                core.counters["ae_pushed"] += 1
        if budget <= 0:
            break
    if gone:
        core.counters["gone_sent"] += len(gone)
        core._send(sender, Gone(tuple(ranges_of(gone, core.config.ihave_ranges_max))))
    # What we lack: ask for exactly those ranges.
    lacking = []
    for author, hwm in theirs.items():
        if author == core.node_id:
            ledger.bump_next_seq(hwm + 1)
        if hwm > ledger.hwm.get(author, 0):
            lacking.append(SeqRange(author, ledger.hwm.get(author, 0) + 1, hwm))
    if lacking:
        want(core, now_s, sender, lacking)
