"""Bad invites, plaintext dialers, non-members and malformed frames (issue 3).

The daemons are real OS processes; the attacker is a libp2p host built in the test.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

import cbor2
import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

from colonynode.core.codec import to_wire
from colonynode.core.identity import Identity
from colonynode.core.invite import issue_invite
from colonynode.core.roster import genesis_roster, sign_roster
from colonynode.node.core.messages import JOIN_CODEC, ROSTER_CODEC, Hello, JoinRequest
from colonynode.node.daemon.host import build_host, keypair_of
from colonynode.node.daemon.wire import FrameStream, RemoteError, StreamClosed
from colonynode.node.datadir import DataDir
from tests.integration.harness import Colony, Daemon, cli, wait_until

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


def _attacker_host(plaintext: bool = False):  # type: ignore[no-untyped-def]
    ident = Identity.generate()
    if not plaintext:
        return build_host(ident), ident
    kp = keypair_of(ident)
    host = new_host(
        key_pair=kp,
        sec_opt={PLAINTEXT_PROTOCOL_ID: InsecureTransport(kp)},
        connection_config=ConnectionConfig(max_connections_per_peer=1),
    )
    host.get_network().retry_config = RetryConfig(max_retries=0)  # type: ignore[attr-defined]
    return host, ident


LISTEN = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]


async def _raw_frame(stream, body: bytes) -> None:  # type: ignore[no-untyped-def]
    await stream.write(struct.pack(">I", len(body)) + body)


@pytest.fixture
def founder(colony: Colony) -> Daemon:
    return colony.founder("a")


async def test_plaintext_only_dialer_is_refused_and_node_keeps_serving(founder: Daemon) -> None:
    host, _ = _attacker_host(plaintext=True)
    info = info_from_p2p_addr(multiaddr.Multiaddr(founder.addr()))
    async with host.run(listen_addrs=LISTEN):
        with trio.fail_after(10), pytest.raises(Exception) as refused:
            await host.connect(info)
        chain, exc = [], refused.value
        while exc is not None:
            chain.append(str(exc))
            exc = exc.__cause__ or exc.__context__
        assert any("secur" in text for text in chain), chain
        assert host.get_connected_peers() == []
        await host.close()
    assert founder.status()["connected_peers"] == 0
    # A proper (Noise) client still gets through.
    good, _ = _attacker_host()
    async with good.run(listen_addrs=LISTEN):
        with trio.fail_after(10):
            await good.connect(info)
        assert len(good.get_connected_peers()) == 1
        await good.close()


async def test_non_member_is_refused_on_member_protocols_and_counted(
    founder: Daemon, tmp_path: Path
) -> None:
    host, ident = _attacker_host()
    info = info_from_p2p_addr(multiaddr.Multiaddr(founder.addr()))
    # A roster that is validly signed, but by the attacker for its own colony.
    fake = sign_roster(ident, genesis_roster(ident, "lab", "evil"))
    async with host.run(listen_addrs=LISTEN):
        with trio.fail_after(15):
            await host.connect(info)
            stream = await host.new_stream(info.peer_id, [TProtocol("/colony/lab/roster/1")])
            frames = FrameStream(stream, ROSTER_CODEC)
            await frames.write_batch([Hello(fake, (), ())])
            with pytest.raises((StreamClosed, RemoteError)):
                while True:
                    await frames.read_batch()
        await host.close()
    wait_until(
        "the refusal to be counted",
        lambda: founder.status()["counters"]["refused_streams"] >= 1,
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
    host, _ = _attacker_host()
    info = info_from_p2p_addr(multiaddr.Multiaddr(founder.addr()))
    before = founder.status()["counters"]["bad_frames"]
    async with host.run(listen_addrs=LISTEN):
        with trio.fail_after(15):
            await host.connect(info)
            stream = await host.new_stream(info.peer_id, [TProtocol("/colony/join/1")])
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
            frames = FrameStream(stream, JOIN_CODEC)
            with pytest.raises((StreamClosed, RemoteError)):
                await frames.read_batch()
        # The same connection still works for a well-formed request on a new stream.
        with trio.fail_after(15):
            stream = await host.new_stream(info.peer_id, [TProtocol("/colony/join/1")])
            frames = FrameStream(stream, JOIN_CODEC)
            await frames.write_batch([JoinRequest("cn1.bogus", "x", ())])
            with pytest.raises(RemoteError, match="damaged"):
                await frames.read_batch()
        await host.close()
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
