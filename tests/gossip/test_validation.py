"""Duplicates, replays, bad signatures, non-members: dropped, counted, never relayed."""

from __future__ import annotations

import random

from colonynode.core.codec import encode
from colonynode.core.envelope import Envelope
from colonynode.gossip import (
    RECORD_DOMAIN,
    Accepted,
    GossipConfig,
    Graft,
    IHave,
    Push,
    RecordBody,
    SeqRange,
    seal_record,
)
from tests.gossip.harness import Colony, identity


def _relayed(colony: Colony) -> list[Envelope]:
    return [e for _, _, m in colony.sent if isinstance(m, Push) for e in m.records]


def _forged(author: Envelope, seq: int) -> Envelope:
    payload = encode(RecordBody(seq, "note", "forged"))
    return Envelope(author.author, RECORD_DOMAIN, payload, bytes(64))


def test_a_published_record_reaches_everyone_once() -> None:
    colony = Colony(12)
    colony.tick_all(2.0, step_s=0.25)
    env = colony.publish(3, {"x": 1})
    for i in range(12):
        got = [(e.author, e.seq) for e in colony.accepted(i)]
        assert got == [(env.author, 1)]
    assert colony.accepted(3)[0].local and not colony.accepted(4)[0].local
    # The author pushed it to all 11 peers and said so: no relay, so no duplicate copy
    # (test_relays.py: what a lost copy costs instead).
    assert sum(c.stats()["duplicates"] for c in colony.cores) == 0
    assert sum(c.stats()["relays_skipped"] for c in colony.cores) > 0


def test_duplicates_are_dropped_and_counted() -> None:
    colony = Colony(4)
    env = colony.publish(0, "a")
    core = colony.cores[1]
    before = core.stats()
    core.on_message(colony.now_s, colony.node_id(2), Push((env, env)))
    effects = core.take_effects()
    assert core.stats()["duplicates"] == before["duplicates"] + 2
    assert not effects.sends and not effects.events


def test_bad_signatures_are_dropped_counted_and_never_relayed() -> None:
    colony = Colony(6)
    colony.tick_all(1.0, step_s=0.25)
    real = seal_record(colony.ids[0], 1, "note", "real")
    forged = _forged(real, 1)
    colony.cores[1].on_message(colony.now_s, colony.node_id(2), Push((forged,)))
    colony.settle()
    assert colony.cores[1].stats()["invalid_signature"] == 1
    assert forged not in _relayed(colony)
    assert not colony.accepted(1)
    # The forgery did not take the (author, seq) slot: the real record is still accepted.
    colony.cores[1].on_message(colony.now_s, colony.node_id(2), Push((real,)))
    colony.settle()
    assert [e.seq for e in colony.accepted(1)] == [1]


def test_records_by_non_members_are_dropped_and_never_relayed() -> None:
    colony = Colony(5, members=range(4))  # node 4 is not a member
    colony.tick_all(1.0, step_s=0.25)
    intruder = seal_record(colony.ids[4], 1, "note", "hi")
    colony.cores[0].on_message(colony.now_s, colony.node_id(1), Push((intruder,)))
    colony.settle()
    assert colony.cores[0].stats()["non_member_author"] == 1
    assert intruder not in _relayed(colony)


def test_every_message_from_a_non_member_peer_is_dropped() -> None:
    colony = Colony(5, members=range(4))
    colony.tick_all(1.0, step_s=0.25)
    core = colony.cores[0]
    outsider = colony.node_id(4)
    assert outsider not in core.peers  # set_peers keeps members only
    valid = seal_record(colony.ids[1], 1, "note", "from a member")
    before = core.stats()["non_member_peer"]
    for msg in (Graft(), Push((valid,)), IHave((SeqRange(colony.node_id(1), 1, 1),))):
        core.on_message(colony.now_s, outsider, msg)
    effects = core.take_effects()
    assert core.stats()["non_member_peer"] == before + 3
    assert outsider not in core.mesh and not effects.sends and not effects.events


def test_a_replay_of_a_compacted_record_is_dropped_and_counted() -> None:
    colony = Colony(3, GossipConfig(retention_s=5.0))
    env = colony.publish(0, "old")
    colony.tick_all(8.0, step_s=0.5)  # retention ran out: the bodies are compacted
    core = colony.cores[1]
    assert core.record(env.author, 1) is None and core.has(env.author, 1)
    core._seen.clear()  # long ago: the signature left the seen-cache too
    core.on_message(colony.now_s, colony.node_id(2), Push((env,)))
    effects = core.take_effects()
    assert core.stats()["replays"] == 1
    assert not effects.events and not effects.sends


def test_malformed_payloads_are_dropped_and_counted() -> None:
    colony = Colony(3)
    good = seal_record(colony.ids[0], 1, "note", 0)
    bad = Envelope(good.author, RECORD_DOMAIN, b"\xff\xff", good.signature)
    wrong_domain = Envelope(good.author, "roster", good.payload, good.signature)
    core = colony.cores[1]
    core.on_message(colony.now_s, colony.node_id(2), Push((bad, wrong_domain)))
    core.take_effects()
    assert core.stats()["malformed"] == 2


def test_a_flooding_peer_is_graylisted_and_then_ignored() -> None:
    cfg = GossipConfig(invalid_per_hb_max=4, graylist_s=10.0)
    colony = Colony(4, cfg)
    colony.tick_all(1.0, step_s=0.25)
    core = colony.cores[0]
    flooder = colony.node_id(3)
    real = seal_record(colony.ids[1], 1, "note", "x")
    forged = tuple(_forged(real, s) for s in range(1, 8))
    core.on_message(colony.now_s, flooder, Push(forged))
    core.take_effects()
    stats = core.stats()
    assert stats["invalid_signature"] == 5 and stats["graylistings"] == 1
    assert flooder not in core.mesh
    core.on_message(colony.now_s, flooder, Push((real,)))
    core.take_effects()
    assert core.stats()["graylisted"] == 1 and not core.has(real.author, 1)
    colony.tick_all(colony.now_s + 11.0, step_s=0.5)  # the graylist expires
    core.on_message(colony.now_s, flooder, Push((real,)))
    assert [type(e) for e in core.take_effects().events] == [Accepted]


def test_a_re_injected_record_keeps_its_author_and_sequence() -> None:
    colony = Colony(4)
    owner = identity(9)  # not in the colony: its record comes in through node 0
    colony.members.add(owner.node_id)
    roster_record = seal_record(owner, 5, "roster", {"version": 2})
    assert colony.cores[0].publish_envelope(colony.now_s, roster_record) == "accepted"
    colony.settle()
    for i in range(4):
        (event,) = colony.accepted(i)
        assert (event.author, event.seq, event.kind) == (owner.node_id, 5, "roster")
    assert colony.cores[0].publish_envelope(colony.now_s, roster_record) == "duplicates"


def test_a_former_members_records_are_taken_up_to_its_removal_only() -> None:
    """Found by the voters scenario (seed 30): a member removed from the roster made
    every record it had signed invalid, so a node that joined or came back later never
    learned the processes it had closed (they stayed WAITING there for good). A former
    member's records up to its last one at removal stay valid; later ones do not."""
    from colonynode.gossip import GossipCore
    from colonynode.storage.memory import MemoryStore

    colony = Colony(3)
    former = colony.ids[2].node_id
    caps = {colony.ids[0].node_id: 2**63 - 1, colony.ids[1].node_id: 2**63 - 1, former: 2}
    core = GossipCore(colony.ids[0], MemoryStore(), random.Random(0),
                      is_member=lambda n: n != former, author_seq_max=caps.get)  # fmt: skip
    sender = colony.node_id(1)
    signed = [seal_record(colony.ids[2], seq, "note", f"r{seq}") for seq in (1, 2, 3)]
    core.on_message(0.0, sender, Push(tuple(signed)))
    taken = [e.seq for e in core.take_effects().events if isinstance(e, Accepted)]
    assert taken == [1, 2]
    assert core.stats()["non_member_author"] == 1
    stranger = seal_record(identity(7), 1, "note", "hi")
    core.on_message(0.0, sender, Push((stranger,)))
    assert core.stats()["non_member_author"] == 2
