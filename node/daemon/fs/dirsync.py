"""`fs sync`: a directory and a label made to hold the same files (ColonyOS's semantics).

Each subdirectory maps to a sub-label (``dir/a/b`` ↦ ``label/a/b``). The plan compares the
latest revision of every file under the label with the local files by SHA-256:

- a file only here is uploaded, a file only in the colony is downloaded;
- a conflict (the same name, another checksum) uploads the local file as a new revision
  with `keeplocal` (the default), or overwrites it with the colony's with `keepremote`;
- nothing is ever deleted, on either side.

Symlinks are not followed and names the colony refuses (`..`, NUL, over 255 bytes) are
skipped and reported. `dry` returns the plan only. A ``.cfs`` file in the directory names
its label (as ColonyOS's does).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from colonynode.core.errors import ColonyError, ValidationError
from colonynode.node.core.fs import Revision, check_label, check_name
from colonynode.node.daemon.fs import files
from colonynode.node.daemon.fs.files import Progress

if TYPE_CHECKING:
    from colonynode.node.daemon.fs.service import FsService

__all__ = ["CFS_FILE", "relative_label", "safe_join", "scan", "sync"]

CFS_FILE = ".cfs"
LISTED_MAX = 100  # names a result lists per kind (the counts are whole)


def _skip(name: str) -> bool:
    return name == CFS_FILE or (name.startswith(".") and ".cfs-" in name)


def scan(root: Path, label: str) -> tuple[dict[tuple[str, str], Path], list[str]]:
    """Every regular file under `root` as (label, name) -> path, and what was skipped."""
    found: dict[tuple[str, str], Path] = {}
    skipped: list[str] = []  # (a dry run's directory may not exist: nothing is found)
    for here, dirs, names in os.walk(root, followlinks=False):
        rel = Path(here).relative_to(root)
        try:
            sub = check_label("/".join([label, *rel.parts])) if rel.parts else label
        except ColonyError as exc:
            skipped.append(f"{rel}: {exc}")
            dirs.clear()
            continue
        for name in names:
            path = Path(here) / name
            if _skip(name):
                continue
            if path.is_symlink() or not path.is_file():
                skipped.append(f"{rel / name}: not a regular file")
                continue
            try:
                found[(sub, check_name(name))] = path
            except ColonyError as exc:
                skipped.append(f"{rel / name}: {exc}")
    return found, skipped


def _hash_all(paths: list[Path]) -> list[bytes]:
    out = []
    for path in paths:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        out.append(h.digest())
    return out


async def sync(
    fs: FsService, label: str, root: Path, *, keeplocal: bool, dry: bool, progress: Progress
) -> dict[str, Any]:
    local, skipped = await trio.to_thread.run_sync(scan, root, label)
    keys = sorted(local)
    sums = dict(zip(keys, await trio.to_thread.run_sync(_hash_all, [local[k] for k in keys]),
                    strict=True))  # fmt: skip
    remote: dict[tuple[str, str], Revision] = {
        (rev.label, rev.name): rev for rev, _ in fs.index.files(label, recursive=True)
    }
    up: list[tuple[str, str]] = []
    down: list[tuple[str, str]] = []
    conflicts: list[tuple[str, str]] = []
    unchanged = 0
    for key in keys:
        rev = remote.get(key)
        if rev is None:
            up.append(key)
        elif rev.sha256 != sums[key]:
            conflicts.append(key)
            (up if keeplocal else down).append(key)
        else:
            unchanged += 1
    down += [key for key in sorted(remote) if key not in local]
    result: dict[str, Any] = {
        "label": label, "dir": str(root), "dry": dry, "keeplocal": keeplocal,
        "upload": len(up), "download": len(down), "conflicts": len(conflicts),
        "unchanged": unchanged, "skipped": skipped[:LISTED_MAX],
        "uploads": [_show(k) for k in up[:LISTED_MAX]],
        "downloads": [_show(k) for k in down[:LISTED_MAX]],
        "conflicted": [_show(k) for k in conflicts[:LISTED_MAX]],
    }  # fmt: skip
    if dry:
        return result
    if up:
        await files.upload(fs, [(local[k], k[0], k[1]) for k in up], progress)
    if down:
        items = [(remote[k], safe_join(root, relative_label(k[0], label), k[1])) for k in down]
        await files.download(fs, items, progress)
    cfs = root / CFS_FILE
    if not cfs.exists():
        cfs.write_text(json.dumps({"label": label}) + "\n")
    return result


def relative_label(label: str, root: str) -> list[str]:
    """`label`'s parts below `root` (a sub-label of it, or itself)."""
    rest = label[len(root.rstrip("/")) :].strip("/")
    return rest.split("/") if rest else []


def safe_join(root: Path, parts: list[str], name: str) -> Path:
    """`root`/parts/name, refused if it would leave `root` (a '..' part, a symlink out)."""
    for part in [*parts, name]:
        check_name(part)
    path = root.joinpath(*parts, name)
    real_root = root.resolve()
    if not path.parent.resolve().is_relative_to(real_root):
        raise ValidationError(f"{path} is outside {root} (a symlink?)")
    return path


def _show(key: tuple[str, str]) -> str:
    return f"{key[0].rstrip('/')}/{key[1]}"
