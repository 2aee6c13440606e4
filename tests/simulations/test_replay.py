"""A failing check prints the seed, the step and a replay line; the replay reproduces it."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from colonynode.cli.main import _register, app
from colonynode.simulations import scenario as registry
from colonynode.simulations.checkers import BaseChecker
from colonynode.simulations.examples import PingScenario
from colonynode.simulations.ping import EchoReceived
from colonynode.simulations.runner import RunSpec, run_seed
from colonynode.simulations.world import World

COLONYNODE = Path(sys.executable).parent / "colonynode"


class EchoBudget(BaseChecker):
    """Deliberately wrong: claims a colony never hears more than 300 echoes."""

    name = "echo-budget"

    def __init__(self) -> None:
        self.echoes = 0

    def after_step(self, world: World) -> list[str]:
        self.echoes += sum(1 for _, e in world.step_events if isinstance(e, EchoReceived))
        return [f"{self.echoes} echoes, over the budget of 300"] if self.echoes > 300 else []


class BrokenPing(PingScenario):
    name = "test-broken-ping"
    description = "ping with a checker that is wrong on purpose"

    def build(self, world: World) -> None:
        super().build(world)
        world.add_checker(EchoBudget())


@pytest.fixture
def broken_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(registry._REGISTRY, BrokenPing.name, BrokenPing)
    yield


def _violations(result: Any) -> list[tuple[str, str, int, float]]:
    return [(v.checker, v.message, v.step, v.time_s) for v in result.violations]


def test_a_broken_checker_fails_at_the_same_step_every_time(broken_registered: None) -> None:
    spec = RunSpec(BrokenPing.name, seed=11, nodes=40, faults="chaos")
    first = run_seed(spec)
    assert [v.checker for v in first.violations] == ["echo-budget"]
    again = run_seed(spec)
    assert _violations(again) == _violations(first)
    assert again.to_json() | {"wall_s": 0} == first.to_json() | {"wall_s": 0}


def test_the_cli_prints_the_replay_line_and_the_replay_reproduces(
    broken_registered: None,
) -> None:
    _register()
    runner = CliRunner()
    args = ["simulate", "--scenario", BrokenPing.name, "--seed", "11", "-n", "40", "-f", "chaos"]
    first = runner.invoke(app, args)
    assert first.exit_code == 1, first.output
    lines = first.output.splitlines()
    found = [line for line in lines if line.startswith("seed 11: [echo-budget] step ")]
    assert len(found) == 1
    replay = [line for line in lines if line.startswith("replay: ")]
    assert replay == [
        f"replay: colonynode simulate --scenario {BrokenPing.name} --nodes 40 --seed 11 "
        "--faults chaos"
    ]
    argv = shlex.split(replay[0].removeprefix("replay: "))
    assert argv[:2] == ["colonynode", "simulate"]
    again = runner.invoke(app, argv[1:])
    assert again.exit_code == 1
    assert [line for line in again.output.splitlines() if line.startswith("seed 11:")] == found


def _run(argv: list[str], hash_seed: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)


def test_a_planted_bug_replays_exactly_in_a_new_process() -> None:
    argv = [
        str(COLONYNODE),
        "simulate",
        "--scenario",
        "echo-crash",
        "--nodes",
        "60",
        "--seed",
        "4",
        "--faults",
        "crashes",
        "--param",
        "planted_bug=forget_counters",
        "--json",
    ]
    first = _run(argv, "1")
    assert first.returncode == 1, first.stderr
    report = json.loads(first.stdout)
    (violation,) = report["violations"]
    assert violation["checker"] == "durable-counters"
    assert violation["seed"] == 4
    replay_lines = [ln for ln in first.stderr.splitlines() if ln.startswith("replay: ")]
    assert replay_lines == [f"replay: {violation['replay']}"]
    assert f"seed 4: [durable-counters] step {violation['step']} " in first.stderr
    replay = shlex.split(violation["replay"])
    assert "--param" in replay and "planted_bug=forget_counters" in replay
    again = _run([str(COLONYNODE), *replay[1:], "--json"], "2")
    assert again.returncode == 1
    assert json.loads(again.stdout)["violations"] == report["violations"]
