"""Colony and node commands: init, start, join, invite, status, members, remove-member, voters.

`init`, `start` and `join` run in this process; the others talk to the running daemon of
the same data dir through its local API (they import no libp2p and no trio).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
from typing import Any

import typer

from colonynode.core.errors import ColonyError

__all__ = ["register"]

DataDirOpt = typer.Option(
    None,
    "--data-dir",
    "-d",
    envvar="COLONYNODE_HOME",
    help="The node's data directory [env: COLONYNODE_HOME; default: the user data dir].",
)
NameOpt = typer.Option(None, "--name", help="This node's name in the colony.")
ListenOpt = typer.Option(
    None, "--listen", help="libp2p listen multiaddr (repeatable) [default: /ip4/0.0.0.0/tcp/0]."
)
ApiOpt = typer.Option(None, "--api", help="Local API HOST:PORT [default: 127.0.0.1:0].")
JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts.")
ColoniesPortOpt = typer.Option(
    None,
    "--colonies-port",
    help="Serve the Colonies-compatible API (pycolonies) on PORT (0: any free port; "
    "kept for the next start; 'off' to stop serving it).",
)
MdnsOpt = typer.Option(
    None,
    "--mdns/--no-mdns",
    help="Advertise this node and find the colony's members on the LAN (mDNS); kept for "
    "the next start.",
)
ColoniesHostOpt = typer.Option(
    "127.0.0.1", "--colonies-host", help="Address the Colonies API binds [default: 127.0.0.1]."
)


def _default_name() -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip("-._") or "node"
    return name[:40]


def _colonies(settings: Any, port: str | None, host: str) -> None:
    """`--colonies-port` turns the gateway on (kept in node.json); `off` turns it off."""
    if port is None:
        return
    if port == "off":
        settings.colonies = None
        return
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ColonyError(f"--colonies-port {port!r} is not a port (0-65535) or 'off'")
    settings.colonies = f"{host}:{int(port)}"


def _settings(data_dir: str | None, name: str | None, listen: list[str] | None, api: str | None):  # type: ignore[no-untyped-def]
    from colonynode.node.datadir import DataDir, NodeSettings, resolve_data_dir

    dd = DataDir(resolve_data_dir(data_dir))
    settings = dd.load_settings() or NodeSettings(name=name or _default_name())
    if name:
        settings.name = name
    if listen:
        settings.listen = list(listen)
    if api:
        settings.api = api
    return dd, settings


def init(
    colony: str = typer.Option(..., "--colony", help="The new colony's name."),
    data_dir: str | None = DataDirOpt,
    name: str | None = NameOpt,
    listen: list[str] | None = ListenOpt,
    api: str | None = ApiOpt,
    voters: str = typer.Option(
        "auto",
        "--voters",
        help="auto: the owner's node keeps 1, 3 or 5 voters among the"
        " members up (`voters auto`); pinned: only `voters set` changes them.",
    ),
) -> None:
    """Create a colony: this node becomes its owner and first voter."""
    from colonynode.core.codec import to_wire
    from colonynode.core.roster import check_name, genesis_roster, sign_roster
    from colonynode.storage.lmdb_store import LmdbStore

    check_name("colony", colony)
    dd, settings = _settings(data_dir, name, listen, api)
    check_name("node", settings.name)
    if dd.has_identity() and settings.colony:
        raise ColonyError(f"{dd.path} already belongs to colony {settings.colony}")
    identity = dd.load_or_create_identity()
    store = LmdbStore(dd.path)
    try:
        if voters not in ("auto", "pinned"):
            raise ColonyError("--voters is auto or pinned")
        mode = {"voters": "auto"} if voters == "auto" else {}
        env = sign_roster(identity, genesis_roster(identity, colony, settings.name, mode))
        store.apply([("membership", b"roster", to_wire(env))], sync=True)
    finally:
        store.close()
    settings.colony = colony
    settings.owner_peer_id = identity.peer_id
    dd.save_settings(settings)
    typer.echo(f"created colony {colony} owned by {settings.name} ({identity.peer_id})")
    typer.echo(f"start it with: colonynode start --data-dir {dd.path}")


def start(
    data_dir: str | None = DataDirOpt,
    name: str | None = NameOpt,
    listen: list[str] | None = ListenOpt,
    api: str | None = ApiOpt,
    colonies_port: str | None = ColoniesPortOpt,
    colonies_host: str = ColoniesHostOpt,
    mdns: bool | None = MdnsOpt,
) -> None:
    """Run this node's daemon in the foreground (Ctrl-C stops it cleanly)."""
    from colonynode.node.daemon import run_daemon
    from colonynode.node.logs import setup_logging

    dd, settings = _settings(data_dir, name, listen, api)
    _colonies(settings, colonies_port, colonies_host)
    if mdns is not None:
        settings.mdns = mdns
    dd.load_identity()  # one-line error pointing to init/join when there is none
    if colonies_port is not None or mdns is not None:
        dd.save_settings(settings)
    setup_logging()
    run_daemon(dd.path, settings, None)


def join(
    addr: str = typer.Argument(
        "", help="A member's multiaddr, ending in /p2p/<peer id> (none with --mdns)."
    ),
    invite: str = typer.Option(..., "--invite", help="The token from `colonynode invite`."),
    data_dir: str | None = DataDirOpt,
    name: str | None = NameOpt,
    listen: list[str] | None = ListenOpt,
    api: str | None = ApiOpt,
    colonies_port: str | None = ColoniesPortOpt,
    colonies_host: str = ColoniesHostOpt,
    mdns: bool | None = MdnsOpt,
) -> None:
    """Join a colony with an invite, then run the daemon like `start`. With --mdns and
    no address, through the first member of the invite's colony found on the LAN."""
    from colonynode.core.invite import parse_invite
    from colonynode.node.daemon import run_daemon
    from colonynode.node.logs import setup_logging

    parse_invite(invite)  # a damaged or forged token fails here, before anything is created
    if not addr and not mdns:
        raise ColonyError("give a member's multiaddr, or --mdns to find one on the LAN")
    dd, settings = _settings(data_dir, name, listen, api)
    _colonies(settings, colonies_port, colonies_host)
    if mdns is not None:
        settings.mdns = mdns
    created = not dd.has_identity()
    fresh_settings = dd.load_settings() is None
    dd.load_or_create_identity()
    setup_logging()
    try:
        run_daemon(dd.path, settings, (addr, invite))
    except ColonyError:
        if created:  # leave the data dir as it was: nothing changed on this side
            dd.identity_file.unlink(missing_ok=True)
            shutil.rmtree(dd.store_path, ignore_errors=True)
        if fresh_settings:
            dd.settings_file.unlink(missing_ok=True)
        raise


def _client(data_dir: str | None):  # type: ignore[no-untyped-def]
    from colonynode.node.apiclient import ApiClient

    return ApiClient.for_data_dir(data_dir)


_TTL = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")


def parse_ttl(text: str) -> float:
    m = _TTL.match(text.strip())
    if not m:
        raise typer.BadParameter(f"{text!r} is not a duration like 90s, 30m, 1h or 2d")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def invite(
    roles: str = typer.Option("executor,submitter", "--roles", help="Comma-separated roles."),
    ttl: str = typer.Option("1h", "--ttl", help="How long the invite is valid (90s, 30m, 1h)."),
    data_dir: str | None = DataDirOpt,
) -> None:
    """Issue a single-use invite (owner only). The last line printed is the token."""
    wanted = [r.strip() for r in roles.split(",") if r.strip()]
    reply = _client(data_dir).post("/v1/invites", {"roles": wanted, "ttl_s": parse_ttl(ttl)})
    typer.echo(f"invite for roles {','.join(wanted) or '(none)'}, valid {ttl}:", err=True)
    typer.echo(reply["token"])


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True))


def status(data_dir: str | None = DataDirOpt, as_json: bool = JsonOpt) -> None:
    """This node's identity, colony, addresses and connections."""
    st = _client(data_dir).get("/v1/status")
    if as_json:
        _print_json(st)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None)
    for key in ("name", "peer_id", "colony", "owner", "voter", "roles", "roster_version"):
        table.add_row(key, str(st.get(key)))
    table.add_row("members", f"{st['members']} ({st['connected_peers']} connected)")
    for addr in st["addrs"]:
        table.add_row("addr", addr)
    table.add_row("api", st["api"])
    table.add_row("counters", ", ".join(f"{k}={v}" for k, v in st["counters"].items()))
    Console().print(table)


def members(data_dir: str | None = DataDirOpt, as_json: bool = JsonOpt) -> None:
    """The colony's roster as this node holds it."""
    rows = _client(data_dir).get("/v1/members")
    if as_json:
        _print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "peer id", "roles", "voter", "connected")
    for m in rows:
        name = m["name"] + (" (owner)" if m.get("owner") else "") + (" *" if m.get("self") else "")
        table.add_row(
            name,
            m["peer_id"],
            ",".join(m["roles"]),
            "yes" if m["voter"] else "",
            "self" if m.get("self") else ("yes" if m.get("connected") else "no"),
        )
    Console().print(table)


def peers(data_dir: str | None = DataDirOpt, as_json: bool = JsonOpt) -> None:
    """Known and connected peers."""
    rows = _client(data_dir).get("/v1/peers")
    if as_json:
        _print_json(rows)
        return
    import time

    from rich.console import Console
    from rich.table import Table

    table = Table("name", "peer id", "connected", "last seen", "address")
    for p in rows:
        last = p["last_seen"]
        ago = "never" if last is None else f"{max(0.0, time.time() - last):.0f} s ago"
        table.add_row(
            p["name"] or "(not a member)",
            p["peer_id"],
            "yes" if p["connected"] else "no",
            ago,
            p["addrs"][0] if p["addrs"] else "",
        )
    Console().print(table)


def remove_member(
    member: str = typer.Argument(..., help="The member's name or peer id."),
    data_dir: str | None = DataDirOpt,
) -> None:
    """Remove a member from the colony (owner only); its connections are closed."""
    reply = _client(data_dir).post("/v1/members/remove", {"member": member})
    typer.echo(f"removed {reply['removed']} (roster v{reply['roster_version']})")


gossip_app = typer.Typer(help="Gossip records: publish one, list what this node holds.",
                         no_args_is_help=True)  # fmt: skip


@gossip_app.command("publish")
def gossip_publish(
    kind: str = typer.Argument(..., help="The record's kind (e.g. note)."),
    body: str = typer.Argument("null", help="The record's body, as JSON."),
    data_dir: str | None = DataDirOpt,
) -> None:
    """Publish a signed record to every member."""
    try:
        value = json.loads(body)
    except ValueError:
        raise typer.BadParameter(f"body is not JSON: {body!r}") from None
    reply = _client(data_dir).post("/v1/records", {"kind": kind, "body": value})
    typer.echo(f"published {reply['kind']} #{reply['seq']} by {reply['author']}")


@gossip_app.command("ls")
def gossip_ls(
    kind: str | None = typer.Option(None, "--kind", help="Only records of this kind."),
    limit: int = typer.Option(100, "--limit", help="At most this many records."),
    data_dir: str | None = DataDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Records this node holds, newest first per author."""
    params: dict[str, Any] = {"limit": limit}
    if kind:
        params["kind"] = kind
    rows = _client(data_dir).get("/v1/records", **params)
    if as_json:
        _print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("author", "seq", "kind", "body")
    for r in rows:
        table.add_row(r["author"][-6:], str(r["seq"]), r["kind"], json.dumps(r["body"])[:60])
    Console().print(table)


voters_app = typer.Typer(help="The colony's voters (1, 3 or 5).", no_args_is_help=True)


@voters_app.command("set")
def voters_set(
    names: list[str] = typer.Argument(..., help="1, 3 or 5 member names or peer ids."),
    data_dir: str | None = DataDirOpt,
) -> None:
    """Make these members the colony's voters, pinned (owner only; ends `voters auto`)."""
    reply = _client(data_dir).post("/v1/voters", {"voters": names})
    typer.echo(f"voters: {' '.join(reply['voters'])} (roster v{reply['roster_version']})")


@voters_app.command("auto")
def voters_auto(
    never: list[str] = typer.Option(
        [], "--never", help="A member that never votes (a laptop that sleeps); repeatable."
    ),
    grace_s: float | None = typer.Option(
        None, "--grace-s", help="How long a voter may be away before it is replaced (60)."
    ),
    data_dir: str | None = DataDirOpt,
) -> None:
    """Let the owner's node keep 1, 3 or 5 voters among the members up, replacing one
    away past the grace period (owner only; `voters set` pins them again)."""
    body: dict[str, Any] = {"auto": True, "grace_s": grace_s}
    if never:
        body["never"] = never
    reply = _client(data_dir).post("/v1/voters", body)
    skip = f"; never: {', '.join(reply['never_vote'])}" if reply["never_vote"] else ""
    typer.echo(f"voters: auto, replaced after {reply['grace_s']:g} s away{skip}"
               f" (roster v{reply['roster_version']})")  # fmt: skip


gateway_app = typer.Typer(help="The Colonies-compatible API (pycolonies).", no_args_is_help=True)


@gateway_app.command("env")
def gateway_env(data_dir: str | None = DataDirOpt, as_json: bool = JsonOpt) -> None:
    """Print the exports pycolonies programs need: eval "$(colonynode gateway env)"."""
    import shlex

    env = _client(data_dir).post("/v1/colonies/env", {})
    if as_json:
        _print_json(env)
        return
    for key, value in env.items():
        typer.echo(f"export {key}={shlex.quote(str(value))}")


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("start")(start)
    app.command("join")(join)
    app.command("invite")(invite)
    app.command("status")(status)
    app.command("members")(members)
    app.command("peers")(peers)
    app.command("remove-member")(remove_member)
    app.add_typer(voters_app, name="voters")
    app.add_typer(gossip_app, name="gossip")
    app.add_typer(gateway_app, name="gateway")
