"""Cron commands, with ColonyOS's names: cron add | ls | get | rm | run."""

from __future__ import annotations

from typing import Any

import typer

from colonynode.cli.node_cmds import DataDirOpt, JsonOpt, _print_json
from colonynode.cli.process_cmds import _read_json, _sdk
from colonynode.core.errors import ValidationError

__all__ = ["register"]

cron_app = typer.Typer(help="Crons: workflows submitted on a schedule, once a tick.",
                       no_args_is_help=True)  # fmt: skip


def _workflow(data: Any) -> dict[str, Any]:
    """A WorkflowSpec, or one function spec as a one-step workflow; checked here."""
    from colonynode.core.process import parse_spec, parse_workflow

    if isinstance(data, dict) and "functionspecs" in data:
        parse_workflow(data)
        return dict(data)
    if isinstance(data, list):
        workflow: dict[str, Any] = {"functionspecs": data}
        parse_workflow(workflow)
        return workflow
    parse_spec(data)  # a ValidationError names the field
    step = {**data, "nodename": data.get("nodename") or data.get("funcname") or "step"}
    return {"functionspecs": [step]}


@cron_app.command("add")
def add(
    name: str = typer.Option(..., "--name", help="The cron's name."),
    spec: str = typer.Option(..., "--spec", help="A workflow (or function spec) as JSON."),
    cron: str = typer.Option("", "--cron", help="Six fields, seconds first: '0/5 * * * * *'."),
    interval: int = typer.Option(-1, "--interval", help="Fire every this many seconds."),
    random: bool = typer.Option(False, "--random", help="At a random moment in each interval."),
    waitprevious: bool = typer.Option(
        False, "--waitprevious", help="Skip a tick while the previous graph still runs."
    ),
    data_dir: str | None = DataDirOpt,
) -> None:
    """Add a cron; prints its id once a majority of voters holds it."""
    from colonynode.core.cron import parse_schedule

    if not cron and interval == -1:
        raise ValidationError("give --cron EXPR or --interval S")
    parse_schedule(cron, interval, random)  # the field named, before the daemon is asked
    workflow = _workflow(_read_json(spec))
    got = _sdk(data_dir).add_cron(name, workflow, cron=cron, interval_s=interval,
                                  random=random, wait_previous=waitprevious)  # fmt: skip
    typer.echo(got["cronid"])


@cron_app.command("ls")
def ls(data_dir: str | None = DataDirOpt, as_json: bool = JsonOpt) -> None:
    """The colony's crons (as this node knows them)."""
    rows = _sdk(data_dir).crons()
    if as_json:
        _print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("cron id", "name", "schedule", "next run", "last run")
    for c in rows:
        schedule = c["cronexpression"] or f"every {c['interval']} s" + (
            " (random)" if c["random"] else ""
        )
        table.add_row(c["cronid"], c["name"], schedule, c["nextrun"] or "", c["lastrun"] or "")
    Console().print(table)


@cron_app.command("get")
def get(
    cronid: str = typer.Argument(...), data_dir: str | None = DataDirOpt, as_json: bool = JsonOpt
) -> None:
    """A cron, with its next and last run and its last graph."""
    c = _sdk(data_dir).get_cron(cronid)
    if as_json:
        _print_json(c)
        return
    for key in ("cronid", "name", "cronexpression", "interval", "random",
                "waitforprevprocessgraph", "nextrun", "lastrun", "prevprocessgraphid",
                "initiatorname"):  # fmt: skip
        typer.echo(f"{key:24s} {c[key]}")


@cron_app.command("rm")
def rm(cronid: str = typer.Argument(...), data_dir: str | None = DataDirOpt) -> None:
    """Remove a cron: no tick fires after every node has heard."""
    _sdk(data_dir).remove_cron(cronid)
    typer.echo(f"removed cron {cronid}")


@cron_app.command("run")
def run(cronid: str = typer.Argument(...), data_dir: str | None = DataDirOpt) -> None:
    """Fire a cron now; prints the process graph's id."""
    typer.echo(_sdk(data_dir).run_cron(cronid)["processgraphid"])


def register(app: typer.Typer) -> None:
    app.add_typer(cron_app, name="cron")
