"""The example scenarios over a fixed set of seeds (the CI sweep), and their checkers
catching planted bugs."""

from __future__ import annotations

import pytest

from colonynode.simulations.runner import RunSpec, run_seed
from colonynode.simulations.scenario import default_scenario, get_scenario, scenarios

SCENARIOS = ("ping", "echo-crash")
NAMED = ("none", "lossy", "partitions", "crashes", "chaos")
NODES = 50


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("faults", NAMED)
def test_named_profiles_hold_every_checker(scenario: str, faults: str) -> None:
    for seed in range(1, 6):
        result = run_seed(RunSpec(scenario, seed=seed, nodes=NODES, faults=faults))
        assert result.ok, "\n".join([*map(str, result.violations), result.replay])
        assert result.converged_s is not None


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_seed_chosen_profiles_hold_every_checker(scenario: str) -> None:
    for seed in range(1, 21):
        result = run_seed(RunSpec(scenario, seed=seed, nodes=NODES, faults="seed"))
        assert result.ok, "\n".join([*map(str, result.violations), result.replay])


def test_faults_really_happen_in_the_chaos_profile() -> None:
    m = run_seed(RunSpec("echo-crash", seed=1, nodes=NODES, faults="chaos")).metrics
    for name in (
        "fault_crashes",
        "fault_pauses",
        "fault_partitions",
        "fault_clogs",
        "net_dropped_loss",
        "net_duplicated",
        "net_reordered",
        "net_clogged",
        "net_dropped_cut",
        "node_restarts",
        "jobs_died",
        "jobs_timeout",
    ):
        assert isinstance(m[name], int) and m[name] > 0, name


def test_crashes_lose_unsynced_writes_of_the_echo_counter() -> None:
    results = [
        run_seed(RunSpec("echo-crash", seed=s, nodes=NODES, faults="crashes")) for s in (1, 2, 3)
    ]
    lost = sum(int(r.metrics["node_lost_batches"] or 0) for r in results)
    assert lost > 0


@pytest.mark.parametrize(
    ("scenario", "bug", "faults", "checker"),
    [
        ("ping", "wrong_nonce", "none", "echo-matches-ping"),
        ("echo-crash", "forget_counters", "crashes", "durable-counters"),
        ("echo-crash", "rerun_finished", "crashes", "jobs-finish-once"),
    ],
)
def test_a_planted_bug_is_caught_by_its_checker(
    scenario: str, bug: str, faults: str, checker: str
) -> None:
    for seed in (1, 2, 3):
        spec = RunSpec(scenario, seed=seed, nodes=NODES, faults=faults, params={"planted_bug": bug})
        result = run_seed(spec)
        assert [v.checker for v in result.violations] == [checker]
        assert result.simulated_s < 20.0  # the run stops at the violation


def test_liveness_fails_when_the_heal_is_too_short() -> None:
    # A ping round over 5 peers takes 5 s: 2 s of liveness phase cannot converge.
    result = run_seed(RunSpec("ping", seed=1, nodes=NODES, faults="none", liveness_s=2.0))
    assert [v.checker for v in result.violations] == ["liveness"]
    assert "core pairs silent" in result.violations[0].message


def test_the_registry_lists_both_and_defaults_to_the_most_complete() -> None:
    names = [cls.name for cls in scenarios()]
    assert {"ping", "echo-crash"} <= set(names)
    assert default_scenario().rank == max(cls.rank for cls in scenarios())
    assert get_scenario("echo-crash").rank > get_scenario("ping").rank


def test_one_node_and_two_nodes_run() -> None:
    for nodes in (1, 2):
        for scenario in SCENARIOS:
            result = run_seed(RunSpec(scenario, seed=5, nodes=nodes, faults="chaos"))
            assert result.ok, [str(v) for v in result.violations]


def test_keep_going_records_every_violation_up_to_the_cap() -> None:
    spec = RunSpec(
        "ping",
        seed=2,
        nodes=30,
        faults="none",
        params={"planted_bug": "wrong_nonce"},
        stop_on_violation=False,
    )
    result = run_seed(spec)
    assert len(result.violations) == 100  # VIOLATIONS_MAX
    steps = [v.step for v in result.violations]
    assert steps == sorted(steps) and steps[0] < steps[-1]
    assert result.simulated_s > 20.0  # it ran on into the liveness phase
