"""Bad invites, plaintext dialers, non-members and malformed frames (issue 3).

The daemons are real OS processes; the attacker dials them over real TCP, with a raw
socket or with the daemons' own transport under a key of its own.
"""

from __future__ import annotations

import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import cbor2
import pytest
import trio

from colonynode.core.codec import to_wire
from colonynode.core.identity import Identity
from colonynode.core.invite import issue_invite
from colonynode.core.roster import genesis_roster, sign_roster
from colonynode.gossip.messages import CODEC as GOSSIP_CODEC
from colonynode.gossip.messages import Gone
from colonynode.node.core.messages import JOIN_CODEC, ROSTER_CODEC, Hello, JoinRequest
from colonynode.node.daemon.joining import JOIN_PROTOCOL
from colonynode.node.daemon.p2p import Channel, P2PTransport, parse_addr
from colonynode.node.daemon.wire import RemoteError, StreamClosed
from colonynode.node.datadir import DataDir
from tests.integration.harness import Colony, Daemon, cli, wait_until
from tests.node.test_p2p import Changes

pytestmark = pytest.mark.integration


def _refused_join(colony: Colony, via: Daemon, token: str, name: str) -> str:
    """Run a join that must fail; check it changed nothing on the joiner's side."""
    d = colony.daemon(name)
    before = via.status()["roster_version"]
    result = cli("join", via.addr(), "--invite", token, "--data-dir", str(d.dir), "--name", name,
                 "--listen", "/ip4/127.0.0.1/tcp/0", check=False)  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in result.stderr
    assert not (d.dir / "identity.key").exists() and not (d.dir / "node.json").exists()
    assert via.status()["roster_version"] == before
    return last


def test_expired_forged_reused_and_other_colony_invites_are_refused(colony: Colony) -> None:
    a = colony.founder("a")
    owner = DataDir(a.dir).load_identity()
    lab = a.status()["colony"]

    expired = issue_invite(owner, lab, ("executor",), token_id=b"\x01" * 16,
                           now_unix_s=time.time() - 7200, ttl_s=3600)  # fmt: skip
    assert "expired" in _refused_join(colony, a, expired, "late")

    # Signed by a stranger in the owner's name: refused before anything is created.
    stranger = Identity.generate()
    other = issue_invite(stranger, lab, ("executor",), token_id=b"\x02" * 16,
                         now_unix_s=time.time(), ttl_s=3600)  # fmt: skip
    assert "for colony" in _refused_join(colony, a, other, "stranger")

    damaged = a.invite()[:-6]
    assert "damaged" in _refused_join(colony, a, damaged, "typo")

    token = a.invite()
    colony.daemon("b").join(a.addr(), token)
    wait_until("a to list b", lambda: "b" in a.member_names())
    assert "already used" in _refused_join(colony, a, token, "again")
    assert a.member_names() == {"a", "b"}
    assert a.status()["counters"]["joins_refused"] == 3


@asynccontextmanager
async def _attacker(*channels: Channel) -> AsyncIterator[tuple[Identity, P2PTransport]]:
    """A stranger with a key of its own, dialling with the daemons' own transport."""
    ident = Identity.generate()
    async with trio.open_nursery() as nursery:
        transport = P2PTransport(ident, nursery, lambda peer, channel: True, Changes())
        for channel in channels:
            transport.add_channel(channel)
        yield ident, transport
        await transport.close()
        nursery.cancel_scope.cancel()


JOIN = Channel("join", JOIN_PROTOCOL, JOIN_CODEC, open_to_non_members=True)


async def _raw_frame(stream, body: bytes) -> None:  # type: ignore[no-untyped-def]
    await stream.write(struct.pack(">I", len(body)) + body)


@pytest.fixture
def founder(colony: Colony) -> Daemon:
    return colony.founder("a")


async def test_a_dialer_that_does_not_speak_noise_is_dropped_and_node_keeps_serving(
    founder: Daemon,
) -> None:
    host, port, _ = parse_addr(founder.addr())
    sock = await trio.open_tcp_stream("127.0.0.1" if host == "0.0.0.0" else host, port)
    # libp2p's plaintext negotiation, cut to one short Noise-sized message: not a key
    await sock.send_all(struct.pack(">H", 20) + b"/multistream/1.0.0\n\x00")
    with trio.fail_after(10):
        while await sock.receive_some(4096):  # the node closes the connection
            pass
    await sock.aclose()
    wait_until("the failed handshake to be counted",
               lambda: founder.status()["counters"]["handshakes_failed"] >= 1)  # fmt: skip
    assert founder.status()["connected_peers"] == 0
    async with _attacker(JOIN) as (_, good):  # a Noise client still gets through
        with trio.fail_after(10):
            await good.connect(founder.addr())
        assert len(good.peers()) == 1


async def test_non_member_is_refused_on_member_protocols_and_counted(founder: Daemon) -> None:
    roster = Channel("roster", "/colony/lab/roster/1", ROSTER_CODEC, open_to_non_members=True)
    gossip = Channel("gossip", "/colony/lab/gossip/1", GOSSIP_CODEC)
    async with _attacker(roster, gossip) as (ident, attacker):
        # A roster that is validly signed, but by the attacker for its own colony.
        fake = sign_roster(ident, genesis_roster(ident, "lab", "evil"))
        with trio.fail_after(15):
            node = await attacker.connect(founder.addr())
            assert attacker.send(node, "gossip", [Gone(())])  # a member's channel
            assert attacker.send(node, "roster", [Hello(fake, (), ())])
            changes = attacker._on_change
            assert isinstance(changes, Changes)  # told it is no member, the node hangs up
            await changes.until(lambda: node not in attacker.peers(), timeout_s=15)
    wait_until(
        "both refusals to be counted",
        lambda: founder.status()["counters"]["refused_streams"] >= 2,
    )
    st = founder.status()
    assert st["members"] == 1 and st["roster_version"] == 1


@pytest.mark.parametrize(
    "attack",
    ["oversized", "truncated", "wrong_types", "not_cbor", "unknown_tag"],
)
async def test_bad_frames_close_that_stream_and_the_node_keeps_serving(
    founder: Daemon, attack: str
) -> None:
    before = founder.status()["counters"]["bad_frames"]
    async with _attacker(JOIN) as (_, attacker):
        with trio.fail_after(15):
            node = await attacker.connect(founder.addr())
            frames = await attacker.open(node, "join")
            stream = frames.stream
            if attack == "oversized":
                await stream.write(struct.pack(">I", 50 << 20) + b"x" * 100)
            elif attack == "truncated":
                await stream.write(struct.pack(">I", 1000) + b"\x82\x00")
                await stream.close()
            elif attack == "wrong_types":
                body = cbor2.dumps([0, [[1, 12345, ["not", "a", "name"], "addrs"]]])
                await _raw_frame(stream, body)
            elif attack == "not_cbor":
                await _raw_frame(stream, b"\xff\xfe\xfd")
            else:
                await _raw_frame(stream, cbor2.dumps([0, [[99, "x"]]]))
            with pytest.raises((StreamClosed, RemoteError)):
                await frames.read_batch()
        # The same link still works for a well-formed request on a new stream.
        with trio.fail_after(15):
            frames = await attacker.open(node, "join")
            await frames.write_batch([JoinRequest("cn1.bogus", "x", ())])
            with pytest.raises(RemoteError, match="damaged"):
                await frames.read_batch()
    if attack != "truncated":  # a truncated frame is a closed stream, not a bad one
        wait_until("the bad frame to be counted",
                   lambda: founder.status()["counters"]["bad_frames"] > before)  # fmt: skip
    assert founder.status()["members"] == 1


def test_roster_persisted_is_the_owner_signed_one(founder: Daemon) -> None:
    # What the daemon holds on disk is exactly the owner-signed envelope it serves.
    founder.stop()
    from colonynode.core.codec import from_wire
    from colonynode.core.envelope import Envelope
    from colonynode.core.roster import accept_roster
    from colonynode.storage.lmdb_store import LmdbStore

    store = LmdbStore(founder.dir)
    try:
        env = from_wire(Envelope, store.get("membership", b"roster"))
    finally:
        store.close()
    roster = accept_roster(None, env)
    assert roster is not None and roster.owner == DataDir(founder.dir).load_identity().node_id
    assert to_wire(env)[1] == "roster"
