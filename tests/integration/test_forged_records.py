"""A member that forges closing records, against real daemons (#18, quorum certificates).

Three voters run two processes (one succeeds, one fails) and hold a third that waits
(no executor of its type); then a fourth member joins whose daemon forges closing
records of the first two, turned around, four ways, and RUNNING records of the third
under leases nobody granted (tests/integration/forging_member.py), over the real gossip
links. Every honest node keeps what the voters committed, refuses the records it can
tell are forged and counts them (`certs` in `status --json`), and holds the self-
certified closes without taking them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.integration.harness import Colony, Daemon, Executors, cli, state_of, wait_until

pytestmark = pytest.mark.integration

FUNCTIONS = """
from colonynode.sdk import function

@function
def add(a, b):
    return a + b

@function
def boom():
    raise ValueError("it broke")
"""

FORGER = [sys.executable, "-m", "tests.integration.forging_member"]
ROOT = Path(__file__).resolve().parents[2]


def get(d: Daemon, pid: str) -> dict:  # type: ignore[type-arg]
    return json.loads(cli("get", pid, "--json", "--data-dir", str(d.dir)).stdout)  # type: ignore[no-any-return]


def result(view: dict) -> tuple[str, str, str]:  # type: ignore[type-arg]
    return view["state"], json.dumps(view["output"]), json.dumps(view["errors"])


def run(d: Daemon, *args: str) -> dict:  # type: ignore[type-arg]
    got = cli("run", *args, "--executortype", "py", "--wait", "--json", "--timeout", "60",
              "--data-dir", str(d.dir), check=False)  # fmt: skip
    return json.loads(got.stdout)  # type: ignore[no-any-return]


def test_forged_closing_records_are_refused_by_real_daemons(
    colony: Colony, setup: tuple[list[Daemon], Executors], monkeypatch: pytest.MonkeyPatch
) -> None:
    (a, b, c), ex = setup
    ex.start(b)
    ex.start(c)
    ok, failed = run(a, "add", "1", "2"), run(a, "boom")
    assert (ok["state"], ok["output"], failed["state"]) == ("SUCCESS", [3], "FAILED")
    waits = cli(
        "run", "add", "5", "6", "--executortype", "nobody", "--data-dir", str(a.dir)
    ).stdout.strip()  # (no executor of that type: it waits)
    pids = (ok["processid"], failed["processid"], waits)
    wait_until("every view to hold the waiting one",
               lambda: all(state_of(d, waits) == "WAITING" for d in (a, b, c)))  # fmt: skip
    truth = {pid: result(get(a, pid)) for pid in pids}
    for d in (b, c):
        assert {pid: result(get(d, pid)) for pid in pids} == truth

    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # (the forger's module is a test's)
    forger = colony.daemon("mallory")  # (stopped with the others at the end)
    forger.program = FORGER
    forger.join(a.addr(), a.invite("executor,submitter"))

    def forged() -> dict[str, int]:
        return forger.status()["forged"]  # type: ignore[no-any-return]

    # Each way, for each process, three rounds (the stolen one once it has received a
    # real certificate of each closed one; RUNNING for the waiting one)
    wait_until("mallory to forge three rounds", lambda: min(forged().values()) >= 6, 60)
    for d in (a, b, c):
        # 2 processes x (bare, impostor, stolen), at least once each; the self-certified
        # ones held (a roster could yet make their signer a voter), none taken
        wait_until(f"{d.name} hearing the forgeries",
                   lambda d=d: sum(d.status()["certs"].values()) >= 10, 30)  # fmt: skip
        for pid in pids:
            assert result(get(d, pid)) == truth[pid], (d.name, get(d, pid))
        certs = d.status()["certs"]
        assert certs["closes_held"] == 2 and certs["closes_refused"] >= 6
        assert certs["running_refused"] >= 2  # (still WAITING above: nobody was kept off)
    # (What mallory tells itself is its own business: its view took its own lies.)
    assert get(forger, ok["processid"])["state"] == "FAILED"
