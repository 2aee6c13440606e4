"""Every DHT message survives the codec (the daemon frames them with it), and bad ones
are refused."""

from __future__ import annotations

import pytest

from colonynode.core.envelope import seal
from colonynode.core.errors import DecodeError
from colonynode.core.identity import Identity
from colonynode.dht.messages import (
    CODEC,
    AddProvider,
    FindNode,
    GetProviders,
    GetValue,
    MsgType,
    Nodes,
    PeerInfo,
    Providers,
    PutAck,
    PutValue,
    Value,
)
from colonynode.dht.records import RECORD_DOMAIN, PeerRecord, ValueRecord, peer_key

ME = Identity(b"\7" * 32)
PEER = PeerInfo(ME.node_id, ("/ip4/127.0.0.1/tcp/4001",))
RECORD = seal(
    ME, RECORD_DOMAIN, ValueRecord(peer_key(ME.node_id), 3, [["/ip4/1.2.3.4/tcp/1"]], 60.0)
)

EXAMPLES = [
    FindNode(1, b"\0" * 32),
    Nodes(2, (PEER, PeerInfo(ME.node_id))),
    GetValue(3, "/peer/x"),
    Value(4, (RECORD,), (PEER,)),
    PutValue(5, (RECORD,)),
    PutAck(6, False, "rate"),
    AddProvider(7, b"\1" * 32, ("/ip4/127.0.0.1/tcp/1",)),
    GetProviders(8, b"\1" * 32),
    Providers(9, (PEER,), ()),
]


def test_every_message_type_has_an_example() -> None:
    assert {type(m) for m in EXAMPLES} == set(CODEC.types())
    assert len(CODEC.types()) == len(MsgType)


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_a_message_round_trips_through_the_codec(msg: object) -> None:
    assert CODEC.decode_batch(CODEC.encode_batch([msg])) == [msg]


def test_a_batch_of_every_message_round_trips() -> None:
    assert CODEC.decode_batch(CODEC.encode_batch(EXAMPLES)) == EXAMPLES


def test_a_record_still_verifies_after_the_trip() -> None:
    [msg] = CODEC.decode_batch(CODEC.encode_batch([PutValue(1, (RECORD,))]))
    opened = msg.records[0].open(RECORD_DOMAIN, ValueRecord)
    assert opened.seq == 3 and PeerRecord(tuple(opened.value[0])) == PeerRecord(
        ("/ip4/1.2.3.4/tcp/1",)
    )


def test_an_ill_typed_message_is_refused() -> None:
    import cbor2

    bad = cbor2.dumps([[int(MsgType.FIND_NODE), "one", b"\0" * 32]], canonical=True)
    with pytest.raises(DecodeError):
        CODEC.decode_batch(bad)
    unknown = cbor2.dumps([[99, 1]], canonical=True)
    with pytest.raises(DecodeError):
        CODEC.decode_batch(unknown)
