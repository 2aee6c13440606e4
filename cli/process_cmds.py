"""Process commands: submit (a spec or a workflow), run, ps, get, wait, logs, cancel."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from colonynode.cli.node_cmds import DataDirOpt, JsonOpt, _client, _print_json
from colonynode.core.errors import ColonyError

__all__ = ["register"]

TimeoutOpt = typer.Option(60.0, "--timeout", help="Give up waiting after this many seconds.")


def _sdk(data_dir: str | None):  # type: ignore[no-untyped-def]
    from colonynode.sdk.client import Client

    return Client(data_dir)


def _read_json(path: str) -> Any:
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ColonyError(f"cannot read spec file {file}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ColonyError(f"{file}:{exc.lineno}: not JSON: {exc.msg}") from None


def _is_workflow(data: Any) -> bool:
    return isinstance(data, dict) and "functionspecs" in data


@contextmanager
def _spinner(text: str) -> Iterator[None]:
    """A spinner on stderr while waiting, for people (nothing when stderr is not a tty)."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(text):
        yield


def submit(
    spec_file: str = typer.Argument(..., help="A ColonyOS function spec or workflow, as JSON."),
    wait_: bool = typer.Option(False, "--wait", help="Wait for the result and print it."),
    timeout: float = TimeoutOpt,
    data_dir: str | None = DataDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Submit a process (or a workflow: {"functionspecs": [...]}); prints its id once a
    majority of voters holds it."""
    from colonynode.core.process import parse_spec, parse_workflow

    data = _read_json(spec_file)
    # Checked here, with the field named, before the daemon is even looked for.
    if _is_workflow(data):
        parse_workflow(data)
        _submit_workflow(data, wait_, timeout, data_dir, as_json)
        return
    parse_spec(data)
    client = _sdk(data_dir)
    proc = client.submit(data)
    if wait_:
        _print_result(_wait(client, proc["processid"], timeout), as_json)
    elif as_json:
        _print_json(proc)
    else:
        typer.echo(proc["processid"])


def _submit_workflow(
    data: Any, wait_: bool, timeout: float, data_dir: str | None, as_json: bool
) -> None:
    client = _sdk(data_dir)
    graph = client.submit_workflow(data)
    procs = graph["processes"]
    if wait_:
        import time

        deadline = time.monotonic() + timeout
        procs = [_wait(client, p["processid"], max(0.0, deadline - time.monotonic()))
                 for p in procs]  # fmt: skip
        graph = {**graph, "processes": procs}
    if as_json:
        _print_json(graph)
    else:
        typer.echo(f"workflow {graph['processgraphid']}")
        for p in procs:
            line = f"{p['spec']['nodename']:20s} {p['processid']} {p['state']}"
            if wait_:
                line += "  " + (json.dumps(p["output"]) if p["state"] == "SUCCESS"
                                else "; ".join(p["errors"]))  # fmt: skip
            typer.echo(line)
    if wait_ and any(p["state"] != "SUCCESS" for p in procs):
        raise typer.Exit(1)


def ps(
    state: str | None = typer.Option(None, "--state", help="WAITING, RUNNING, SUCCESS, ..."),
    executortype: str | None = typer.Option(None, "--executortype"),
    funcname: str | None = typer.Option(None, "--funcname"),
    label: str | None = typer.Option(None, "--label"),
    graph: str | None = typer.Option(None, "--workflow", help="A workflow's processgraphid."),
    cronid: str | None = typer.Option(None, "--cron", help="Started by this cron."),
    generatorid: str | None = typer.Option(None, "--generator", help="Started by this generator."),
    limit: int = typer.Option(100, "--limit"),
    offset: int = typer.Option(0, "--offset", help="Skip this many (paging)."),
    data_dir: str | None = DataDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Processes this node knows of, newest first."""
    filters = {"executortype": executortype, "funcname": funcname, "label": label,
               "processgraphid": graph, "cronid": cronid,
               "generatorid": generatorid}  # fmt: skip
    rows = _sdk(data_dir).list(state, limit, offset, **{k: v for k, v in filters.items() if v})
    if as_json:
        _print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("process id", "state", "function", "executor type", "executor", "submitted")
    for p in rows:
        table.add_row(
            p["processid"],
            p["state"],
            p["spec"]["funcname"],
            p["spec"]["conditions"]["executortype"],
            p["executor"] or "",
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
    proc = _sdk(data_dir).get(pid, consistent=consistent)
    if as_json:
        _print_json(proc)
        return
    for key in ("processid", "state", "epoch", "retries", "executor", "output", "errors",
                "submissiontime", "starttime", "endtime"):  # fmt: skip
        typer.echo(f"{key:15s} {proc.get(key)}")
    typer.echo(f"{'function':15s} {proc['spec']['funcname']}({proc['spec']['args']})")
    if proc.get("processgraphid"):
        typer.echo(f"{'workflow':15s} {proc['processgraphid']} step {proc['spec']['nodename']}")
        typer.echo(f"{'parents':15s} {', '.join(proc['parents']) or '-'}")
        typer.echo(f"{'input':15s} {proc['input']}")
    for attr in proc.get("attributes") or ():
        typer.echo(f"{'attribute':15s} {attr['key']} = {attr['value']}")


def wait(
    pid: str = typer.Argument(..., help="The process id."),
    timeout: float = TimeoutOpt,
    data_dir: str | None = DataDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Wait until a process is closed; print its output (exit 1 if it failed)."""
    _print_result(_wait(_sdk(data_dir), pid, timeout), as_json)


def _wait(client: Any, pid: str, timeout: float) -> Any:
    with _spinner(f"waiting for {pid}"):
        return client.wait(pid, timeout)


def _print_result(proc: Any, as_json: bool) -> None:
    if as_json:
        _print_json(proc)
    elif proc["state"] == "SUCCESS":
        typer.echo(json.dumps(proc["output"]))
    else:
        typer.echo(f"{proc['state']}: {'; '.join(proc['errors'])}", err=True)
    if proc["state"] != "SUCCESS":
        raise typer.Exit(1)


def logs(
    pid: str = typer.Argument(..., help="The process id."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until it closes."),
    data_dir: str | None = DataDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The lines a process's function printed or logged, from any node."""
    for line in _sdk(data_dir).logs(pid, follow=follow):
        if as_json:
            typer.echo(json.dumps(line, sort_keys=True))
        else:
            typer.echo(f"[{line['executor']}] {line['message']}")


def cancel(
    pid: str = typer.Argument(..., help="The process id."),
    data_dir: str | None = DataDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Cancel a process, waiting or running (from the node that submitted it, or the
    owner's); a running function is told to stop and its result is refused."""
    result = _sdk(data_dir).cancel(pid)
    if as_json:
        _print_json(result)
    elif result["cancelled"]:
        typer.echo(f"cancelled {pid}")
    else:
        raise ColonyError(f"process {pid} was not cancelled: it is {result['state']}"
                          f" ({result['reason'] or 'no majority answered'})")  # fmt: skip


def run(
    funcname: str = typer.Argument(..., help="The function to run."),
    args: list[str] = typer.Argument(None, help="Arguments (JSON values; else strings)."),
    executortype: str = typer.Option(..., "--executortype", help="Which executors may run it."),
    maxexectime: int = typer.Option(-1, "--maxexectime"),
    maxretries: int = typer.Option(0, "--maxretries"),
    priority: int = typer.Option(0, "--priority"),
    wait_: bool = typer.Option(False, "--wait", help="Wait for the result and print it."),
    timeout: float = TimeoutOpt,
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
    client = _sdk(data_dir)
    if not wait_:
        typer.echo(client.submit(spec)["processid"])
        return
    deadline = time.monotonic() + timeout
    with _spinner("running"):  # one request submits and waits (up to its long-poll)
        proc = client.submit(spec, wait_s=timeout)
    if proc["state"] not in ("SUCCESS", "FAILED", "CANCELLED"):
        proc = _wait(client, proc["processid"], max(0.0, deadline - time.monotonic()))
    _print_result(proc, as_json)


executor_app = typer.Typer(help="Executors: serve functions through a node.", no_args_is_help=True)


@executor_app.command("run")
def executor_run(
    functions_file: str = typer.Argument(..., help="A Python file of @function's."),
    executortype: str = typer.Option(..., "--type", help="The executor type it serves."),
    name: str | None = typer.Option(None, "--name", help="The executor's name."),
    max_processes: int | None = typer.Option(None, "--max-processes", help="Stop after N."),
    in_process: bool = typer.Option(
        False,
        "--in-process",
        help="Call the functions on threads of this process instead of a worker process"
        " (faster to start, but a run past maxexectime or cancelled cannot be killed).",
    ),
    concurrency: int | None = typer.Option(
        None,
        "--concurrency",
        "-c",
        min=1,
        max=256,
        help="Calls run at once, each in a worker process of its own (default: the"
        " machine's cores).",
    ),
    fs_dir: str | None = typer.Option(
        None,
        "--fs-dir",
        help="The root of the specs' ColonyFS dirs, synced before and after each run, and"
        " the functions' working directory (default: fs/ in the data dir).",
    ),
    data_dir: str | None = DataDirOpt,
) -> None:
    """Serve a file's functions through the node of --data-dir until interrupted."""
    import os
    from pathlib import Path

    from colonynode.node.datadir import resolve_data_dir
    from colonynode.node.logs import setup_logging
    from colonynode.sdk.executor import Executor
    from colonynode.sdk.functions import load_functions
    from colonynode.sdk.runners import ProcessRunner, Runner, ThreadRunner

    setup_logging()
    runner: Runner = (
        ThreadRunner(load_functions(functions_file)) if in_process
        else ProcessRunner(functions_file)
    )  # fmt: skip
    try:
        client = _client(data_dir)
        node_name = client.get("/v1/status")["name"]
        root = Path(fs_dir or resolve_data_dir(data_dir) / "fs").absolute()
        ex = Executor(client, runner, executortype, name or f"{node_name}-{executortype}",
                      concurrency=concurrency or os.cpu_count() or 1,
                      reconnect=lambda: _client(data_dir),
                      fs_dir=root)  # fmt: skip
    except BaseException:
        runner.close()
        raise
    typer.echo(f"executor {ex.name} serves {', '.join(runner.names)}"
               f" ({ex.concurrency} at once)", err=True)  # fmt: skip
    import signal

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)  # SIGTERM detaches cleanly, like Ctrl-C
    try:
        ex.run_forever(max_processes)
    except KeyboardInterrupt:
        pass


def register(app: typer.Typer) -> None:
    for name, fn in (("submit", submit), ("run", run), ("ps", ps), ("get", get),
                     ("wait", wait), ("logs", logs), ("cancel", cancel)):  # fmt: skip
        app.command(name)(fn)
    app.add_typer(executor_app, name="executor")
