"""The lease quorum between real daemons (issue 8): three voters commit each result once."""

from __future__ import annotations

import signal

import pytest

from colonynode.node.apiclient import ApiClient, ApiError
from tests.integration.harness import Colony, Daemon, cli, wait_until

pytestmark = pytest.mark.integration


def api(d: Daemon) -> ApiClient:
    return ApiClient.for_data_dir(d.dir, timeout_s=60)


def three_voters(colony: Colony) -> list[Daemon]:
    a = colony.founder("a")
    nodes = [a, colony.joined("b", via=a), colony.joined("c", via=a)]
    cli("voters", "set", "a", "b", "c", "--data-dir", str(a.dir))
    for d in nodes:
        wait_until(
            f"{d.name} to see 3 voters", lambda d=d: sum(m["voter"] for m in d.members()) == 3
        )
        wait_until(f"{d.name} to connect to both", lambda d=d: d.status()["connected_peers"] == 2)
    return nodes


def test_submit_claim_close_read_across_three_voters(colony: Colony) -> None:
    a, b, c = three_voters(colony)
    pid = "aa01"
    sub = api(a).post("/v1/leases/submit", {"pid": pid, "maxretries": 1})
    assert sub["acked"] is True

    got = api(b).post("/v1/leases/claim", {"pids": [pid], "lease_s": 10})["results"][0]
    assert got["granted"] is True and got["epoch"] >= 1
    # c cannot take the lease b holds.
    other = api(c).post("/v1/leases/claim", {"pids": [pid], "lease_s": 10})["results"][0]
    # (refused either for the held lease or for an epoch not above what voters have seen)
    assert other["granted"] is False and other["reason"] in {"LEASE_HELD", "STALE_EPOCH"}
    # Only the holder closes; its result is committed once.
    with pytest.raises(ApiError, match="only the holder closes"):
        api(c).post("/v1/leases/close", {"pid": pid, "output": ["c"]})
    closed = api(b).post("/v1/leases/close", {"pid": pid, "output": [42]})
    assert closed["committed"] is True
    with pytest.raises(ApiError, match="only the holder closes"):  # the lease ended
        api(b).post("/v1/leases/close", {"pid": pid, "output": [43]})

    read = api(c).get(f"/v1/leases/{pid}")
    assert read["committed"] is True
    assert read["view"]["state"] == "SUCCESS" and read["view"]["output"] == [42]


def test_a_claim_the_core_cannot_send_fails_at_once_and_spares_the_others(
    colony: Colony,
) -> None:
    a, b, _ = three_voters(colony)
    pids = [f"cc{i:02d}" for i in range(70)]  # more than one Claim request carries (64)
    for pid in pids:
        assert api(a).post("/v1/leases/submit", {"pid": pid})["acked"] is True
    results = api(b).post("/v1/leases/claim", {"pids": pids, "lease_s": 10})["results"]
    assert sum(r["granted"] for r in results) == 64
    # The rest were not sent: refused by this node at once, not timed out (reason None).
    assert [r["reason"] for r in results if not r["granted"]] == ["NOT_ALLOWED"] * 6
    held = next(r["pid"] for r in results if r["granted"])
    again = api(b).post("/v1/leases/claim", {"pids": [held]})["results"][0]
    assert again["granted"] is False and again["reason"] == "NOT_ALLOWED"
    # The first claim's lease is intact: its holder closes it.
    assert api(b).post("/v1/leases/close", {"pid": held, "output": [1]})["committed"] is True


def test_a_majority_survives_a_voter_killed_with_sigkill(colony: Colony) -> None:
    a, b, c = three_voters(colony)
    acked = [f"bb{i:02d}" for i in range(5)]
    for pid in acked:
        assert api(a).post("/v1/leases/submit", {"pid": pid})["acked"] is True
    c.stop(signal.SIGKILL)
    # Two of three voters still grant and commit.
    results = api(b).post("/v1/leases/claim", {"pids": acked, "lease_s": 10})["results"]
    assert all(r["granted"] for r in results)
    for pid in acked:
        assert api(b).post("/v1/leases/close", {"pid": pid, "output": [pid]})["committed"]
    # The killed voter restarts with every acknowledged process on disk.
    c.start()
    wait_until("c to reconnect", lambda: c.status()["connected_peers"] == 2)
    for pid in acked:
        view = api(c).get(f"/v1/leases/{pid}")["view"]
        assert view["state"] == "SUCCESS" and view["output"] == [pid]
