"""The command groups of `colonynode`. Each later issue adds its module here."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Attach every command module to the root app."""
    from colonynode.cli import node_cmds

    node_cmds.register(app)
    from colonynode.cli import process_cmds

    process_cmds.register(app)
    from colonynode.cli import cron_cmds

    cron_cmds.register(app)
    from colonynode.cli import generator_cmds

    generator_cmds.register(app)
    from colonynode.cli import fs_cmds

    fs_cmds.register(app)
    from colonynode.cli import watch_cmds

    watch_cmds.register(app)
    from colonynode.cli import simulate as _simulate

    app.command("simulate")(_simulate.simulate)
