"""Vouching: the voters' word for what a removed member registered before it went.

A removed member's gossip records stay valid up to `Former.last_seq`, the highest of its
records the owner's node held when it removed it (core/roster.py); later ones are
refused, so a removed member cannot go on acting in the colony. A record it signed
before its removal that the owner's node had not heard of yet (a partition, a record in
flight) is past that cut too: a node that did not hold it by then never takes it, and a
process the voters acknowledged stays unknown to that node's view for good (the voters
scenario, chaos seeds 102 and 197).

Every voter holds the signed record of each register it took (`ProcessTerms.record`:
a submission, a cron's or a generator's definition, a packed arg), and took it only
while its author was a member with the submitter role. So when a roster names a former
member, a voter's node publishes the records of its registers that member signed past
its cut, in `vouch` records of its own (at most VOUCH_BATCH_MAX a record). A node takes
a vouched record from a voter of the current or the previous set when it is signed by
a member or a former member (its signature checked), and hands it on as gossip would
have (a vouch from a node it does not know as a voter yet, its roster behind, waits for
the next roster: VOUCHES_HELD_MAX of them). What is
not in a register (a removed member's logs, its running and closed announcements) is
not vouched for: the voters' reads repair the view of a process it held.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from colonynode.core.codec import decode_raw, from_wire
from colonynode.core.envelope import Envelope
from colonynode.core.errors import ColonyError
from colonynode.core.ids import NodeId
from colonynode.gossip.events import Accepted
from colonynode.gossip.records import open_body

if TYPE_CHECKING:
    from colonynode.node.core.nodecore import NodeCore

__all__ = ["VOUCH_KIND", "Vouches", "envelope_of"]

VOUCH_KIND = "vouch"
VOUCH_BATCH_MAX = 64  # records one vouch record carries
VOUCH_BYTES_MAX = 256 * 1024  # ... and about this many bytes of them
VOUCHES_HELD_MAX = 256  # vouches from nodes not known as voters yet, held for a roster


class Vouches:
    """One node's side of vouching: what it vouched for, and what it takes."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        self._vouched: dict[NodeId, int] = {}  # former member -> the cut vouched past
        self._held: list[Accepted] = []  # vouches from nodes not (yet) known as voters
        self.counters: dict[str, int] = dict.fromkeys(("vouched", "taken", "refused"), 0)

    def roster_changed(self) -> None:
        """A roster names former members this node has not vouched for yet: if it is a
        voter, publish the records of its registers they signed past their cuts."""
        roster = self.core.membership.roster
        if roster is None or not self.core._started:
            return  # (NodeCore's first tick asks again)
        held, self._held = self._held, []
        for event in held:
            self.on_record(event)
        fresh = {f.node_id: f.last_seq for f in roster.former
                 if self._vouched.get(f.node_id) != f.last_seq}  # fmt: skip
        if not fresh:
            return
        self._vouched.update(fresh)
        voter = self.core.consensus.voter
        found: list[bytes] = []
        for pid in sorted(voter.registers):
            terms = voter.registers[pid].terms
            cut = fresh.get(terms.submitter)
            if cut is not None and terms.record and _seq_of(terms.record) > cut:
                found.append(terms.record)
        batch: list[bytes] = []
        for record in found:
            size = sum(map(len, batch))
            if batch and (len(batch) >= VOUCH_BATCH_MAX or size + len(record) > VOUCH_BYTES_MAX):
                self._publish(batch)
                batch = []
            batch.append(record)
        if batch:
            self._publish(batch)

    def _publish(self, records: list[bytes]) -> None:
        self.core.publish(VOUCH_KIND, {"records": records})
        self.counters["vouched"] += len(records)

    def on_record(self, event: Accepted) -> None:
        """A voter's vouch: each record signed by a former member goes on as gossip."""
        core = self.core
        if event.local:
            return
        if not self._voter(event.author):
            if len(self._held) < VOUCHES_HELD_MAX:
                self._held.append(event)  # (judged again on the next roster)
            return
        records = event.body.get("records") if isinstance(event.body, dict) else None
        if not isinstance(records, list):
            return
        gossip = core.gossip
        for record in records[:VOUCH_BATCH_MAX]:
            env = envelope_of(record)
            if env is None:
                self.counters["refused"] += 1
                continue
            try:
                body = gossip.open_record(env)
            except (ColonyError, ValueError, TypeError):
                body = None
            if body is None or core.membership.author_seq_max(env.author) is None:
                self.counters["refused"] += 1
                continue
            if not gossip.verify(env):
                self.counters["refused"] += 1
                continue
            self.counters["taken"] += 1
            core.take_record(Accepted(env.author, body.seq, body.kind, body.body, env))

    def _voter(self, node: NodeId) -> bool:
        roster = self.core.membership.roster
        if roster is None:
            return False
        return node in roster.voters or node in self.core.consensus.voter.vset.previous


def envelope_of(record: Any) -> Envelope | None:
    """The signed envelope a register keeps (`ProcessTerms.record`), or None."""
    if not isinstance(record, bytes):
        return None
    try:
        return from_wire(Envelope, decode_raw(record))  # the conversion checks limits
    except (ColonyError, ValueError, TypeError):
        return None


def _seq_of(record: bytes) -> int:
    """The sequence number of a register's signed record (0: not one)."""
    env = envelope_of(record)
    if env is None:
        return 0
    try:
        return open_body(env).seq
    except (ColonyError, ValueError, TypeError):
        return 0
