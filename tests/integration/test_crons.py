"""Crons between real daemons (issue 17): a cron added on one node fires on schedule,
each tick once, its graph's output the next one's input, and keeps firing with the
owner's node SIGKILLed; bad input is a one-line error naming the field."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Daemon, Executors, cli, cli_json, wait_until

pytestmark = pytest.mark.integration

FUNCTIONS = """
from colonynode.sdk import function

@function
def chain(*previous):
    return (previous[0] + 1) if previous else 1
"""
WORKFLOW = {"functionspecs": [{"nodename": "chain", "funcname": "chain",
                               "conditions": {"executortype": "py"}}]}  # fmt: skip


def ticks(d: Daemon, cronid: str) -> list[dict[str, Any]]:
    rows = cli_json("ps", "--cron", cronid, "--limit", "1000", "--data-dir", str(d.dir))
    return sorted(rows, key=lambda p: p["submissiontime"])


def succeeded(d: Daemon, cronid: str) -> list[dict[str, Any]]:
    return [p for p in ticks(d, cronid) if p["state"] == "SUCCESS"]


def test_a_cron_fires_each_tick_once_chains_outputs_and_survives_its_owner(
    setup: tuple[list[Daemon], Executors], tmp_path: Path
) -> None:
    (a, b, c), ex = setup
    ex.start(b)
    ex.start(c)
    spec = tmp_path / "workflow.json"
    spec.write_text(json.dumps(WORKFLOW))
    added = cli("cron", "add", "--name", "chain", "--spec", str(spec), "--interval", "1",
                "--waitprevious", "--data-dir", str(a.dir))  # fmt: skip
    cronid = added.stdout.strip()
    assert len(cronid) == 32, added.stdout
    wait_until("3 ticks ran", lambda: len(succeeded(c, cronid)) >= 3, timeout_s=30)
    a.stop(signal.SIGKILL)  # the owner's node, a voter: two voters of three live on
    before = len(succeeded(c, cronid))
    wait_until("3 more ticks ran", lambda: len(succeeded(c, cronid)) >= before + 3, timeout_s=30)
    rows = ticks(b, cronid)
    times = [p["submissiontime"] for p in rows]
    assert len(times) == len(set(times)), "a tick fired twice"
    assert all(p["cronid"] == cronid for p in rows)
    outputs = [p["output"] for p in succeeded(b, cronid)]
    assert outputs == [[i] for i in range(1, len(outputs) + 1)], outputs
    got = cli_json("cron", "get", cronid, "--data-dir", str(b.dir))
    assert got["lastrun"] and got["prevprocessgraphid"] and got["nextrun"] > got["lastrun"]
    assert [x["cronid"] for x in cli_json("cron", "ls", "--data-dir", str(c.dir))] == [cronid]
    graph = cli("cron", "run", cronid, "--data-dir", str(b.dir)).stdout.strip()
    wait_until("the manual run", lambda: any(p["processgraphid"] == graph
                                             for p in ticks(c, cronid)))  # fmt: skip
    cli("cron", "rm", cronid, "--data-dir", str(c.dir))
    wait_until("removed on b", lambda: cli_json("cron", "ls", "--data-dir", str(b.dir)) == [])
    assert b.status()["crons"]["defined"] == 0


def test_bad_cron_input_is_one_line_naming_the_field(
    setup: tuple[list[Daemon], Executors], tmp_path: Path
) -> None:
    (a, _, _), _ = setup
    spec = tmp_path / "workflow.json"
    spec.write_text(json.dumps(WORKFLOW))
    cases = [
        (["--interval", "0"], "interval"),
        (["--cron", "* * * * *"], "cronexpression"),
        (["--cron", "0 * * * * *", "--random"], "random"),
        ([], "--cron EXPR or --interval S"),
    ]
    for extra, field in cases:
        got = cli("cron", "add", "--name", "x", "--spec", str(spec), *extra,
                  "--data-dir", str(a.dir), check=False)  # fmt: skip
        assert got.returncode != 0 and field in got.stderr, got.stderr
        assert len(got.stderr.strip().splitlines()) == 1, got.stderr
    spec.write_text(json.dumps({"functionspecs": [{"funcname": "f"}]}))
    got = cli("cron", "add", "--name", "x", "--spec", str(spec), "--interval", "5",
              "--data-dir", str(a.dir), check=False)  # fmt: skip
    assert got.returncode != 0 and "nodename" in got.stderr, got.stderr
    got = cli("cron", "get", "00" * 16, "--data-dir", str(a.dir), check=False)
    assert got.returncode != 0 and "no cron" in got.stderr
    assert cli_json("cron", "ls", "--data-dir", str(a.dir)) == []
    assert a.status()["member"]
