"""Crons and generators between real daemons (issue 17): a cron added on one node fires
on schedule, each tick once, its graph's output the next one's input, and keeps firing
with the owner's node SIGKILLed; a generator turns args packed on every node into
workflows of `trigger` args in pack order; bad input is a one-line error naming the
field."""

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

@function
def join(*words):
    return "".join(words)
"""
WORKFLOW = {"functionspecs": [{"nodename": "chain", "funcname": "chain",
                               "conditions": {"executortype": "py"}}]}  # fmt: skip


def ticks(d: Daemon, cronid: str) -> list[dict[str, Any]]:
    rows = cli_json("ps", "--cron", cronid, "--limit", "1000", "--data-dir", str(d.dir))
    return sorted(rows, key=lambda p: p["submissiontime"])


def succeeded(d: Daemon, cronid: str) -> list[dict[str, Any]]:
    return [p for p in ticks(d, cronid) if p["state"] == "SUCCESS"]


def test_a_cron_fires_each_tick_once_chains_outputs_and_survives_its_last_firer(
    setup: tuple[list[Daemon], Executors], tmp_path: Path
) -> None:
    (a, b, c), ex = setup
    ex.start(b)
    ex.start(c)
    spec = tmp_path / "workflow.json"
    spec.write_text(json.dumps(WORKFLOW))
    added = cli("cron", "add", "--name", "chain", "--spec", str(spec), "--interval", "2",
                "--waitprevious", "--data-dir", str(a.dir))  # fmt: skip
    cronid = added.stdout.strip()
    assert len(cronid) == 32, added.stdout
    wait_until("3 ticks ran", lambda: len(succeeded(c, cronid)) >= 3, timeout_s=30)
    # SIGKILL the node that fired the last tick (a voter: two of three live on); if that
    # is c, whose view the test reads, kill a instead and read c
    last = ticks(c, cronid)[-1]["submitter"]
    by_peer = {d.status()["peer_id"]: d for d in (a, b, c)}
    victim = by_peer[last] if by_peer[last] is not c else a
    victim.stop(signal.SIGKILL)
    alive = b if victim is not b else a
    before = len(succeeded(c, cronid))
    wait_until("3 more ticks ran", lambda: len(succeeded(c, cronid)) >= before + 3, timeout_s=40)
    rows = ticks(alive, cronid)
    times = [p["submissiontime"] for p in rows]
    assert len(times) == len(set(times)), "a tick fired twice"
    assert all(p["cronid"] == cronid for p in rows)
    outputs = [p["output"] for p in succeeded(alive, cronid)]
    assert outputs == [[i] for i in range(1, len(outputs) + 1)], outputs
    got = cli_json("cron", "get", cronid, "--data-dir", str(alive.dir))
    assert got["lastrun"] and got["prevprocessgraphid"] and got["nextrun"] > got["lastrun"]
    assert [x["cronid"] for x in cli_json("cron", "ls", "--data-dir", str(c.dir))] == [cronid]
    graph = cli("cron", "run", cronid, "--data-dir", str(alive.dir)).stdout.strip()
    wait_until("the manual run", lambda: any(p["processgraphid"] == graph
                                             for p in ticks(c, cronid)))  # fmt: skip
    cli("cron", "rm", cronid, "--data-dir", str(c.dir))
    wait_until("removed", lambda: cli_json("cron", "ls", "--data-dir", str(alive.dir)) == [])
    assert alive.status()["crons"]["defined"] == 0


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


def test_a_generator_submits_every_trigger_args_in_pack_order_each_arg_once(
    setup: tuple[list[Daemon], Executors], tmp_path: Path
) -> None:
    (a, b, c), ex = setup
    ex.start(b)
    spec = tmp_path / "join.json"
    spec.write_text(json.dumps({"funcname": "join", "conditions": {"executortype": "py"}}))
    gid = cli("generator", "add", "--name", "joiner", "--spec", str(spec), "--trigger", "3",
              "--timeout", "3", "--data-dir", str(a.dir)).stdout.strip()  # fmt: skip
    assert len(gid) == 32
    for i, d in enumerate([a, b, c, a, b, c, a]):  # packed on every node, in this order
        cli("generator", "pack", gid, f"w{i}", "--data-dir", str(d.dir))

    def outputs() -> list[Any]:
        rows = cli_json("ps", "--generator", gid, "--data-dir", str(c.dir))
        done = sorted((p for p in rows if p["state"] == "SUCCESS"),
                      key=lambda p: p["spec"]["args"])  # fmt: skip
        return [p["output"] for p in done]

    # two full batches, then the seventh arg alone once it waited 3 s
    wait_until("three batches", lambda: len(outputs()) == 3, timeout_s=30)
    assert outputs() == [["w0w1w2"], ["w3w4w5"], ["w6"]]
    got = cli_json("generator", "get", gid, "--data-dir", str(b.dir))
    assert got["queued"] == 0 and got["used"] == 7 and len(got["processgraphids"]) == 3
    bad = cli("generator", "pack", "00" * 16, "x", "--data-dir", str(a.dir), check=False)
    assert bad.returncode != 0 and "no generator" in bad.stderr
    bad = cli("generator", "add", "--name", "x", "--spec", str(spec), "--trigger", "0",
              "--data-dir", str(a.dir), check=False)  # fmt: skip
    assert bad.returncode != 0 and "trigger" in bad.stderr
