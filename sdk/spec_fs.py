"""A FunctionSpec's `fs` (ColonyOS's shape) around a run, on the executor's side.

    "fs": {"mount": "/cfs",
           "snapshots": [{"snapshotid", "label", "dir", "keepfiles", "keepsnapshot"}],
           "dirs": [{"label", "dir", "keepfiles",
                     "onconflicts": {"onstart": {"keeplocal"}, "onclose": {"keeplocal"}}}]}

Before the run: each snapshot is downloaded into its `dir`, then each dir is synced with
its label (`onstart.keeplocal`, default true). After the run (it succeeded or failed):
each dir is synced again (`onclose.keeplocal`, default true), then a dir is deleted
unless `keepfiles`, a snapshot's dir unless `keepsnapshot`. The first ``{processid}`` in
a label or dir is the process's id. Every `dir` is relative to the executor's fs root
(`executor run --fs-dir`), and may not leave it. A sync that fails fails the process.
Unlike ColonyOS's executors, a spec with dirs or snapshots is synced whether or not it
names a `mount` (docs/decisions.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from colonynode.core.errors import ColonyError, ValidationError
from colonynode.node.apiclient import ApiClient
from colonynode.sdk.fs import Fs

__all__ = ["SpecFs"]


def _first(text: str, pid: str) -> str:
    return text.replace("{processid}", pid, 1)


def _flag(value: Any, default: bool) -> bool:
    return default if value is None else bool(value)


class SpecFs:
    def __init__(self, client: ApiClient, root: Path, spec: dict[str, Any], pid: str) -> None:
        fs = spec.get("fs") or {}
        if not isinstance(fs, dict):
            raise ValidationError("a spec's fs is an object")
        self.fs = Fs(client)
        self.root = root
        self.dirs = [d for d in fs.get("dirs") or [] if isinstance(d, dict)]
        self.snapshots = [s for s in fs.get("snapshots") or [] if isinstance(s, dict)]
        self.pid = pid

    @property
    def wanted(self) -> bool:
        return bool(self.dirs or self.snapshots)

    def _dir(self, entry: dict[str, Any]) -> Path:
        rel = _first(str(entry.get("dir") or ""), self.pid).lstrip("/")
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValidationError(f"fs dir {entry.get('dir')!r} leaves the executor's fs root")
        return path

    def _label(self, entry: dict[str, Any]) -> str:
        label = entry.get("label")
        if not isinstance(label, str) or not label:
            raise ValidationError("an fs dir or snapshot names its label")
        return _first(label, self.pid)

    def _sync(self, entry: dict[str, Any], when: str) -> None:
        conflicts = (entry.get("onconflicts") or {}).get(when) or {}
        keeplocal = _flag(conflicts.get("keeplocal"), True)
        label, path = self._label(entry), self._dir(entry)
        try:
            self.fs.sync(label, path, keeplocal=keeplocal)
        except ColonyError as exc:
            raise ColonyError(f"fs sync of {label} with {path} failed: {exc}") from None

    def before(self) -> None:
        for snap in self.snapshots:
            sid = str(snap.get("snapshotid") or snap.get("name") or "")
            path = self._dir(snap)
            try:
                self.fs.snapshot_download(sid, path)
            except ColonyError as exc:
                raise ColonyError(f"fs snapshot {sid} download failed: {exc}") from None
        for entry in self.dirs:
            self._sync(entry, "onstart")

    def after(self) -> None:
        for entry in self.dirs:
            self._sync(entry, "onclose")
        for entry in self.dirs:
            if not _flag(entry.get("keepfiles"), False):
                shutil.rmtree(self._dir(entry), ignore_errors=True)
        for snap in self.snapshots:
            if not _flag(snap.get("keepsnapshot"), False):
                shutil.rmtree(self._dir(snap), ignore_errors=True)
