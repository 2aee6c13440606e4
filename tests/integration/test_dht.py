"""Kademlia between real daemons (issue 7): peers found through /peer/ records, and a
ColonyFS file-revision record put on one node read on another."""

from __future__ import annotations

import hashlib

import pytest

from colonynode.node.apiclient import ApiClient
from tests.integration.harness import Colony, cli_json, wait_until

pytestmark = pytest.mark.integration


def peers_of(d) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    return {p["name"]: p for p in cli_json("peers", "--data-dir", str(d.dir))}


def test_a_joined_through_b_is_found_by_e_through_the_dht(colony: Colony) -> None:
    o = colony.founder("o")
    b = colony.joined("b", via=o)
    a = colony.daemon("a")
    a.join(b.addr(), o.invite())  # a knows only b (and, from the answer, the owner)
    d = colony.joined("d", via=o)
    e = colony.joined("e", via=o)
    for n in (o, b, a, d, e):
        wait_until(f"{n.name} to see 5 members", lambda n=n: n.status()["members"] == 5)
    # e learns where a is from a's signed /peer/ record in the DHT, or from a member's
    # hint in its Hello (docs/decisions.md: whichever comes first; both are a's own).
    wait_until("e to connect to a", lambda: peers_of(e).get("a", {}).get("connected"),
               timeout_s=40)  # fmt: skip
    a_addrs = a.status()["addrs"]
    assert peers_of(e)["a"]["addrs"] == a_addrs
    # e finds a's signed address record in the DHT whenever it asks (a lookup, not
    # what e's roster keeps: service.find_peer).
    found = ApiClient.for_data_dir(e.dir).get(f"/v1/dht/peers/{a.status()['peer_id']}")
    assert found["found"] is True and found["addrs"] == a_addrs

    digest = hashlib.sha256(b"hello colony").hexdigest()
    put = ApiClient.for_data_dir(a.dir).post(
        "/v1/dht/fs/revisions",
        {"label": "docs", "name": "hello.txt", "id": "r1", "sha256": digest, "size": 12},
    )
    assert put["ok"] is True and put["stored"] >= 1
    got = ApiClient.for_data_dir(e.dir).get("/v1/dht/fs/docs/hello.txt")
    assert got["found"] is True and got["latest"] == "r1"
    assert got["revisions"][0]["sha256"] == digest
    assert got["revisions"][0]["author"] == a.status()["peer_id"]
