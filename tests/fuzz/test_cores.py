"""Fuzzed messages into real NodeCores (issue 18): a member may send any well-typed
message of any protocol (what survives the decoder, test_frames.py), naming processes
that exist or not; a node takes it, refuses it or ignores it, and never raises: no
exception and no failed invariant (the cores assert theirs), now or when its timers run
afterwards. A non-member's message changes nothing at all. On the stepped network
(simulations/stepped.py) with the daemon's NodeCore; budget `strategies.EXAMPLES`."""

from __future__ import annotations

import dataclasses
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colonynode.consensus.messages import CODEC as LEASE_CODEC
from colonynode.core.codec import MessageCodec
from colonynode.core.errors import DecodeError
from colonynode.core.identity import Identity
from colonynode.core.scheduling import ExecutorAdvert
from colonynode.dht.messages import CODEC as DHT_CODEC
from colonynode.gossip.messages import CODEC as GOSSIP_CODEC
from colonynode.node.core import requests as rq
from colonynode.node.core.messages import ROSTER_CODEC
from tests.fuzz.strategies import EXAMPLES, messages_of
from tests.node.colony import Colony, submit

CODECS = [GOSSIP_CODEC, LEASE_CODEC, DHT_CODEC, ROSTER_CODEC]
SLOW = [HealthCheck.too_slow, HealthCheck.filter_too_much]
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=SLOW)
STRANGER = Identity(b"\x77" * 32).node_id  # not in the roster


def well_typed(codec: MessageCodec) -> st.SearchStrategy[Any]:
    """A message of `codec` as the decoder hands it to a core (what it refuses is not)."""

    def decoded(wire: list[Any]) -> Any:
        try:
            return codec.decode_batch(cbor2.dumps([wire]))[0]
        except DecodeError:
            return None

    return messages_of(codec).map(decoded).filter(lambda m: m is not None)


def naming(msg: Any, pids: list[bytes], pick: int) -> Any:
    """`msg` with its process ids made ones the colony has (where it names any)."""
    if not pids or not dataclasses.is_dataclass(msg):
        return msg
    pid = pids[pick % len(pids)]
    if hasattr(msg, "pid") and isinstance(msg.pid, bytes):
        return dataclasses.replace(msg, pid=pid)
    if hasattr(msg, "items") and isinstance(msg.items, tuple):
        items = tuple(dataclasses.replace(i, pid=pid) if hasattr(i, "pid") else i
                      for i in msg.items)  # fmt: skip
        return dataclasses.replace(msg, items=items)
    return msg


def busy_colony() -> tuple[Colony, list[bytes]]:
    """Five NodeCores (three voters), two processes, one of them running."""
    colony = Colony(5)
    pids = [submit(colony, 0), submit(colony, 1)]
    advert = ExecutorAdvert("e", "py", cpu_millis=10**9, mem_bytes=10**15)
    executor = colony.result(3, rq.RegisterExecutor(advert))["executor_id"]
    colony.result(3, rq.Assign(executor, timeout_s=5))
    return colony, pids


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_any_well_typed_message_from_a_member_leaves_every_node_standing(
    codec: MessageCodec,
) -> None:
    @FUZZ
    @given(st.lists(st.tuples(well_typed(codec), st.integers(0, 4), st.integers(0, 4),
                              st.integers(0, 3)), min_size=1, max_size=4))  # fmt: skip
    def run(sends: list[tuple[Any, int, int, int]]) -> None:
        colony, pids = busy_colony()
        ids = [x.node_id for x in colony.identities]
        for msg, to, sender, pick in sends:
            if to == sender:
                continue
            msg = naming(msg, pids, pick)
            colony.net.call(to, lambda core, now, m=msg, s=ids[sender]: core.on_message(now, s, m))
        colony.run_until(lambda: True)  # deliver what the nodes answered, then
        colony.net.advance(30.0)  # timers: leases, sweeps, gossip heartbeats, DHT
        colony.net.stabilize()
        for i in range(5):
            colony.net.tick(i)
        colony.net.stabilize()

    run()


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_a_non_members_message_changes_nothing(codec: MessageCodec) -> None:
    @FUZZ
    @given(well_typed(codec), st.integers(0, 4), st.integers(0, 3))
    def run(msg: Any, to: int, pick: int) -> None:
        colony, pids = busy_colony()
        core = colony.core(to)
        before = (core.book.list(None, 100), core.consensus.voter.registers.copy(),
                  core.gossip.digest(), core.membership.roster)  # fmt: skip
        msg = naming(msg, pids, pick)
        colony.net.call(to, lambda c, now: c.on_message(now, STRANGER, msg))
        after = (core.book.list(None, 100), core.consensus.voter.registers,
                 core.gossip.digest(), core.membership.roster)  # fmt: skip
        assert after == before

    run()
