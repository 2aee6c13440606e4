"""ColonyFS commands, with ColonyOS's names and flags: fs sync | ls | info | get | put | rm,
fs label ls | rm, fs snapshot create | ls | info | download | rm.

`-d` is a directory here, as in ColonyOS's `fs` commands, so the node's data dir is
`--data-dir` only (or COLONYNODE_HOME). Transfers run detached in the daemon and are
polled (sdk/fs.py), with a progress bar when stdout is a terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from colonynode.cli.node_cmds import JsonOpt, _print_json
from colonynode.core.errors import ColonyError

if TYPE_CHECKING:
    from colonynode.sdk.fs import Fs, OnProgress

__all__ = ["register"]

fs_app = typer.Typer(help="ColonyFS: files stored in the colony, by label.", no_args_is_help=True)
label_app = typer.Typer(help="Labels: the colony's folders.", no_args_is_help=True)
snapshot_app = typer.Typer(help="Snapshots: a label's files, frozen.", no_args_is_help=True)

DataDirOpt = typer.Option(
    None,
    "--data-dir",
    envvar="COLONYNODE_HOME",
    help="The node's data directory (default: $COLONYNODE_HOME or the user data dir).",
)
LabelOpt = typer.Option(..., "--label", "-l", help="A label, such as /data or /data/raw.")
NameOpt = typer.Option(..., "--name", "-n", help="A file's name in its label.")
SnapshotOpt = typer.Option(..., "--name", "-n", help="The snapshot's name.")
SnapshotRefOpt = typer.Option(..., "--name", "-n", help="The snapshot's name (or snapshotid).")
DirOpt = typer.Option(..., "--dir", "-d", help="A local directory (made if missing).")
YesOpt = typer.Option(False, "--yes", help="Do not ask for confirmation.")


def _fs(data_dir: str | None) -> Fs:
    from colonynode.sdk.client import Client

    return Client(data_dir).fs


def _abs(path: str) -> str:
    from colonynode.sdk.fs import absolute

    return absolute(path)


def _root(label: str) -> str:
    """A label as the node spells it (a leading '/', no trailing one), or the node's own
    one-line refusal of it."""
    from colonynode.node.core.fs import check_label

    return check_label(label)


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _when(ns: int) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")


def _size(n: int) -> str:
    from rich.filesize import decimal

    return decimal(n)


def _print_pairs(pairs: list[tuple[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None)
    table.add_column()
    table.add_column(overflow="fold")  # a long label or path wraps, whole
    for key, value in pairs:
        table.add_row(key, str(value))
    Console().print(table)


def _print_revision(rev: dict[str, Any]) -> None:
    _print_pairs(
        [
            ("label", rev["label"]),
            ("name", rev["name"]),
            ("fileid", rev["fileid"]),
            ("revision", rev["seq"]),
            ("size", f"{_size(rev['size'])} ({rev['size']} B)"),
            (rev["checksumalg"].lower(), rev["checksum"]),
            ("added", _when(rev["added_ns"])),
            ("author", rev["author"][:16]),
        ]
    )


@contextmanager
def _transfer(what: str, as_json: bool) -> Iterator[OnProgress]:
    """A progress callback for a transfer: a bar of bytes and files when stdout is a
    terminal (and not --json); Ctrl-C says that the transfer goes on in the daemon."""
    seen: dict[str, Any] = {}
    bar = None
    if sys.stdout.isatty() and not as_json:
        from rich import progress as rp

        bar = rp.Progress(
            rp.TextColumn("{task.description}"),
            rp.BarColumn(),
            rp.DownloadColumn(),
            rp.TransferSpeedColumn(),
            rp.TextColumn("{task.fields[files]}"),
            rp.TimeRemainingColumn(),
        )
    task = bar.add_task(what, total=None, files="") if bar else None

    def update(t: dict[str, Any]) -> None:
        seen["id"] = t["id"]
        if bar is None or task is None:
            return
        total, done = t["bytes_total"], t["bytes_done"]
        if t["state"] == "done":
            total = done = max(total, 1)
        files = f"{t['files_done']}/{t['files_total']} files" if t["files_total"] else ""
        bar.update(task, total=total or None, completed=done, files=files)

    try:
        if bar is None:
            yield update
        else:
            with bar:
                yield update
    except KeyboardInterrupt:
        tid = seen.get("id")
        raise ColonyError(f"interrupted: transfer {tid} goes on in the daemon" if tid
                          else "interrupted") from None  # fmt: skip


# -- files -------------------------------------------------------------------------------


@fs_app.command("put")
def put(
    file: str = typer.Argument(..., help="The local file to upload."),
    label: str = LabelOpt,
    name: str = typer.Option("", "--name", "-n", help="Its name in the label (default: its own)."),
    data_dir: str | None = DataDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Upload a file (a new revision if the name exists); done once it is durable."""
    path = _abs(file)
    with _transfer(f"put {Path(path).name}", as_json) as progress:
        rev = _fs(data_dir).put(path, label, name, on_progress=progress)
    if as_json:
        _print_json(rev)
    else:
        _print_revision(rev)


@fs_app.command("get")
def get(
    label: str = LabelOpt,
    name: str = NameOpt,
    directory: str = DirOpt,
    revision: str = typer.Option(
        "", "--revision", help="A fileid from `fs info` (default: the latest)."
    ),
    data_dir: str | None = DataDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Download a file (its latest revision, or --revision) into a directory."""
    with _transfer(f"get {name}", as_json) as progress:
        rev = _fs(data_dir).get(label, name, _abs(directory), revision, on_progress=progress)
    if as_json:
        _print_json(rev)
    else:
        where = f"{rev['label'].rstrip('/')}/{rev['name']}"
        typer.echo(f"got {where} revision {rev['seq']} ({_size(rev['size'])}) as {rev['path']}")


@fs_app.command("ls")
def ls(label: str = LabelOpt, data_dir: str | None = DataDirOpt, as_json: bool = JsonOpt) -> None:
    """The files in a label (each one's latest revision), and its sub-labels."""
    fs = _fs(data_dir)
    rows = fs.ls(label)
    if as_json:
        _print_json(rows)
        return
    from colonynode.node.core.fs import under

    root = _root(label)
    subs = [x for x in fs.labels() if x["label"] != root and under(x["label"], root)]
    if not rows and not subs:
        typer.echo(f"no files in {root}")
        return
    from rich.console import Console
    from rich.table import Table

    if rows:
        table = Table("name", "size", "revisions", "added")  # fileids: `fs info`
        for r in rows:
            table.add_row(r["name"], _size(r["size"]), str(r["seq"]), _when(r["added_ns"]))
        Console().print(table)
    if subs:
        typer.echo("sub-labels: " + ", ".join(f"{x['label']} ({x['files']})" for x in subs))


@fs_app.command("info")
def info(
    label: str = LabelOpt, name: str = NameOpt, data_dir: str | None = DataDirOpt,
    as_json: bool = JsonOpt,
) -> None:  # fmt: skip
    """Every revision of a file, oldest first."""
    revs = _fs(data_dir).info(label, name)
    if as_json:
        _print_json(revs)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("rev", "fileid", "size", "added", title=f"{revs[-1]['label']}/{name}")
    for r in revs:  # 79 columns: checksums and authors are in --json
        table.add_row(str(r["seq"]), r["fileid"], _size(r["size"]), _when(r["added_ns"]))
    Console().print(table)


@fs_app.command("rm")
def rm(label: str = LabelOpt, name: str = NameOpt, data_dir: str | None = DataDirOpt) -> None:
    """Remove a file: every revision of it (snapshots keep those they name)."""
    _fs(data_dir).remove(label, name)
    typer.echo(f"removed {_root(label).rstrip('/')}/{name}")


# -- sync --------------------------------------------------------------------------------


def _cfs_label(root: str) -> str:
    """The label a synced directory's `.cfs` file names (ColonyOS's, and ours)."""
    cfs = Path(root) / ".cfs"
    try:
        label = json.loads(cfs.read_text())["label"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ColonyError(f"give -l LABEL: {root} has no .cfs file naming one") from None
    if not isinstance(label, str):
        raise ColonyError(f"{cfs}: label is not a string; give -l LABEL")
    return label


def _print_plan(plan: dict[str, Any], err: bool) -> None:
    def say(line: str) -> None:
        typer.echo(line, err=err)

    keep = "keep the local file" if plan["keeplocal"] else "keep the colony's file"
    say(f"sync {plan['label']} <-> {plan['dir']} (on a conflict: {keep})")
    counts = ", ".join(f"{k} {plan[k]}" for k in ("upload", "download", "conflicts", "unchanged"))
    say(f"{counts}, skipped {len(plan['skipped'])}")
    listed = [("uploads", "upload", "upload"), ("downloads", "download", "download"),
              ("conflicted", "conflicts", "conflict")]  # fmt: skip
    for key, count, verb in listed:
        for name in plan[key]:
            say(f"  {verb:9s} {name}")
        if plan[count] > len(plan[key]):
            say(f"  {verb:9s} ... and {plan[count] - len(plan[key])} more")
    for line in plan["skipped"]:
        say(f"  {'skipped':9s} {line}")


@fs_app.command("sync")
def sync(
    label: str | None = typer.Option(
        None, "--label", "-l", help="The label (default: the one DIR/.cfs names)."
    ),
    directory: str = DirOpt,
    keeplocal: bool = typer.Option(
        True,
        "--keeplocal/--keepremote",
        help="On a conflict (same name, other bytes) upload the local file, or overwrite it.",
    ),
    dry: bool = typer.Option(False, "--dry", help="Print the plan only."),
    yes: bool = YesOpt,
    data_dir: str | None = DataDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Make a directory and a label hold the same files (subdirectories are sub-labels).
    Nothing is deleted on either side. Asks first unless --yes."""
    root = _abs(directory)
    label = label or _cfs_label(root)
    fs = _fs(data_dir)
    if dry or not yes:
        with _transfer("planning", as_json) as progress:
            plan = fs.sync(label, root, keeplocal=keeplocal, dry=True, on_progress=progress)
        if dry and as_json:
            _print_json(plan)
            return
        _print_plan(plan, err=as_json)
        if dry:
            return
        if not plan["upload"] and not plan["download"]:
            if as_json:
                _print_json(plan)
            else:
                typer.echo("nothing to do")
            return
        typer.confirm("go on with this sync?", abort=True, err=as_json)
    with _transfer("sync", as_json) as progress:
        done = fs.sync(label, root, keeplocal=keeplocal, on_progress=progress)
    if as_json:
        _print_json(done)
        return
    typer.echo(f"synced {done['label']} <-> {done['dir']}: uploaded {done['upload']}, "
               f"downloaded {done['download']} ({done['conflicts']} conflicts), "
               f"{done['unchanged']} unchanged")  # fmt: skip


# -- labels ------------------------------------------------------------------------------


@label_app.command("ls")
def label_ls(data_dir: str | None = DataDirOpt, as_json: bool = JsonOpt) -> None:
    """Every label with files, and how many (not counting its sub-labels')."""
    rows = _fs(data_dir).labels()
    if as_json:
        _print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("label", "files")
    for x in rows:
        table.add_row(x["label"], str(x["files"]))
    Console().print(table)


@label_app.command("rm")
def label_rm(label: str = LabelOpt, yes: bool = YesOpt, data_dir: str | None = DataDirOpt) -> None:
    """Remove every file under a label and its sub-labels. Asks first unless --yes."""
    from colonynode.node.core.fs import under

    fs = _fs(data_dir)
    root = _root(label)
    if not yes:
        n = sum(x["files"] for x in fs.labels() if under(x["label"], root))
        typer.confirm(f"remove {_files(n)} under {root} and its sub-labels?", abort=True)
    got = fs.remove_label(label)
    typer.echo(f"removed {_files(got['removed'])} under {root}")


# -- snapshots ---------------------------------------------------------------------------


def _print_snapshot(snap: dict[str, Any]) -> None:
    _print_pairs([("name", snap["name"]), ("snapshotid", snap["snapshotid"]),
                  ("label", snap["label"]), ("files", snap["files"]),
                  ("added", _when(snap["added_ns"]))])  # fmt: skip


@snapshot_app.command("create")
def snapshot_create(
    label: str = LabelOpt, name: str = SnapshotOpt, data_dir: str | None = DataDirOpt,
    as_json: bool = JsonOpt,
) -> None:  # fmt: skip
    """Freeze the latest revision of every file under a label (and its sub-labels)."""
    snap = _fs(data_dir).snapshot_create(label, name)
    if as_json:
        _print_json(snap)
    else:
        _print_snapshot(snap)


@snapshot_app.command("ls")
def snapshot_ls(data_dir: str | None = DataDirOpt, as_json: bool = JsonOpt) -> None:
    """Every snapshot, oldest first."""
    rows = _fs(data_dir).snapshots()
    if as_json:
        _print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "label", "files", "added")  # snapshotids: `snapshot info`
    for s in rows:
        table.add_row(s["name"], s["label"], str(s["files"]), _when(s["added_ns"]))
    Console().print(table)


@snapshot_app.command("info")
def snapshot_info(
    name: str = SnapshotRefOpt, data_dir: str | None = DataDirOpt, as_json: bool = JsonOpt
) -> None:
    """A snapshot, with the fileids of the revisions it holds."""
    snap = _fs(data_dir).snapshot(name)
    if as_json:
        _print_json(snap)
        return
    _print_snapshot(snap)
    for fid in snap["fileids"]:
        typer.echo(f"  {fid}")


@snapshot_app.command("download")
def snapshot_download(
    name: str = SnapshotRefOpt, directory: str = DirOpt, data_dir: str | None = DataDirOpt,
    as_json: bool = JsonOpt,
) -> None:  # fmt: skip
    """Download a snapshot's files into a directory (sub-labels as subdirectories)."""
    with _transfer(f"snapshot {name}", as_json) as progress:
        got = _fs(data_dir).snapshot_download(name, _abs(directory), on_progress=progress)
    if as_json:
        _print_json(got)
    else:
        typer.echo(f"downloaded {_files(got['downloaded'])} of snapshot {name} to {got['dir']}")


@snapshot_app.command("rm")
def snapshot_rm(name: str = SnapshotOpt, data_dir: str | None = DataDirOpt) -> None:
    """Remove a snapshot (the files it named stay as they are)."""
    _fs(data_dir).snapshot_remove(name)
    typer.echo(f"removed snapshot {name}")


# ColonyOS spells `rm` as `remove`: both work.
fs_app.command("remove", hidden=True)(rm)
label_app.command("remove", hidden=True)(label_rm)
snapshot_app.command("remove", hidden=True)(snapshot_rm)
fs_app.add_typer(label_app, name="label")
fs_app.add_typer(snapshot_app, name="snapshot")


def register(app: typer.Typer) -> None:
    app.add_typer(fs_app, name="fs")
