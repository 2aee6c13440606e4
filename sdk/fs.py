"""ColonyFS from Python (`Client(...).fs`): put, get and sync files, list labels, take
snapshots, through the node's local API (docs/api.md, "ColonyFS").

    from colonynode.sdk import Client

    with Client("~/a") as colony:
        rev = colony.fs.put("results.csv", "/runs/7")        # the revision, once durable
        colony.fs.get("/runs/7", "results.csv", "/tmp/out")  # {"path": ..., **revision}
        plan = colony.fs.sync("/runs", "./runs", dry=True)   # what a sync would move

Paths are the caller's, on this machine: made absolute here (the node wants them so).
Transfers (put, get, sync, snapshot_download) are started detached and long-polled to
their end (WAIT_S a request), so no request outlasts the ApiClient's timeout, however long
the transfer; with `on_progress`, a poll returns every POLL_S and the callback is given
the transfer `{id, kind, state, bytes_total, bytes_done, files_total, files_done}`. A
failed transfer raises TransferFailed with the node's reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from colonynode.core.errors import ColonyError
from colonynode.node.apiclient import ApiClient

__all__ = ["POLL_S", "WAIT_S", "Fs", "OnProgress", "TransferFailed"]

POLL_S = 0.1  # a poll's wait for a transfer to end, when its progress is shown
WAIT_S = 10.0  # the same when it is not (the node waits 30 s at most)
OnProgress = Callable[[dict[str, Any]], None]


class TransferFailed(ColonyError):
    """A put, get, sync or snapshot download the node could not complete."""

    def __init__(self, transfer: dict[str, Any]) -> None:
        super().__init__(f"{transfer['kind']} failed: {transfer['error'] or 'no reason given'}")
        self.transfer = transfer


def absolute(path: str | Path) -> str:
    """`path` as an absolute path, `~` expanded, `..` folded, symlinks kept (a symlink's
    own name is the file's name in the colony)."""
    return os.path.abspath(Path(path).expanduser())


class Fs:
    def __init__(self, api: ApiClient, *, poll_s: float = POLL_S) -> None:
        self.api = api
        self.poll_s = poll_s

    # -- transfers ----------------------------------------------------------------------

    def put(self, path: str | Path, label: str, name: str = "", *,
            on_progress: OnProgress | None = None) -> dict[str, Any]:  # fmt: skip
        """Upload a file to `label` as `name` (default: the file's name), a new revision
        if the name exists: the revision `{label, name, fileid, seq, checksum, size, ...}`
        once its chunks are durable and a majority of voters holds its record."""
        body = {"path": absolute(path), "label": label, "name": name}
        return self._run("/v1/fs/put", body, on_progress)

    def get(self, label: str, name: str, directory: str | Path, revision: str = "", *,
            on_progress: OnProgress | None = None) -> dict[str, Any]:  # fmt: skip
        """Download the latest revision (or the fileid `revision`) of `label`/`name` into
        `directory` (made if missing): `{path, **revision}`."""
        body = {"label": label, "name": name, "dir": absolute(directory), "revision": revision}
        return self._run("/v1/fs/get", body, on_progress)

    def sync(self, label: str, directory: str | Path, *, keeplocal: bool = True, dry: bool = False,
             on_progress: OnProgress | None = None) -> dict[str, Any]:  # fmt: skip
        """Make `directory` and `label` hold the same files (subdirectories are
        sub-labels; nothing is deleted on either side; a conflict keeps the local file
        with `keeplocal`, else the colony's). `dry`: the plan only. Either way the plan:
        `{upload, download, conflicts, unchanged, skipped, uploads, downloads, conflicted}`."""
        body = {"label": label, "dir": absolute(directory), "keeplocal": keeplocal, "dry": dry}
        return self._run("/v1/fs/sync", body, on_progress)

    def snapshot_download(self, name: str, directory: str | Path, *,
                          on_progress: OnProgress | None = None) -> dict[str, Any]:  # fmt: skip
        """Every file of snapshot `name` (or snapshotid) into `directory`, sub-labels as
        subdirectories:
        `{snapshot, downloaded, dir}`."""
        body = {"dir": absolute(directory)}
        return self._run(f"/v1/fs/snapshots/{_part(name)}/download", body, on_progress)

    def transfer(self, tid: str, *, wait_s: float = 0.0) -> dict[str, Any]:
        """A transfer of this node (it keeps the last 64 that ended), once it ends or
        `wait_s` passed (at most WAIT_S: the ApiClient's timeout is 30 s)."""
        params = {"wait_s": round(min(wait_s, WAIT_S), 3)} if wait_s > 0 else {}
        got: dict[str, Any] = self.api.get(f"/v1/fs/transfers/{_part(tid)}", **params)
        return got

    def _run(self, path: str, body: dict[str, Any], report: OnProgress | None) -> dict[str, Any]:
        """Start a transfer detached and long-poll it to its end: its result. With
        `report`, a poll returns every `poll_s` to show progress; without, every WAIT_S."""
        transfer: dict[str, Any] = self.api.post(path, {**body, "detach": True})
        wait_s = self.poll_s if report is not None else WAIT_S
        while True:
            if report is not None:
                report(transfer)
            if transfer["state"] == "done":
                result: dict[str, Any] = transfer["result"]
                return result
            if transfer["state"] == "failed":
                raise TransferFailed(transfer)
            transfer = self.transfer(transfer["id"], wait_s=wait_s)

    # -- the index ----------------------------------------------------------------------

    def ls(self, label: str) -> list[dict[str, Any]]:
        """The latest revision of every file in exactly `label` (not its sub-labels)."""
        got: list[dict[str, Any]] = self.api.get("/v1/fs/files", label=label)
        return got

    def info(self, label: str, name: str) -> list[dict[str, Any]]:
        """Every revision of `label`/`name`, oldest first (`seq` 1..n)."""
        got: list[dict[str, Any]] = self.api.get("/v1/fs/info", label=label, name=name)
        return got

    def remove(self, label: str, name: str) -> dict[str, Any]:
        """Remove every revision of `label`/`name` (a snapshot keeps those it names)."""
        got: dict[str, Any] = self.api.post("/v1/fs/remove", {"label": label, "name": name})
        return got

    def labels(self) -> list[dict[str, Any]]:
        """`[{label, files}]`: every label with files, and how many (not counting its
        sub-labels')."""
        got: list[dict[str, Any]] = self.api.get("/v1/fs/labels")
        return got

    def remove_label(self, label: str) -> dict[str, Any]:
        """Remove every file under `label` and its sub-labels: `{removed: n}`."""
        got: dict[str, Any] = self.api.post("/v1/fs/labels/remove", {"label": label})
        return got

    # -- snapshots ----------------------------------------------------------------------

    def snapshot_create(self, label: str, name: str) -> dict[str, Any]:
        """Freeze the latest revision of every file under `label` as snapshot `name`:
        `{snapshotid, name, label, fileids, files, added_ns}`."""
        got: dict[str, Any] = self.api.post("/v1/fs/snapshots", {"label": label, "name": name})
        return got

    def snapshots(self) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = self.api.get("/v1/fs/snapshots")
        return got

    def snapshot(self, name: str) -> dict[str, Any]:
        """A snapshot by name (or snapshotid), with the fileids it holds."""
        got: dict[str, Any] = self.api.get(f"/v1/fs/snapshots/{_part(name)}")
        return got

    def snapshot_remove(self, name: str) -> dict[str, Any]:
        got: dict[str, Any] = self.api.post(f"/v1/fs/snapshots/{_part(name)}/remove")
        return got


def _part(text: str) -> str:
    """`text` as one path segment of a request."""
    return quote(text, safe="")
