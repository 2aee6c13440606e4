"""Every lease-protocol message survives the codec (the daemon encodes frames with it)."""

from __future__ import annotations

from typing import Any

import pytest

from colonynode.consensus.messages import (
    CODEC,
    Cancel,
    Claim,
    ClaimItem,
    Close,
    Compact,
    CompactAnswer,
    Expire,
    Handover,
    HandoverRequest,
    Merge,
    Outcome,
    ProcessTerms,
    Push,
    Read,
    Reason,
    RegisterCopy,
    RegisterView,
    Release,
    Renew,
    Reply,
    State,
    Submit,
    Tag,
    Verdict,
)
from colonynode.core.errors import DecodeError
from colonynode.core.ids import NodeId

A = NodeId(b"a" * 32)
TERMS = ProcessTerms(b"pid", A, "cpu", -3, 17, 10.5, 60.0, -1)
VIEW = RegisterView(b"pid", State.SUCCESS, 4, A, 2, {"out": [1, "x"]}, ("e1",))

MESSAGES: list[Any] = [
    Submit(TERMS),
    Submit(ProcessTerms(b"p2", A)),
    Claim((ClaimItem(b"a", 1), ClaimItem(b"b", 7)), 2.5, "cpu"),
    Renew((ClaimItem(b"a", 1),)),
    Close(b"pid", 4, Outcome.SUCCESS, {"out": [1, "x"]}, ("e",)),
    Close(b"pid", 4, Outcome.FAILED),
    Release(b"pid", 4),
    Expire(b"pid", 0),
    Read(b"pid", 99),
    Reply(Tag.CLAIM, (Verdict(b"pid", 4, Reason.OK, VIEW), Verdict(b"q", 1, Reason.FULL, None))),
    Reply(Tag.READ, (Verdict(b"pid", 0, Reason.OK, VIEW),), 99),
    Push(b"pid", (A, NodeId(b"b" * 32))),
    Merge(RegisterCopy(TERMS, State.RUNNING, 4, A, 2.0, 1, None, ())),
    HandoverRequest(2, b"after"),
    Handover(2, b"", (RegisterCopy(TERMS, State.SUCCESS, 4, A, 2.0, 0, "o", ("e",)),), True),
    Reply(Tag.SUBMIT, (Verdict(b"pid", 0, Reason.WRONG_VERSION, None),), 0, 3),
    Claim((ClaimItem(b"a", 1),), 2.5, "", 7),
    Cancel(b"pid", State.CANCELLED),
    Cancel(b"pid", State.FAILED, ("parent p0 failed",), 2),
    Handover(2, b"", (), True, (b"frozen",), 1_700_000_000_000_000_000),
    Compact(3, (b"p1", b"p2"), 1_700_000_000_000_000_000, (b"r1" * 4, b"r2" * 4)),
    CompactAnswer(3, (b"p1",)),
    Reply(Tag.CANCEL, (Verdict(b"pid", 0, Reason.BAD_STATE, None),), 0, 2),
    Merge(RegisterCopy(TERMS, State.CANCELLED, 4, None, 2.0, 1, None, ("cancelled",))),
]


RETIRED = {Tag.SCAN, Tag.CANDIDATES}  # their values stay taken: tags are append-only


def test_every_message_type_is_in_the_round_trip_list() -> None:
    assert {CODEC.tag_of(m) for m in MESSAGES} == {int(t) for t in Tag} - RETIRED


def test_a_retired_message_tag_is_refused_as_unknown() -> None:
    with pytest.raises(DecodeError, match="unknown lease message tag 8"):
        CODEC.decode_one([int(Tag.SCAN), 16, "cpu"])


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_codec_round_trip_of_every_message(msg: Any) -> None:
    assert CODEC.decode_batch(CODEC.encode_batch([msg])) == [msg]


def test_a_cancel_keeps_its_wire_values() -> None:
    """Append-only: CANCELLED is 4 (as in ColonyOS), the Cancel tag 15, and the fields
    go in declaration order."""
    assert CODEC.encode_one(Cancel(b"pid", State.CANCELLED, ("why",), 3)) == [
        15,
        b"pid",
        4,
        ["why"],
        3,
    ]


def test_a_cancel_asking_for_an_unknown_state_is_refused() -> None:
    import cbor2

    with pytest.raises(DecodeError):
        CODEC.decode_batch(cbor2.dumps([[15, b"pid", 9, [], 0]], canonical=True))


def test_an_ill_typed_field_is_refused() -> None:
    wire = CODEC.encode_one(Release(b"pid", 4))
    wire[2] = "four"
    import cbor2

    with pytest.raises(DecodeError):
        CODEC.decode_batch(cbor2.dumps([wire], canonical=True))


@pytest.mark.parametrize(
    "wire",
    [
        [int(Tag.REPLY), int(Tag.READ), [], -1, 1],  # a Reply to a read of nonce -1
        [int(Tag.READ), b"pid", -5],
        [int(Tag.CLAIM), [[b"pid", 1]], 2.0, "", 1, -1],
        [int(Tag.RENEW), [[b"pid", 1]], 1, -2],
    ],
)
def test_a_negative_nonce_is_refused(wire: list[Any]) -> None:
    """Found by the fuzz (tests/fuzz/test_cores.py): a voter's Reply to a READ with nonce
    -1 crashed the claimer that got it (a read's op key packs its nonce in 8 bytes)."""
    with pytest.raises(DecodeError, match="nonce"):
        CODEC.decode_one(wire)


@pytest.mark.parametrize("pid", [b"", b"p" * 65])
def test_a_process_id_outside_1_to_64_bytes_is_refused(pid: bytes) -> None:
    """Found by the fuzz: a Merge whose copy named the empty pid reached a voter's store,
    whose keys are 1..511 bytes: the write failed, and with it the node's turn."""
    copy = [[pid, b"\x01" * 32, "", 0, 0, 0.0, 0.0, 0, b"", b""], 0, 0, None, 1.0, 0, None, []]
    for wire in ([int(Tag.MERGE), copy, 1], [int(Tag.CLOSE), pid, 1, 0, None, [], 1],
                 [int(Tag.READ), pid, 1]):  # fmt: skip
        with pytest.raises(DecodeError, match="process id"):
            CODEC.decode_one(wire)
