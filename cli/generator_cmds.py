"""Generator commands, with ColonyOS's names: generator add | pack | ls | get | rm."""

from __future__ import annotations

import typer

from colonynode.cli.cron_cmds import _workflow
from colonynode.cli.node_cmds import DataDirOpt, JsonOpt, _print_json
from colonynode.cli.process_cmds import _read_json, _sdk
from colonynode.core.errors import ValidationError

__all__ = ["register"]

generator_app = typer.Typer(help="Generators: a workflow every TRIGGER packed args.",
                            no_args_is_help=True)  # fmt: skip


@generator_app.command("add")
def add(
    name: str = typer.Option(..., "--name", help="The generator's name."),
    spec: str = typer.Option(..., "--spec", help="A workflow (or function spec) as JSON."),
    trigger: int = typer.Option(..., "--trigger", help="Submit once this many args are packed."),
    timeout: float = typer.Option(
        -1, "--timeout", help="Or once the oldest packed arg waited this many seconds."
    ),
    data_dir: str | None = DataDirOpt,
) -> None:
    """Add a generator; prints its id once a majority of voters holds it."""
    if trigger < 1:
        raise ValidationError("trigger: a whole number of args, at least 1")
    if timeout == 0 or timeout < -1:
        raise ValidationError("timeout: seconds > 0 (or -1: wait for trigger args)")
    workflow = _workflow(_read_json(spec))
    got = _sdk(data_dir).add_generator(name, workflow, trigger=trigger, timeout_s=timeout)
    typer.echo(got["generatorid"])


@generator_app.command("pack")
def pack(
    generatorid: str = typer.Argument(...),
    arg: str = typer.Argument(..., help="The arg, a string."),
    data_dir: str | None = DataDirOpt,
) -> None:
    """Queue an arg; prints its id once a majority of voters holds it."""
    typer.echo(_sdk(data_dir).pack(generatorid, arg)["argid"])


@generator_app.command("ls")
def ls(data_dir: str | None = DataDirOpt, as_json: bool = JsonOpt) -> None:
    """The colony's generators (as this node knows them)."""
    rows = _sdk(data_dir).generators()
    if as_json:
        _print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("generator id", "name", "trigger", "timeout s", "queued", "used")
    for g in rows:
        table.add_row(g["generatorid"], g["name"], str(g["trigger"]), str(g["timeout"]),
                      str(g["queued"]), str(g["used"]))  # fmt: skip
    Console().print(table)


@generator_app.command("get")
def get(
    generatorid: str = typer.Argument(...),
    data_dir: str | None = DataDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """A generator, with its queue and the graphs it started."""
    g = _sdk(data_dir).get_generator(generatorid)
    if as_json:
        _print_json(g)
        return
    for key in ("generatorid", "name", "trigger", "timeout", "queued", "used",
                "processgraphids", "initiatorname"):  # fmt: skip
        typer.echo(f"{key:16s} {g[key]}")


@generator_app.command("rm")
def rm(generatorid: str = typer.Argument(...), data_dir: str | None = DataDirOpt) -> None:
    """Remove a generator."""
    _sdk(data_dir).remove_generator(generatorid)
    typer.echo(f"removed generator {generatorid}")


def register(app: typer.Typer) -> None:
    app.add_typer(generator_app, name="generator")
