"""A bounded connection set (issue 19) with 30 real daemons: each node that is no voter
keeps at most LINKS_MAX links to members that are no voters (node/core/peerset.py; past
a short grace for a link just made), the voters keep every member that reaches them,
and gossip, claims and ColonyFS still reach everyone."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from colonynode.node.apiclient import ApiClient
from colonynode.node.core.peerset import LINKS_MAX
from colonynode.sdk import Client
from tests.integration.harness import Colony, Daemon, Executors, cli, wait_until

pytestmark = pytest.mark.integration

N = 30
FUNCTIONS = """
from colonynode.sdk import function

@function
def add(a, b):
    return a + b
"""


def api(d: Daemon) -> ApiClient:
    return ApiClient.for_data_dir(d.dir)


def test_thirty_daemons_keep_bounded_links_while_gossip_and_claims_reach_everyone(
    colony: Colony, tmp_path: Path
) -> None:
    a = colony.founder("a")
    addr = a.addr()
    nodes = [a]
    for i in range(1, N):  # joins through a, a few under way at a time
        token = api(a).post("/v1/invites", {"roles": ["executor", "submitter"], "ttl_s": 600})
        d = colony.daemon(f"n{i:02d}")
        d.join(addr, token["token"], wait=False)
        nodes.append(d)
        if i % 5 == 0:
            for x in nodes[-5:]:
                x.wait_ready(timeout_s=60)
    for x in nodes:
        x.wait_ready(timeout_s=60)
    voters = nodes[:3]
    cli("voters", "set", *(v.name for v in voters), "--data-dir", str(a.dir))
    others = nodes[3:]

    def status(d: Daemon) -> dict[str, object]:
        return api(d).get("/v1/status")  # type: ignore[no-any-return]

    for d in nodes:
        wait_until(f"{d.name}: {N} members, 3 voters",
                   lambda d=d: status(d)["members"] == N
                   and sum(m["voter"] for m in api(d).get("/v1/members")) == 3,
                   timeout_s=60)  # fmt: skip
    ex = Executors(tmp_path, FUNCTIONS)
    try:
        for d in others[:3]:
            ex.start(d)
        most: dict[str, int] = {}  # links to members that are no voters, past the grace
        total: dict[str, int] = {}  # links to members, the young ones too

        def links() -> None:
            for d in nodes:
                st = status(d)["links"]
                assert isinstance(st, dict)
                most[d.name] = max(most.get(d.name, 0), st["others_settled"])
                total[d.name] = max(total.get(d.name, 0), st["voters"] + st["others"])

        submitters = [others[5], others[12], others[20], voters[1]]
        pids: list[str] = []
        for s in submitters:
            with Client(s.dir) as client:
                specs = [{"funcname": "add", "args": [i, 1], "conditions": {"executortype": "py"}}
                         for i in range(10)]  # fmt: skip
                pids += [p["processid"] for p in client.submit_many(specs)]
            links()
        started = time.monotonic()

        def everywhere() -> bool:
            links()
            return all(api(d).get("/v1/processes/counts")["SUCCESS"] >= len(pids) for d in nodes)

        wait_until("every process SUCCESS in every node's view", everywhere, timeout_s=120)
        reached_s = time.monotonic() - started
    finally:
        ex.stop_all()
    total_gossip = dict(total)  # (an upload dials the holders of its chunks: many, at once)
    data = os.urandom(3 << 20)  # a file of several chunks, put by one member, read by
    (tmp_path / "big.bin").write_bytes(data)  # another that is no voter and is not
    put = api(others[2]).post("/v1/fs/put", {"path": str(tmp_path / "big.bin"), "label": "/c"})
    assert put["state"] == "done", put
    got = api(others[-1]).post("/v1/fs/get", {"label": "/c", "name": "big.bin",
                                              "dir": str(tmp_path / "out")})  # fmt: skip
    assert got["state"] == "done", got
    assert (tmp_path / "out" / "big.bin").read_bytes() == data
    links()
    with Client(a.dir) as client:
        outputs = sorted(client.get(p)["output"][0] for p in pids)
    assert outputs == sorted([i + 1 for i in range(10)] * len(submitters))
    print(f"links to members that are no voters, past the grace (most seen): {most}; "
          f"all links (most seen, before the upload): {total_gossip}; every view had every "
          f"result {reached_s:.1f} s "
          "after the last submission")  # fmt: skip
    assert all(most[d.name] <= LINKS_MAX for d in others), most
    assert all(total[v.name] == N - 1 for v in voters), total  # every member reaches them

    def settled(d: Daemon) -> bool:  # once the DHT's and the upload's dials are done
        st = status(d)["links"]
        assert isinstance(st, dict)
        return bool(st["voters"] + st["others"] <= len(voters) + LINKS_MAX)

    for d in others:  # (a DHT put dials the k = 20 closest members: most of 30)
        wait_until(f"{d.name}: links back within the bound", lambda d=d: settled(d), timeout_s=60)
