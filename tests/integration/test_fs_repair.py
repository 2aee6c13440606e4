"""ColonyFS keeps R copies (issue 15): a holder that stays away past the grace period has
its chunks copied to the next member of their placement; a removed file's chunks are
collected on every node."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from colonynode.node.apiclient import ApiClient
from colonynode.node.core.fs import CHUNK_BYTES
from colonynode.node.daemon.fs.chunks import chunk_id
from tests.integration.harness import Colony, Daemon, cli, wait_until

pytestmark = pytest.mark.integration

FAST = {"fs_repair_s": 0.5, "fs_grace_s": 3.0, "fs_gc_grace_s": 0.0}


def fast(d: Daemon) -> None:
    """Restart `d` with repair passes every half second and short graces."""
    d.restart_with(**FAST)


def holders(nodes: list[Daemon], cid: bytes) -> set[str]:
    h = cid.hex()
    return {d.name for d in nodes if (d.dir / "chunks" / h[:2] / h).exists()}


def test_copies_return_to_r_after_a_holder_stays_away_and_removed_files_are_collected(
    colony: Colony, tmp_path: Path
) -> None:
    a = colony.founder("a")
    fast(a)
    nodes = [a] + [colony.joined(n, via=a) for n in "bcd"]
    for d in nodes[1:]:
        fast(d)
    cli("voters", "set", "a", "b", "c", "--data-dir", str(a.dir))
    for d in nodes:
        wait_until(f"{d.name}: mesh", lambda d=d: d.status()["connected_peers"] == 3)
    data = os.urandom(6 * CHUNK_BYTES)
    f = tmp_path / "six.bin"
    f.write_bytes(data)
    cids = [chunk_id(data[i : i + CHUNK_BYTES]) for i in range(0, len(data), CHUNK_BYTES)]
    got = ApiClient.for_data_dir(a.dir).post("/v1/fs/put", {"path": str(f), "label": "/r"})
    assert got["state"] == "done"
    assert all(len(holders(nodes, c)) == 3 for c in cids)  # R = 3 of the 4 members

    away = next(d for d in nodes[1:] if any(d.name in holders(nodes, c) for c in cids))
    away.stop(signal.SIGKILL)
    up = [d for d in nodes if d is not away]
    bulk0 = sum(d.status()["fs"].get("bulk_chunks_received", 0) for d in up)
    wait_until("three copies again among the members up",
               lambda: all(holders(up, c) == {d.name for d in up} for c in cids),
               timeout_s=40)  # fmt: skip
    repaired = sum(d.status()["fs"].get("chunks_repaired", 0) for d in up)
    assert repaired >= 1
    bulk = sum(d.status()["fs"].get("bulk_chunks_received", 0) for d in up) - bulk0
    assert bulk >= repaired  # the copies went on the bulk path

    ApiClient.for_data_dir(a.dir).post("/v1/fs/remove", {"label": "/r", "name": "six.bin"})
    wait_until("every copy collected", lambda: all(not holders(up, c) for c in cids),
               timeout_s=40)  # fmt: skip
    assert sum(d.status()["fs"]["collected"] for d in up) == 3 * len(cids)
