"""`colonynode simulate`: listing, reports, JSON, plot and one-line errors (exit 2)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from colonynode.cli.main import _register, app
from colonynode.simulations.scenario import default_scenario

JSON_KEYS = {
    "scenario",
    "seed",
    "nodes",
    "faults",
    "simulated_s",
    "wall_s",
    "violations",
    "metrics",
}


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    _register()
    return CliRunner()


def test_list_names_the_scenarios(runner: CliRunner) -> None:
    result = runner.invoke(app, ["simulate", "--list"])
    assert result.exit_code == 0, result.output
    assert "ping" in result.output and "echo-crash" in result.output


def test_json_prints_one_object_per_seed_with_the_required_keys(runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["simulate", "-s", "ping", "-n", "20", "--seeds", "3..5", "-f", "lossy", "--json"]
    )
    assert result.exit_code == 0, result.output
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["seed"] for r in reports] == [3, 4, 5]
    for r in reports:
        assert set(r) >= JSON_KEYS
        assert r["violations"] == []
        assert r["scenario"] == "ping" and r["nodes"] == 20 and r["faults"] == "lossy"
        assert r["metrics"]["echoes"] > 0
    line = result.stdout.splitlines()[0]
    assert line == json.dumps(json.loads(line), sort_keys=True)


def test_without_a_scenario_the_most_complete_one_runs(runner: CliRunner) -> None:
    result = runner.invoke(app, ["simulate", "-n", "10", "--seed", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["scenario"] == default_scenario().name


def test_the_readable_report_is_a_table(runner: CliRunner) -> None:
    result = runner.invoke(app, ["simulate", "-s", "echo-crash", "-n", "20", "--seeds", "1..2"])
    assert result.exit_code == 0, result.output
    assert "echo-crash · 20 nodes · 2 seeds" in result.output
    assert "jobs accepted" in result.output
    assert "all 2 seeds held every checker" in result.output


def test_a_violation_exits_1(runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["simulate", "-s", "ping", "-n", "20", "--seed", "1", "-p", "planted_bug=wrong_nonce"]
    )
    assert result.exit_code == 1
    assert "replay: colonynode simulate --scenario ping --nodes 20 --seed 1" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-s", "nope"], "unknown scenario 'nope'"),
        (["--seeds", "5..1"], "--seeds takes A..B"),
        (["--seeds", "a..b"], "--seeds takes A..B"),
        (["--seed", "1", "--seeds", "1..2"], "give --seed or --seeds, not both"),
        (["--seed", "-3"], "--seed is an integer"),
        (["-f", "storm"], "unknown fault profile 'storm'"),
        (["-s", "ping", "-p", "colour=red"], "scenario ping has no parameter 'colour'"),
        (["-s", "ping", "-p", "fanout=many"], "parameter fanout takes an integer"),
        (["-n", "0"], "--nodes is at least 1"),
        (["--liveness-s", "-1"], "--liveness-s is not negative"),
        (["--plot", "out.txt"], "--plot writes a .png"),
    ],
)
def test_expected_failures_are_one_line_and_exit_2(
    runner: CliRunner, args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["simulate", *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert result.stdout == ""


def test_plot_without_matplotlib_is_a_one_line_error(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    result = runner.invoke(app, ["simulate", "-n", "5", "--seed", "1", "--plot", "x.png"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --plot needs matplotlib: pip install 'colonynode[plot]' (or pip install matplotlib)"
    )


def test_plot_draws_the_main_figure(runner: CliRunner, tmp_path: Path) -> None:
    import matplotlib  # noqa: F401  (a test dependency: the plot is tested, not skipped)

    out = tmp_path / "ping.png"
    result = runner.invoke(
        app, ["simulate", "-s", "ping", "-n", "20", "--seeds", "1..2", "--plot", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
