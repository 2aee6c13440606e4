"""Fuzzed wire frames of every protocol (issue 18): whatever bytes a peer sends, a frame
decodes to typed messages or is refused with a DecodeError (LimitExceeded is one), and
nothing else: no other exception, no hang. What decodes is stable: encoded again and
decoded, it is the same messages. The budget is `strategies.EXAMPLES` a test
(COLONYNODE_FUZZ_EXAMPLES; `make fuzz` runs a long one)."""

from __future__ import annotations

import time
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colonynode.consensus.messages import CODEC as LEASE_CODEC
from colonynode.core.codec import MessageCodec
from colonynode.core.errors import DecodeError
from colonynode.dht.messages import CODEC as DHT_CODEC
from colonynode.gossip.messages import CODEC as GOSSIP_CODEC
from colonynode.node.core.messages import JOIN_CODEC, ROSTER_CODEC
from colonynode.node.daemon.fs.transfer import FS_CODEC
from tests.fuzz.strategies import EXAMPLES, frames_of, messages_of_type, mutated

CODECS = [GOSSIP_CODEC, LEASE_CODEC, DHT_CODEC, ROSTER_CODEC, JOIN_CODEC, FS_CODEC]
SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=SLOW)
DECODE_S_MAX = 1.0  # a frame of at most 1 MiB decodes (or is refused) well within this


def decode_or_refuse(codec: MessageCodec, data: bytes) -> list[Any] | None:
    """The frame's messages, or None when it is refused with a DecodeError."""
    t0 = time.perf_counter()
    try:
        msgs = codec.decode_batch(data)
    except DecodeError:
        msgs = None
    assert time.perf_counter() - t0 < DECODE_S_MAX, "a frame took too long to decode"
    return msgs


def assert_stable(codec: MessageCodec, msgs: list[Any]) -> None:
    """Decoded messages encode and decode to themselves (compared by their encoding:
    an `Any` field may hold a NaN, which equals nothing)."""
    frame = codec.encode_batch(msgs)
    again = codec.decode_batch(frame)
    assert codec.encode_batch(again) == frame
    assert [type(m) for m in again] == [type(m) for m in msgs]


def fuzz_decoding(codec: MessageCodec, frames: st.SearchStrategy[bytes]) -> None:
    @FUZZ
    @given(frames)
    def run(data: bytes) -> None:
        msgs = decode_or_refuse(codec, data)
        if msgs is not None:
            assert_stable(codec, msgs)

    run()


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_a_frame_of_wire_shaped_values_decodes_or_is_refused_with_a_decode_error(
    codec: MessageCodec,
) -> None:
    fuzz_decoding(codec, frames_of(codec).map(cbor2.dumps))


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_a_mutated_frame_decodes_or_is_refused_with_a_decode_error(codec: MessageCodec) -> None:
    fuzz_decoding(codec, frames_of(codec).map(cbor2.dumps).flatmap(mutated))


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_bytes_that_are_no_frame_are_refused_with_a_decode_error(codec: MessageCodec) -> None:
    @FUZZ
    @given(st.binary(max_size=512))
    def run(data: bytes) -> None:
        decode_or_refuse(codec, data)

    run()


TYPES = [(codec, cls) for codec in CODECS for cls in codec.message_types()]


@pytest.mark.parametrize(("codec", "cls"), TYPES, ids=lambda x: getattr(x, "__name__", ""))
def test_every_message_type_decodes_when_well_formed_and_is_refused_otherwise(
    codec: MessageCodec, cls: type
) -> None:
    """Each type on its own (a mixed frame reaches the rarer ones seldom): its messages,
    well-typed or not, whole or mutated, decode or are refused with a DecodeError; and
    the generator does make well-formed ones (so the fuzzing reaches the type)."""
    decoded: list[Any] = []

    @FUZZ
    @given(st.lists(messages_of_type(codec, cls), min_size=1, max_size=3), st.data())
    def run(frame: list[list[Any]], data: st.DataObject) -> None:
        raw = cbor2.dumps(frame)
        msgs = decode_or_refuse(codec, raw)
        if msgs is not None:
            assert_stable(codec, msgs)
            decoded.extend(msgs)
        bent = data.draw(mutated(raw))
        msgs = decode_or_refuse(codec, bent)
        if msgs is not None:
            assert_stable(codec, msgs)

    run()
    assert any(type(m) is cls for m in decoded), f"no well-formed {cls.__name__} was made"
