"""Process commands: submit, ps, get (the end-to-end issue adds run, wait, logs, cancel)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from colonynode.cli.node_cmds import DataDirOpt, JsonOpt, _client, _print_json
from colonynode.core.errors import ColonyError

__all__ = ["register"]


def _read_spec(path: str) -> Any:
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ColonyError(f"cannot read spec file {file}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ColonyError(f"{file}:{exc.lineno}: not JSON: {exc.msg}") from None
    from colonynode.core.process import parse_spec

    parse_spec(data)  # refuse a bad spec here, with the field named, before any network
    return data


def submit(
    spec_file: str = typer.Argument(..., help="A ColonyOS function spec, as JSON."),
    data_dir: str | None = DataDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Submit a process; prints its id once a majority of voters holds it."""
    spec = _read_spec(spec_file)  # checked before the daemon is even looked for
    proc = _client(data_dir).post("/v1/processes", {"spec": spec})
    if as_json:
        _print_json(proc)
    else:
        typer.echo(proc["processid"])


def ps(
    state: str | None = typer.Option(None, "--state", help="WAITING, RUNNING, SUCCESS, ..."),
    limit: int = typer.Option(100, "--limit"),
    data_dir: str | None = DataDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Processes this node knows of, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if state:
        params["state"] = state
    rows = _client(data_dir).get("/v1/processes", **params)
    if as_json:
        _print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("process id", "state", "function", "executor type", "submitted")
    for p in rows:
        table.add_row(
            p["processid"],
            p["state"],
            p["spec"]["funcname"],
            p["spec"]["conditions"]["executortype"],
            p["submissiontime"] or "",
        )
    Console().print(table)


def get(
    pid: str = typer.Argument(..., help="The process id."),
    consistent: bool = typer.Option(False, "--consistent", help="Read a majority of voters."),
    data_dir: str | None = DataDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """One process."""
    params = {"consistent": "1"} if consistent else {}
    proc = _client(data_dir).get(f"/v1/processes/{pid}", **params)
    if as_json:
        _print_json(proc)
        return
    for key in ("processid", "state", "epoch", "retries", "executor", "output", "errors",
                "submissiontime", "starttime", "endtime"):  # fmt: skip
        typer.echo(f"{key:15s} {proc.get(key)}")
    typer.echo(f"{'function':15s} {proc['spec']['funcname']}({proc['spec']['args']})")


def register(app: typer.Typer) -> None:
    app.command("submit")(submit)
    app.command("ps")(ps)
    app.command("get")(get)
