"""`colonynode simulate`: run the deterministic simulator (DESIGN.md §11).

Exit codes: 0 when every checker held for every seed, 1 when a violation was found,
2 for a command that cannot run (unknown scenario or fault profile, bad seed range).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import typer

from colonynode.core.errors import ColonyError

__all__ = ["simulate"]

EXIT_VIOLATION = 1
EXIT_USAGE = 2


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_USAGE)


def simulate(
    scenario: str | None = typer.Option(
        None, "--scenario", "-s", help="Scenario to run (default: the most complete one)."
    ),
    nodes: int | None = typer.Option(
        None, "--nodes", "-n", help="Number of nodes (default: the scenario's)."
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Seed to run; a failure's replay line names it (default: random)."
    ),
    seeds: str | None = typer.Option(None, "--seeds", help="Run seeds A..B (inclusive)."),
    faults: str = typer.Option(
        "seed",
        "--faults",
        "-f",
        help="Fault profile: none, lossy, partitions, crashes, chaos, or seed (drawn from "
        "the seed).",
    ),
    param: list[str] = typer.Option(
        [], "--param", "-p", help="Scenario parameter name=value (repeatable)."
    ),
    safety_s: float | None = typer.Option(
        None, "--safety-s", help="Simulated seconds of the safety phase (faults)."
    ),
    liveness_s: float | None = typer.Option(
        None, "--liveness-s", help="Simulated seconds the healed majority has to converge."
    ),
    keep_going: bool = typer.Option(
        False, "--keep-going", help="Keep running after a violation (report them all)."
    ),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per seed per line."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Draw the scenario's main figure to FILE.png (needs matplotlib)."
    ),
    list_scenarios: bool = typer.Option(False, "--list", help="List the scenarios and exit."),
) -> None:
    """Run many nodes of the real protocol cores in one process, under injected faults."""
    from rich.console import Console

    from colonynode.simulations import report, runner
    from colonynode.simulations import scenario as registry
    from colonynode.simulations.faults import resolve_profile

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # a pipe or a file has no width: do not cut columns
    try:
        if list_scenarios:
            report.print_scenarios(console, registry.scenarios())
            return
        cls = registry.get_scenario(scenario) if scenario else registry.default_scenario()
        if seed is not None and seeds is not None:
            raise ColonyError("give --seed or --seeds, not both")
        if seeds is not None:
            seed_list = list(runner.parse_seed_range(seeds))
        elif seed is not None:
            if not 0 <= seed <= runner.SEED_MAX:
                raise ColonyError(f"--seed is an integer in 0..{runner.SEED_MAX}, got {seed}")
            seed_list = [seed]
        else:
            seed_list = [random.SystemRandom().randrange(2**32)]
        resolve_profile(faults, seed_list[0])
        params = registry.parse_params(cls, param)
        if nodes is not None and nodes < 1:
            raise ColonyError(f"--nodes is at least 1, got {nodes}")
        for name, value in (("--safety-s", safety_s), ("--liveness-s", liveness_s)):
            if value is not None and value < 0:
                raise ColonyError(f"{name} is not negative, got {value:g}")
        if plot is not None:
            if plot.suffix.lower() not in (".png", ".svg", ".pdf"):
                raise ColonyError(f"--plot writes a .png, .svg or .pdf file, not {plot.name!r}")
            report.require_matplotlib()
    except ColonyError as exc:
        raise _fail(str(exc)) from None

    results = []
    try:
        for s in seed_list:
            spec = runner.RunSpec(
                scenario=cls.name,
                seed=s,
                nodes=nodes,
                faults=faults,
                params=params,
                safety_s=safety_s,
                liveness_s=liveness_s,
                stop_on_violation=not keep_going,
            )
            result = runner.run_seed(spec)
            results.append(result)
            if json_out:
                typer.echo(result.json_line())
                for line in report.replay_lines(result):
                    typer.echo(line, err=True)
                sys.stdout.flush()
        if not json_out:
            report.print_report(console, results, cls.headline)
        if plot is not None:
            report.plot_results(results, plot)
            if not json_out:
                console.print(f"plot: {plot}")
    except ColonyError as exc:
        raise _fail(str(exc)) from None
    if any(not r.ok for r in results):
        raise typer.Exit(EXIT_VIOLATION)
