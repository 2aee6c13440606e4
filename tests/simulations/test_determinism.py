"""The same seed gives the same run, byte for byte but for wall_s, in separate processes
with different hash seeds (str and bytes hashing is randomised per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from colonynode.simulations.runner import RunSpec, run_seed

COLONYNODE = Path(sys.executable).parent / "colonynode"


def _json_lines(args: list[str], hash_seed: str) -> list[str]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    result = subprocess.run(
        [str(COLONYNODE), "simulate", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    out = []
    for line in lines:
        report = json.loads(line)
        assert isinstance(report.pop("wall_s"), float)
        out.append(json.dumps(report, sort_keys=True))
    return out


@pytest.mark.parametrize("scenario", ["ping", "echo-crash"])
def test_same_seed_same_bytes_across_processes(scenario: str) -> None:
    args = ["--scenario", scenario, "--nodes", "80", "--seeds", "1..3", "--faults", "chaos"]
    first = _json_lines(args, "0")
    second = _json_lines(args, "12345")
    assert len(first) == 3
    assert first == second


def test_seed_chosen_profiles_are_a_function_of_the_seed() -> None:
    args = ["--scenario", "echo-crash", "--nodes", "40", "--seeds", "7..8", "--faults", "seed"]
    first = _json_lines(args, "3")
    assert first == _json_lines(args, "4")
    profiles = [json.loads(line)["fault_profile"] for line in first]
    assert profiles[0] != profiles[1]


def test_different_seeds_differ() -> None:
    a = run_seed(RunSpec("ping", seed=1, nodes=30, faults="lossy")).to_json()
    b = run_seed(RunSpec("ping", seed=2, nodes=30, faults="lossy")).to_json()
    assert a["metrics"] != b["metrics"]
