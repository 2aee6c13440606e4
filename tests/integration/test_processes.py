"""Submitting processes between real daemons: acknowledged by a majority of voters,
visible everywhere through gossip, readable from a majority; bad spec files refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.harness import Colony, Daemon, cli, cli_json, wait_until

pytestmark = pytest.mark.integration

SPEC = {"funcname": "estimate_pi", "args": [1000], "maxretries": 2,
        "conditions": {"executortype": "python-executor"}}  # fmt: skip


def ps(d: Daemon) -> list[dict]:  # type: ignore[type-arg]
    return list(cli_json("ps", "--data-dir", str(d.dir)))


def test_submit_is_acknowledged_seen_everywhere_and_read_from_a_majority(
    colony: Colony, tmp_path: Path
) -> None:
    a = colony.founder("a")
    b = colony.joined("b", via=a)
    c = colony.joined("c", via=a, roles="executor")
    cli("voters", "set", "a", "b", "c", "--data-dir", str(a.dir))
    for d in (a, b, c):
        wait_until(f"{d.name}: 3 voters", lambda d=d: sum(m["voter"] for m in d.members()) == 3)
        wait_until(f"{d.name}: mesh", lambda d=d: d.status()["connected_peers"] == 2)

    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(SPEC))
    pid = cli("submit", str(spec_file), "--data-dir", str(b.dir)).stdout.strip()
    assert len(pid) == 32
    for d in (a, b, c):
        wait_until(f"{d.name} to list it", lambda d=d: [p["processid"] for p in ps(d)] == [pid])
    local = cli_json("get", pid, "--data-dir", str(c.dir))
    assert local["state"] == "WAITING" and local["spec"]["funcname"] == "estimate_pi"
    assert local["submitter"] == b.status()["peer_id"] and local["submissiontime"]
    from colonynode.node.apiclient import ApiClient

    metrics = ApiClient.for_data_dir(c.dir).get_text("/metrics")
    assert 'colonynode_processes{state="WAITING"} 1' in metrics
    assert 'colonynode_processes{state="SUCCESS"} 0' in metrics
    majority = cli_json("get", pid, "--consistent", "--data-dir", str(a.dir))
    assert majority["state"] == "WAITING" and majority["epoch"] == 0
    assert majority["consistent"]["answered"] >= 2

    # c has no submitter role.
    refused = cli("submit", str(spec_file), "--data-dir", str(c.dir), check=False)
    assert refused.returncode == 1 and "submitter role" in refused.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"funcname": "f", "maxretrys": 3}', "spec.maxretrys: unknown field"),
        ('{"funcname": "f", "priority": "high"}', "spec.priority: expected an integer"),
        ('{"funcname": "f",', "not JSON"),
        ('{"args": [1]}', "spec.funcname: missing"),
        (None, "cannot read spec file"),
    ],
)
def test_malformed_spec_files_are_one_line_errors(
    colony: Colony, tmp_path: Path, content: str | None, message: str
) -> None:
    a = colony.daemon("a")
    a.init()  # no daemon needed: the spec is checked before anything is sent
    path = tmp_path / "spec.json"
    if content is not None:
        path.write_text(content)
    result = cli("submit", str(path), "--data-dir", str(a.dir), check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_api_refuses_other_tokens_and_names_unknown_processes(colony: Colony) -> None:
    from colonynode.node.apiclient import ApiClient, ApiError

    a = colony.founder("a")
    stranger = colony.founder("z", colony="other")  # another colony's node on this machine
    handle = json.loads((stranger.dir / "api.json").read_text())
    foreign = ApiClient(json.loads((a.dir / "api.json").read_text())["url"], handle["token"])
    with pytest.raises(ApiError) as denied:
        foreign.get("/v1/processes")
    assert denied.value.status == 401
    with pytest.raises(ApiError) as missing:
        ApiClient.for_data_dir(a.dir).get("/v1/processes/" + "ab" * 16)
    assert missing.value.status == 404 and "no process" in str(missing.value)
    result = cli("get", "ab" * 16, "--data-dir", str(a.dir), check=False)
    assert result.returncode == 1 and result.stderr.startswith("error: no process")
