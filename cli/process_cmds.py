"""Process commands: submit, run, ps, get, wait, and `executor run`."""

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
    register_more(app)


def wait(
    pid: str = typer.Argument(..., help="The process id."),
    timeout: float = typer.Option(60.0, "--timeout", help="Give up after this many seconds."),
    data_dir: str | None = DataDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Wait until a process is closed; print its output (exit 1 if it failed)."""
    proc = _wait_closed(data_dir, pid, timeout)
    _print_result(proc, as_json)


def _wait_closed(data_dir: str | None, pid: str, timeout: float) -> Any:
    import time

    client = _client(data_dir)
    deadline = time.monotonic() + timeout
    while True:
        try:
            proc = client.get(f"/v1/processes/{pid}")
        except ColonyError:
            proc = None  # not gossiped here yet
        if proc is not None and proc["state"] in ("SUCCESS", "FAILED", "CANCELLED"):
            return proc
        if time.monotonic() > deadline:
            state = proc["state"] if proc else "unknown"
            raise ColonyError(f"process {pid} is still {state} after {timeout:.0f} s")
        time.sleep(0.1)


def _print_result(proc: Any, as_json: bool) -> None:
    if as_json:
        _print_json(proc)
    elif proc["state"] == "SUCCESS":
        typer.echo(json.dumps(proc["output"]))
    else:
        typer.echo(f"{proc['state']}: {'; '.join(proc['errors'])}", err=True)
    if proc["state"] != "SUCCESS":
        raise typer.Exit(1)


def run(
    funcname: str = typer.Argument(..., help="The function to run."),
    args: list[str] = typer.Argument(None, help="Arguments (JSON values; else strings)."),
    executortype: str = typer.Option(..., "--executortype", help="Which executors may run it."),
    maxexectime: int = typer.Option(-1, "--maxexectime"),
    maxretries: int = typer.Option(0, "--maxretries"),
    priority: int = typer.Option(0, "--priority"),
    wait_: bool = typer.Option(False, "--wait", help="Wait for the result and print it."),
    timeout: float = typer.Option(60.0, "--timeout"),
    data_dir: str | None = DataDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Submit one function call (a spec made from the command line)."""

    def value(text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            return text

    spec = {"funcname": funcname, "args": [value(a) for a in args or []],
            "maxexectime": maxexectime, "maxretries": maxretries, "priority": priority,
            "conditions": {"executortype": executortype}}  # fmt: skip
    from colonynode.core.process import parse_spec

    parse_spec(spec)
    proc = _client(data_dir).post("/v1/processes", {"spec": spec})
    if not wait_:
        typer.echo(proc["processid"])
        return
    _print_result(_wait_closed(data_dir, proc["processid"], timeout), as_json)


executor_app = typer.Typer(help="Executors: serve functions through a node.", no_args_is_help=True)


@executor_app.command("run")
def executor_run(
    functions_file: str = typer.Argument(..., help="A Python file of @function's."),
    executortype: str = typer.Option(..., "--type", help="The executor type it serves."),
    name: str | None = typer.Option(None, "--name", help="The executor's name."),
    max_processes: int | None = typer.Option(None, "--max-processes", help="Stop after N."),
    data_dir: str | None = DataDirOpt,
) -> None:
    """Serve a file's functions through the node of --data-dir until interrupted."""
    from colonynode.node.logs import setup_logging
    from colonynode.sdk.executor import Executor
    from colonynode.sdk.functions import load_functions

    functions = load_functions(functions_file)
    setup_logging()
    client = _client(data_dir)
    node_name = client.get("/v1/status")["name"]
    ex = Executor(client, functions, executortype, name or f"{node_name}-{executortype}")
    typer.echo(f"executor {ex.name} serves {', '.join(sorted(functions))}", err=True)
    try:
        ex.run_forever(max_processes)
    except KeyboardInterrupt:
        pass


def register_more(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("wait")(wait)
    app.add_typer(executor_app, name="executor")
