"""The readable report (rich tables) and the plot (matplotlib, an optional extra).

The runner measures `wall_s` and the report shows it; nothing here feeds back into a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from colonynode.core.errors import ColonyError
from colonynode.simulations.runner import RunResult
from colonynode.simulations.scenario import Metric, Scenario

__all__ = [
    "plot_results",
    "print_report",
    "print_scenarios",
    "replay_lines",
    "require_matplotlib",
]

PLOT_SEEDS_MAX = 20  # lines drawn on one plot


def _fmt(value: Metric) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return value


def replay_lines(result: RunResult) -> list[str]:
    """What a failed run prints: each violation with its seed and step, then the replay."""
    if result.ok:
        return []
    lines = [f"seed {result.spec.seed}: {v}" for v in result.violations]
    lines.append(f"replay: {result.replay}")
    return lines


def print_scenarios(console: Console, scenarios: Sequence[type[Scenario]]) -> None:
    table = Table(title="scenarios (the first runs when none is named)", title_justify="left")
    table.add_column("name", style="bold")
    table.add_column("nodes", justify="right")
    table.add_column("safety s", justify="right")
    table.add_column("liveness s", justify="right")
    table.add_column("parameters")
    table.add_column("description")
    for cls in scenarios:
        params = ", ".join(f"{k}={v!r}" for k, v in cls.params.items())
        table.add_row(
            cls.name,
            str(cls.default_nodes),
            f"{cls.safety_s:g}",
            f"{cls.liveness_s:g}",
            params or "-",
            cls.description,
        )
    console.print(table)


def _events_per_s(result: RunResult) -> float | None:
    """Events the queue ran (steps, and book-keeping) per second of wall time."""
    events = result.metrics.get("events")
    if not isinstance(events, int) or result.wall_s <= 0:
        return None
    return events / result.wall_s


def _single(console: Console, result: RunResult) -> None:
    spec = result.spec
    console.print(
        f"[bold]{spec.scenario}[/bold] · {result.nodes} nodes · seed {spec.seed} · "
        f"faults {spec.faults}"
    )
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("figure")
    table.add_column("value", justify="right", no_wrap=True)
    rows: list[tuple[str, Metric]] = [
        ("simulated_s", result.simulated_s),
        ("wall_s", result.wall_s),
        ("steps_per_wall_s", result.steps / result.wall_s if result.wall_s > 0 else None),
        ("events_per_wall_s", _events_per_s(result)),
        ("safety_s", result.safety_s),
        ("liveness_s", result.liveness_s),
    ]
    rows += [(name, result.metrics[name]) for name in sorted(result.metrics)]
    for name, value in rows:
        table.add_row(name, _fmt(value))
    console.print(table)


def _many(console: Console, results: Sequence[RunResult], headline: Sequence[str]) -> None:
    first = results[0]
    console.print(
        f"[bold]{first.spec.scenario}[/bold] · {first.nodes} nodes · {len(results)} seeds · "
        f"faults {first.spec.faults}"
    )
    headers = ["seed", "violations", "sim s", "wall s", "steps", "healed in s"]
    headers += [name.replace("_", " ") for name in headline]
    rows: list[list[str]] = []
    for r in results:
        converged = None if r.converged_s is None else r.converged_s - r.safety_s
        rows.append(
            [
                str(r.spec.seed),
                f"[red]{len(r.violations)}[/red]" if r.violations else "0",
                f"{r.simulated_s:.1f}",
                f"{r.wall_s:.2f}",
                _fmt(r.steps),
                "-" if converged is None else f"{converged:.1f}",
                *(_fmt(r.metrics.get(name)) for name in headline),
            ]
        )
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 0, 0, 2), pad_edge=False)
    for k, header in enumerate(headers):
        # Numbers are never cut: a column is at least as wide as its widest cell and
        # the longest word of its header; headers wrap at spaces instead.
        widest = max([len(row[k]) for row in rows if not row[k].startswith("[")] + [1])
        word = max(len(w) for w in header.split())
        table.add_column(header, justify="right", min_width=max(widest, word))
    for row in rows:
        table.add_row(*row)
    console.print(table)


def print_report(
    console: Console, results: Sequence[RunResult], headline: Sequence[str] = ()
) -> None:
    """One table for one seed (every figure), one row per seed for several."""
    if not results:
        return
    if len(results) == 1:
        _single(console, results[0])
    else:
        _many(console, results, headline)
    failed = [r for r in results if not r.ok]
    for r in failed:
        for line in replay_lines(r):
            style = "bold" if line.startswith("replay:") else "red"
            console.print(line, style=style, markup=False, highlight=False, soft_wrap=True)
    total_wall_s = sum(r.wall_s for r in results)
    verdict = (
        f"[red]{len(failed)} of {len(results)} seeds found violations[/red]"
        if failed
        else f"[green]all {len(results)} seeds held every checker[/green]"
    )
    console.print(f"{verdict} ({total_wall_s:.2f} s wall)")


def require_matplotlib() -> None:
    """ColonyError, in one line, when the optional plot extra is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ColonyError(
            "--plot needs matplotlib: pip install 'colonynode[plot]' (or pip install matplotlib)"
        ) from None


def plot_results(results: Sequence[RunResult], path: Path) -> None:
    """Draw the scenario's main figure over simulated time, one line per seed."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not results:
        return
    first = results[0]
    series = first.main_series or "nodes_up"
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for r in results[:PLOT_SEEDS_MAX]:
        times, values = r.series(series)
        ax.plot(times, values, linewidth=1.2, label=f"seed {r.spec.seed}")
        for v in r.violations:
            ax.axvline(v.time_s, color="red", linestyle=":", linewidth=1)
    ax.axvspan(
        first.safety_s,
        max(r.simulated_s for r in results),
        color="tab:green",
        alpha=0.08,
        label="liveness phase",
    )
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel(series.replace("_", " "))
    ax.set_title(
        f"{first.spec.scenario}: {first.nodes} nodes, faults {first.spec.faults}", loc="left"
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise ColonyError(f"cannot write the plot to {path}: {exc.strerror}") from None
    finally:
        plt.close(fig)
