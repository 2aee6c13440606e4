"""The `claims` scenario (consensus/ under faults): the CI sweep of seeds, the faults
really happening, and planted bugs caught by the checkers."""

from __future__ import annotations

import pytest

from colonynode.simulations.runner import RunResult, RunSpec, run_seed

NAMED = ("none", "lossy", "partitions", "crashes", "chaos")
SAFETY = ("double_commits", "overlapping_leases", "lost_submissions", "unfinished_after_liveness")


SWEEP_SAFETY_S = 10.0  # the CI sweep: shorter safety phases, more seeds


def run(
    seed: int, faults: str, safety_s: float | None = None, **params: str | int | float
) -> RunResult:
    spec = RunSpec("claims", seed=seed, faults=faults, params=params, safety_s=safety_s)
    return run_seed(spec)


def assert_clean(result: RunResult) -> None:
    assert result.ok, "\n".join([*map(str, result.violations), result.replay])
    for name in SAFETY:
        assert result.metrics[name] == 0, name


@pytest.mark.parametrize("faults", NAMED)
def test_named_profiles_hold_every_checker_and_close_every_process(faults: str) -> None:
    for seed in range(1, 21):
        result = run(seed, faults, SWEEP_SAFETY_S)
        assert_clean(result)
        assert result.converged_s is not None


def test_seed_chosen_profiles_hold_every_checker() -> None:
    for seed in range(1, 101):
        assert_clean(run(seed, "seed", SWEEP_SAFETY_S))


def test_five_voters_hold_every_checker_under_chaos() -> None:
    for seed in range(1, 6):
        result = run_seed(
            RunSpec("claims", seed=seed, nodes=9, faults="chaos", params={"voters": 5})
        )
        assert_clean(result)


def test_chaos_really_exercises_the_lease_rules() -> None:
    """Over a few seeds: voters crash and restart, holders lose leases (pauses longer than
    a lease, partitions), stale closes are fenced, processes expire, claims duel."""
    totals: dict[str, int] = {}
    for seed in range(1, 11):
        m = run(seed, "chaos").metrics
        for name in (
            "node_restarts",
            "fault_pauses",
            "leases_lost",
            "fenced_closes",
            "expired_committed",
            "claims_failed",
            "closes_committed",
            "net_duplicated",
            "net_reordered",
        ):
            value = m[name]
            assert isinstance(value, int)
            totals[name] = totals.get(name, 0) + value
    assert all(v > 0 for v in totals.values()), totals


def test_claim_latency_is_measured() -> None:
    m = run(1, "none").metrics
    p50, p99 = m["claim_latency_p50_s"], m["claim_latency_p99_s"]
    assert isinstance(p50, float) and isinstance(p99, float) and 0 < p50 <= p99 < 1.0
    assert isinstance(m["claims_committed"], int) and m["claims_committed"] > 0


@pytest.mark.parametrize(
    ("bug", "faults", "checkers"),
    [
        ("ignore_epochs", "lossy", {"overlapping-leases", "double-commits"}),
        ("ignore_epochs", "chaos", {"overlapping-leases", "double-commits"}),
        ("skip_persist", "crashes", {"lost-submissions", "liveness", "overlapping-leases"}),
    ],
)
def test_a_planted_bug_is_caught_by_the_checkers(bug: str, faults: str, checkers: set[str]) -> None:
    caught = 0
    for seed in range(1, 11):
        result = run(seed, faults, planted_bug=bug, jobs_per_node_s=0.4)
        found = {v.checker for v in result.violations}
        assert found <= checkers, found
        caught += bool(found)
    assert caught >= 3


def test_a_violation_replays_at_the_same_step() -> None:
    first = next(
        r for s in range(1, 20) if not (r := run(s, "none", planted_bug="ignore_epochs")).ok
    )
    again = run(first.spec.seed, "none", planted_bug="ignore_epochs")
    assert [(v.checker, v.step) for v in again.violations] == [
        (v.checker, v.step) for v in first.violations
    ]
