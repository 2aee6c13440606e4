"""The canonical codec: limits, typed decoding, batches."""

from __future__ import annotations

import contextlib
import enum
from dataclasses import dataclass
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from colonynode.core.codec import MessageCodec, decode, encode, from_wire, to_wire
from colonynode.core.errors import DecodeError, LimitExceeded
from colonynode.core.ids import NodeId
from colonynode.core.limits import DecodeLimits


class Kind(enum.IntEnum):
    A = 1
    B = 2


@dataclass(frozen=True, slots=True)
class Inner:
    x: int
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ping:
    nonce: int
    sender: NodeId
    kind: Kind
    inner: Inner
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Data:
    blob: bytes
    extra: dict[str, Any]


CODEC = MessageCodec("test", {1: Ping, 2: Data})
NID = NodeId(b"\x07" * 32)


def test_batch_round_trips_and_is_canonical() -> None:
    msgs = [Ping(1, NID, Kind.B, Inner(5, ("a", "b"))), Data(b"\x00\x01", {"z": 1, "a": [1, 2]})]
    frame = CODEC.encode_batch(msgs)
    assert CODEC.decode_batch(frame) == msgs
    # canonical: map keys sorted, so encoding the decoded value again gives the same bytes
    assert cbor2.dumps(cbor2.loads(frame), canonical=True) == frame


def test_trailing_default_field_may_be_left_off_by_an_older_sender() -> None:
    wire = [1, 9, NID, 1, [0, []]]
    assert CODEC.decode_one(wire) == Ping(9, NID, Kind.A, Inner(0, ()), None)


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        ([99, 1], "unknown test message tag 99"),
        ([1, 1, NID, 1], "takes 4..5 fields, got 3"),
        ([1, 1, NID, 1, [0, []], None, "extra"], "takes 4..5 fields, got 6"),
        ([1, "1", NID, 1, [0, []]], "Ping.nonce: expected int, got str"),
        ([1, True, NID, 1, [0, []]], "Ping.nonce: expected int, got bool"),
        ([1, 1, b"short", 1, [0, []]], "Ping.sender"),
        ([1, 1, NID, 7, [0, []]], "7 is not a Kind"),
        ([1, 1, NID, 1, [0, [1]]], "Inner.tags: expected str, got int"),
        ([2, "not bytes", {}], "Data.blob: expected bytes"),
        ("nope", "an array that starts with its tag"),
    ],
)
def test_ill_typed_messages_are_refused_with_the_field_named(wire: Any, why: str) -> None:
    with pytest.raises(DecodeError, match=why.replace("(", r"\(").replace(".", r"\.")):
        CODEC.decode_one(wire)


def test_frame_over_the_size_cap_is_refused() -> None:
    codec = MessageCodec("small", {2: Data}, DecodeLimits(frame_bytes_max=100))
    frame = codec.encode_batch([Data(b"x" * 200, {})])
    with pytest.raises(LimitExceeded, match="over the 100 cap"):
        codec.decode_batch(frame)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x81" * 40 + b"\x00", LimitExceeded),  # nesting 40 deep
        (cbor2.dumps(list(range(5000))), LimitExceeded),  # too many items
        (cbor2.dumps("x" * 300_000), LimitExceeded),  # string too long
        (cbor2.dumps(2**70), LimitExceeded),  # integer too wide
        (b"\x82\x01", DecodeError),  # truncated
        (b"\x01\x02", DecodeError),  # trailing bytes
        (b"\x9f\x01\xff", DecodeError),  # indefinite length
        (b"\xc1\x1a\x00\x00\x00\x01", DecodeError),  # a tag (epoch datetime)
        (b"\xa2\x01\x01\x01\x02", DecodeError),  # duplicate map key
        (b"\xff", DecodeError),  # garbage
    ],
)
def test_malformed_or_oversized_cbor_raises_a_typed_error(data: bytes, error: type) -> None:
    with pytest.raises(error):
        decode(data)


def test_frame_that_is_not_an_array_is_refused() -> None:
    with pytest.raises(DecodeError, match="frame is an array"):
        CODEC.decode_batch(encode({"a": 1}))


def test_encoding_an_unregistered_type_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        CODEC.encode_batch([Inner(1, ())])


def test_from_wire_checks_nested_dataclasses() -> None:
    assert from_wire(Inner, [3, ["q"]]) == Inner(3, ("q",))
    with pytest.raises(DecodeError):
        from_wire(Inner, [3, "q"])


plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5)
    ),
    max_leaves=20,
)


@given(plain)
def test_plain_data_round_trips(value: Any) -> None:
    assert decode(encode(value)) == value


canonical_cases = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=30), children, max_size=6)
        | st.dictionaries(st.integers(-30, 30) | st.binary(max_size=3), children, max_size=4)
    ),
    max_leaves=25,
)


@given(canonical_cases)
def test_encode_writes_the_canonical_bytes_cbor2_does(value: Any) -> None:
    """encode orders maps itself and writes with cbor2's plain mode (faster): the bytes
    are those of cbor2's canonical mode (keys shorter first, then by bytes; non-ASCII
    keys by their UTF-8 length; floats and other keys left to cbor2)."""
    assert encode(value) == cbor2.dumps(value, canonical=True)


@given(canonical_cases)
def test_a_dataclass_encodes_as_its_canonical_wire_array(extra: Any) -> None:
    """Enums as their values, a NodeId as its bytes, fields in order, maps sorted."""
    for value in (Ping(5, NID, Kind.B, Inner(2, ("a", "b"))), Data(b"x", {"extra": extra})):
        for _ in range(2):  # the first meets the class, the second finds its fields known
            assert encode(value) == cbor2.dumps(to_wire(value), canonical=True)


@given(st.binary(max_size=64))
def test_random_bytes_never_raise_anything_but_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        CODEC.decode_batch(data)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), 2**60])
def test_a_float_field_takes_only_a_finite_number(value: Any) -> None:
    """A NaN or an infinity from a peer would reach timers and bounds (a lease that never
    ends, a back-off that never lapses): refused, as an int too wide to be exact."""
    with pytest.raises(DecodeError):
        from_wire(Lease, [value])
    assert from_wire(Lease, [2]) == Lease(2.0)


@dataclass(frozen=True, slots=True)
class Lease:
    seconds: float
