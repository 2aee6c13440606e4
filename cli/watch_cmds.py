"""Watching the colony: `colonynode top` (a live view in the terminal) and `colonynode
dashboard` (the web page the node serves at /ui, node/daemon/ui.py)."""

from __future__ import annotations

import time
from typing import Any

import typer

from colonynode.cli.node_cmds import DataDirOpt, _client

__all__ = ["register"]

CLOSED = ("SUCCESS", "FAILED", "CANCELLED")


class _Rate:
    """Processes closed a second, between two frames."""

    def __init__(self) -> None:
        self.last: tuple[float, int] | None = None

    def __call__(self, closed: int) -> float | None:
        now = time.monotonic()
        last, self.last = self.last, (now, closed)
        if last is None or now <= last[0]:
            return None
        return max(0.0, (closed - last[1]) / (now - last[0]))


def _frame(client: Any, rate: _Rate) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    st = client.get("/v1/status")
    members = client.get("/v1/members")
    counts = client.get("/v1/processes/counts")
    head = Text.assemble(
        (f"{st['name']}", "bold"),
        f" in colony {st['colony']} · roster v{st['roster_version']}"
        f" · {st['connected_peers']} of {len(members) - 1} members connected"
        f" · up {st['uptime_s']:.0f} s",
    )
    # (a node links to the voters and a sample of the others, not to everyone: a member
    # not linked here may well be up; node/core/peerset.py)
    table = Table("member", "link", "roles", "voter")
    for m in members:
        state = "self" if m.get("self") else ("linked" if m.get("connected") else "not linked")
        name = m["name"] + (" (owner)" if m.get("owner") else "")
        style = {"self": "bold", "linked": "green", "not linked": "dim"}[state]
        table.add_row(name, Text(state, style=style), ",".join(m["roles"]),
                      "yes" if m["voter"] else "")  # fmt: skip
    va = st.get("voters_auto", {})
    voters = ", ".join(m["name"] for m in members if m["voter"])
    mode = f"auto, grace {va.get('grace_s', 0):g} s" if va.get("auto") else "pinned"
    sched = st.get("scheduler", {})
    per_s = rate(sum(counts.get(s, 0) for s in CLOSED))
    procs = " · ".join(f"{k.lower()} {v}" for k, v in counts.items())
    return Group(
        head,
        table,
        Text(f"voters: {voters} ({mode})"),
        Text(
            f"executors here: {sched.get('executors', 0)}, idle slots {sched.get('idle_slots', 0)}"
        ),
        Text(f"processes: {procs} · closed/s {'-' if per_s is None else f'{per_s:.1f}'}"),
    )


def top(
    data_dir: str | None = DataDirOpt,
    once: bool = typer.Option(False, "--once", help="Print one frame and exit."),
    interval_s: float = typer.Option(1.0, "--interval", min=0.2, help="Seconds between frames."),
) -> None:
    """A live view of the colony: members and their state, voters, executors and slots,
    processes by state and closed per second (Ctrl-C ends it)."""
    from rich.console import Console
    from rich.live import Live

    client = _client(data_dir)
    rate = _Rate()
    if once:
        Console().print(_frame(client, rate))
        return
    with Live(_frame(client, rate), auto_refresh=False) as live:
        try:
            while True:
                time.sleep(interval_s)
                live.update(_frame(client, rate), refresh=True)
        except KeyboardInterrupt:
            pass


def dashboard(
    data_dir: str | None = DataDirOpt,
    print_only: bool = typer.Option(False, "--print", help="Print the URL, open nothing."),
) -> None:
    """Open the node's web dashboard (served at /ui by its local API) in a browser. The
    URL carries the API token in its fragment, which the browser never sends."""
    import webbrowser

    client = _client(data_dir)  # a clear error if no daemon runs here
    url = f"{client.url}/ui#token={client.token}"
    if print_only or not webbrowser.open(url):
        typer.echo(url)


def register(app: typer.Typer) -> None:
    app.command("top")(top)
    app.command("dashboard")(dashboard)
