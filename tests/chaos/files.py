"""The chaos run's ColonyFS workload: a client putting files through random nodes while
the nemesis strikes, each put recorded as acknowledged (its revision) or unknown; then,
once the colony is healed, every node's listing of the label and a read of every file.

The rules (check.py, `check_files`): an acknowledged put is listed by every node with
the checksum that was put, and reads back byte for byte; a listed file is one that was
put (acknowledged or unknown), with the checksum put under its name."""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from colonynode.core.errors import ColonyError
from colonynode.node.apiclient import ApiClient
from tests.chaos.workload import Paced
from tests.integration.harness import Daemon

LABEL = "/chaos"
PUT_TIMEOUT_S = 10.0  # a put through a paused or cut node gives up after this: unknown
SIZES = (1_000, 40_000, 300_000, 700_000)  # bytes: one chunk, several, a few batches


@dataclass
class FilePut:
    """One put: acknowledged (`fileid` set) or unknown (an error or a timeout)."""

    name: str
    node: str
    sha256: str
    fileid: str = ""
    error: str = ""


@dataclass
class FilesFinal:
    """The healed colony's word on the label: each node's listing (name -> checksum), or
    why it gave none; and, for each acknowledged file, the sha256 of its bytes read back
    through a random node ("" when the read failed, with the reason)."""

    listings: dict[str, dict[str, str] | None]
    reads: dict[str, tuple[str, str]]  # name -> (sha256 read, node or why not)


class Filer(Paced):
    """One client putting a file of random bytes through a random node, `rate` a second."""

    def __init__(self, daemons: dict[str, Daemon], root: Path, rate: float, seed: int,
                 avoid: Any) -> None:  # fmt: skip
        super().__init__(daemons, rate, random.Random(seed * 104729), avoid, PUT_TIMEOUT_S * 3)
        self.root = root / "chaos-files"
        self.root.mkdir(parents=True, exist_ok=True)
        self.puts: list[FilePut] = []

    def step(self, node: str) -> None:
        name = f"file-{len(self.puts)}.bin"
        data = self.rng.randbytes(self.rng.choice(SIZES))
        path = self.root / name
        path.write_bytes(data)
        put = FilePut(name, node, hashlib.sha256(data).hexdigest())
        try:
            api = ApiClient.for_data_dir(self.daemons[node].dir, timeout_s=PUT_TIMEOUT_S)
            got = api.post("/v1/fs/put", {"path": str(path), "label": LABEL})
            put.fileid = str(got["result"]["fileid"])
        except (ColonyError, OSError) as exc:
            put.error = f"{type(exc).__name__}: {exc}"[:200]
        self.puts.append(put)


def listing(d: Daemon) -> dict[str, str]:
    api = ApiClient.for_data_dir(d.dir, timeout_s=30.0)
    return {f["name"]: f["checksum"] for f in api.get(f"/v1/fs/files?label={LABEL}")}


def all_listed(daemons: dict[str, Daemon], acked: dict[str, str]) -> bool:
    """Does every node list every acknowledged file with its checksum?"""
    for d in daemons.values():
        try:
            held = listing(d)
        except (ColonyError, OSError):
            return False
        if any(held.get(name) != sha for name, sha in acked.items()):
            return False
    return True


def read_files(daemons: dict[str, Daemon], puts: list[FilePut], root: Path,
               rng: random.Random) -> FilesFinal:  # fmt: skip
    listings: dict[str, dict[str, str] | None] = {}
    for name, d in sorted(daemons.items()):
        try:
            listings[name] = listing(d)
        except (ColonyError, OSError):
            listings[name] = None
    reads: dict[str, tuple[str, str]] = {}
    out = root / "chaos-read"
    for put in puts:
        if not put.fileid:
            continue
        node = rng.choice(sorted(daemons))
        try:
            api = ApiClient.for_data_dir(daemons[node].dir, timeout_s=60.0)
            got = api.post("/v1/fs/get", {"label": LABEL, "name": put.name, "dir": str(out)})
            data = Path(got["result"]["path"]).read_bytes()
            reads[put.name] = (hashlib.sha256(data).hexdigest(), node)
            os.unlink(got["result"]["path"])
        except (ColonyError, OSError) as exc:
            reads[put.name] = ("", f"{node}: {exc}"[:200])
    return FilesFinal(listings, reads)
