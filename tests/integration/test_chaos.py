"""The short chaos run inside `make test` (issue 18; `make chaos` is the long one): five
real daemons, three voters, an executor on each, 45 s of kills, pauses, link cuts and
slow links of daemons and executors while clients submit, then the checker over the
recorded history and every node's view (tests/chaos)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.chaos.nemesis import KINDS

pytestmark = pytest.mark.integration

SEED = 18


def test_a_short_chaos_run_loses_nothing_and_commits_each_call_once() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "tests.chaos", "--seed", str(SEED), "--duration-s", "45",
         "--heal-s", "90", "--json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["violations"] == []
    netns = result["network"].startswith("network namespaces")  # else it says why not
    expected = set(KINDS) if netns else set(KINDS) - {"cut", "slow"}
    assert set(result["injected"]) == expected, result["injected"]  # every kind struck
    assert result["acknowledged"] >= 100  # the colony kept taking work under the faults
    assert result["executions"] >= result["acknowledged"]
    assert result["settled_after_heal_s"] is not None
    assert result["files_acknowledged"] >= 10  # ColonyFS puts went on under the faults
