"""Every gossip message survives the codec; bounds are refused; ranges merge."""

from __future__ import annotations

import cbor2
import pytest

from colonynode.core.errors import DecodeError
from colonynode.core.ids import NodeId
from colonynode.gossip import (
    CODEC,
    Digest,
    Gone,
    Graft,
    IHave,
    IWant,
    MessageTag,
    Prune,
    Push,
    SeqRange,
    Summary,
    open_body,
    ranges_of,
    seal_record,
)
from colonynode.gossip.messages import RANGES_PER_MESSAGE_MAX, RECORDS_PER_MESSAGE_MAX
from tests.gossip.harness import identity

A = identity(0)
B = identity(1)


def _every_message() -> list[object]:
    env = seal_record(A, 1, "process", {"pid": "p1", "state": 2, "args": [1, "x"]})
    r = SeqRange(A.node_id, 1, 7)
    return [
        Push((env, seal_record(B, 9, "roster", b"\x00\x01"))),
        Push((env,), (bytes(B.node_id)[:8],)),
        IHave((r, SeqRange(B.node_id, 3, 3))),
        IWant((r,)),
        Graft(),
        Prune(60.0),
        Summary(2, bytes(range(16))),
        Digest({A.node_id: 7, B.node_id: 1}),
        Gone((r,)),
    ]


def test_codec_round_trip_of_every_message() -> None:
    msgs = _every_message()
    assert {CODEC.tag_of(m) for m in msgs} == set(MessageTag)
    assert CODEC.decode_batch(CODEC.encode_batch(msgs)) == msgs


def test_a_pushed_record_keeps_its_signature_through_the_codec() -> None:
    push = _every_message()[0]
    assert isinstance(push, Push)
    (decoded,) = CODEC.decode_batch(CODEC.encode_batch([push]))
    env = decoded.records[0]
    env.verify("gossip/record")
    assert open_body(env).body == {"pid": "p1", "state": 2, "args": [1, "x"]}


def test_oversized_messages_are_refused_when_built_and_when_decoded() -> None:
    env = seal_record(A, 1, "note", 0)
    with pytest.raises(ValueError, match="cap"):
        Push((env,) * (RECORDS_PER_MESSAGE_MAX + 1))
    with pytest.raises(ValueError, match="cap"):
        IHave((SeqRange(A.node_id, 1, 1),) * (RANGES_PER_MESSAGE_MAX + 1))
    # A peer that sends too many records in one Push: the decoder refuses the frame.
    wire = CODEC.encode_one(Push((env,)))
    wire[1] = wire[1] * (RECORDS_PER_MESSAGE_MAX + 1)
    with pytest.raises(DecodeError, match="cap"):
        CODEC.decode_batch(cbor2.dumps([wire], canonical=True))


def test_a_push_from_an_older_sender_without_sent_to_decodes_and_bad_sent_to_is_refused() -> None:
    env = seal_record(A, 1, "note", 0)
    wire = CODEC.encode_one(Push((env,)))
    (old,) = CODEC.decode_batch(cbor2.dumps([wire[:2]], canonical=True))  # no sent_to field
    assert old == Push((env,), ())
    with pytest.raises(ValueError, match="cap"):
        Push((env,), (b"x" * 8,) * 17)
    for bad in ([b"x" * 7], [b"x" * 8] * 17):
        with pytest.raises(DecodeError):
            CODEC.decode_batch(cbor2.dumps([[wire[0], wire[1], bad]], canonical=True))


def test_bad_ranges_are_refused() -> None:
    with pytest.raises(ValueError):
        SeqRange(A.node_id, 5, 4)
    with pytest.raises(ValueError):
        SeqRange(A.node_id, 0, 4)


def test_ranges_of_merges_consecutive_sequences_per_author() -> None:
    a, b = sorted([A.node_id, B.node_id])
    ids = [(a, 3), (a, 1), (a, 2), (a, 7), (b, 4), (a, 2)]
    assert ranges_of(ids, 10) == [SeqRange(a, 1, 3), SeqRange(a, 7, 7), SeqRange(b, 4, 4)]
    assert ranges_of(ids, 2) == [SeqRange(a, 1, 3), SeqRange(a, 7, 7)]
    assert ranges_of([], 5) == []


def test_a_record_with_a_malformed_body_does_not_open() -> None:
    env = seal_record(A, 1, "note", 0)
    bad = type(env)(env.author, env.domain, b"\x83\x00\x61x\x00", env.signature)
    with pytest.raises(DecodeError):
        open_body(bad)
    assert NodeId(env.author) == A.node_id
