"""The `colonynode` command.

Commands that only talk to a running daemon import nothing heavy (no libp2p, no trio):
each command module imports what it needs inside the command's function.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version

import typer

from colonynode.core.errors import ColonyError

__all__ = ["app", "main"]

app = typer.Typer(
    name="colonynode",
    help="A colony of peer-to-peer nodes that together form one compute unit.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def package_version() -> str:
    try:
        return version("colonynode")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"colonynode {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """A colony of peer-to-peer nodes that together form one compute unit."""


def _register() -> None:
    """Attach every command module's commands to `app` (import order = help order)."""
    from colonynode.cli import commands

    commands.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: expected failures print one line and exit non-zero, no traceback."""
    _register()
    try:
        app(args=argv, prog_name="colonynode", standalone_mode=True)
    except ColonyError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
