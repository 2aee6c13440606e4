"""Colonies of real daemons (OS processes, libp2p on 127.0.0.1, LMDB, HTTP) through the CLI."""

from __future__ import annotations

import shutil

import pytest

from tests.integration.harness import Colony, cli, cli_json, state_of, wait_until

pytestmark = pytest.mark.integration


def test_init_start_invite_join_lists_the_new_member_on_both_sides(colony: Colony) -> None:
    a = colony.founder("a")
    st = a.status()
    assert st["colony"] == "lab" and st["owner"] and st["voter"] and st["members"] == 1
    assert all(addr.endswith("/p2p/" + st["peer_id"]) for addr in st["addrs"])

    b = colony.joined("b", via=a)
    wait_until("a to list b", lambda: a.member_names() == {"a", "b"})
    assert b.member_names() == {"a", "b"}
    sb = b.status()
    assert sb["colony"] == "lab" and sb["roster_version"] == 2 and not sb["voter"]
    assert sb["roles"] == ["executor", "submitter"] and sb["connected_peers"] == 1
    by_name = {m["name"]: m for m in a.members()}
    assert by_name["b"]["peer_id"] == sb["peer_id"] and by_name["b"]["voter"] is False
    peers = cli_json("peers", "--data-dir", str(b.dir))
    assert [(p["name"], p["connected"], p["member"]) for p in peers] == [("a", True, True)]
    assert peers[0]["addrs"] == st["addrs"] and peers[0]["last_seen"] is not None

    # A later `start` rejoins without an invite.
    assert b.stop() == 0
    assert not (b.dir / "api.json").exists()
    b.start()
    wait_until("b to reconnect", lambda: b.status()["connected_peers"] == 1)
    assert b.status()["roster_version"] == 2


def test_three_nodes_mesh_voters_and_removal(colony: Colony) -> None:
    a = colony.founder("a")
    b = colony.joined("b", via=a)
    c = colony.joined("c", via=a)
    # b learns of c through the roster and addresses the owner relays: full mesh.
    for d in (a, b, c):
        wait_until(f"{d.name} to see 3 members", lambda d=d: d.status()["members"] == 3)
        wait_until(f"{d.name} to connect to both", lambda d=d: d.status()["connected_peers"] == 2)

    cli("voters", "set", "a", "b", "c", "--data-dir", str(a.dir))
    for d in (a, b, c):
        wait_until(
            f"{d.name} to see 3 voters",
            lambda d=d: sum(m["voter"] for m in d.members()) == 3,
        )
    assert c.status()["voter"]

    # Only the owner changes the roster.
    refused = cli("voters", "set", "a", "--data-dir", str(b.dir), check=False)
    assert refused.returncode == 1 and "owner" in refused.stderr
    # A voter cannot be removed before the voters change.
    busy = cli("remove-member", "c", "--data-dir", str(a.dir), check=False)
    assert busy.returncode == 1 and "is a voter" in busy.stderr
    assert len(busy.stderr.strip().splitlines()) == 1

    cli("voters", "set", "a", "--data-dir", str(a.dir))
    cli("remove-member", "c", "--data-dir", str(a.dir))
    for d in (a, b):
        wait_until(f"{d.name} to drop c", lambda d=d: d.member_names() == {"a", "b"})
    # The removed member's connections are closed and it is refused from then on.
    wait_until("a and b to close c", lambda: a.status()["connected_peers"] == 1)
    wait_until("b to close c", lambda: b.status()["connected_peers"] == 1)
    # c hears the roster that drops it (whoever it reaches first tells it), then stops.
    wait_until("c to learn it was removed", lambda: c.status()["member"] is False)
    wait_until("c to disconnect", lambda: c.status()["connected_peers"] == 0)
    assert c.member_names() == {"a", "b"}


def test_start_without_identity_points_to_init_or_join(colony: Colony) -> None:
    empty = colony.root / "empty"
    result = cli("start", "--data-dir", str(empty), check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "colonynode init" in lines[0] and "colonynode join" in lines[0]
    assert "Traceback" not in result.stderr


def test_commands_without_a_daemon_say_so_in_one_line(colony: Colony) -> None:
    a = colony.daemon("a")
    a.init()
    result = cli("status", "--data-dir", str(a.dir), check=False)
    assert result.returncode == 1
    assert "no colonynode daemon is running" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_join_through_any_member_is_forwarded_to_the_owner(colony: Colony) -> None:
    a = colony.founder("a")
    b = colony.joined("b", via=a)
    c = colony.daemon("c")
    c.join(b.addr(), a.invite())  # the token is the owner's; the address is b's
    for d in (a, b, c):
        wait_until(f"{d.name} to list c", lambda d=d: d.member_names() == {"a", "b", "c"})
    assert c.status()["roster_version"] == 3
    assert b.status()["counters"]["joins_forwarded"] == 1


def test_a_node_that_joined_the_founder_alone_submits_at_once(colony: Colony) -> None:
    """Its first roster is the founder's v1, its admission v2 with the same voter: it
    addresses the voter set by the version that set it (v1), the one the founder serves
    (it used to have no voters at all, or name v2: never acknowledged)."""
    a = colony.founder("a")
    b = colony.joined("b", via=a)
    pid = cli("run", "noop", "--executortype", "none", "--data-dir", str(b.dir)).stdout.strip()
    wait_until("a to hold it", lambda: state_of(a, pid) == "WAITING")


def test_a_member_that_lost_its_store_and_kept_its_key_is_heard_again(colony: Colony) -> None:
    """b's LMDB store is lost, its identity key kept; it joins again with its invite. Its
    old records are held by a: were its new ones numbered from 1 again, a would drop them
    as copies (its new processes never in a's view). The join tells it how far they went."""
    a = colony.founder("a")
    b = colony.daemon("b")
    token = a.invite()
    b.join(a.addr(), token)
    wait_until("b to connect", lambda: b.status()["connected_peers"] == 1)
    old = [cli("run", "noop", "--executortype", "none", "--data-dir", str(b.dir)).stdout.strip()
           for _ in range(3)]  # fmt: skip
    for pid in old:
        wait_until(f"a to hold {pid}", lambda pid=pid: state_of(a, pid) == "WAITING")
    assert b.stop() == 0
    shutil.rmtree(b.dir / "store")  # identity.key and node.json stay
    b.join(a.addr(), token)  # the same node with its invite again: admitted as it was
    wait_until("b to connect again", lambda: b.status()["connected_peers"] == 1)
    new = cli("run", "noop", "--executortype", "none", "--data-dir", str(b.dir)).stdout.strip()
    wait_until("a to hold the new process", lambda: state_of(a, new) == "WAITING")
    assert b.status()["gossip"]["own_seqs_skipped"] > 0
