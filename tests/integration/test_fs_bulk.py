"""ColonyFS puts and gets over the bulk path between real daemons (node/daemon/fs/bulk.py):
both take it; a corrupt copy at the holder it fetches from is refused, fetched from another
holder, named back and deleted there; a holder without a bulk port is read on the link."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from colonynode.node.core.fs import CHUNK_BYTES, placement
from colonynode.node.daemon.fs.chunks import chunk_id
from colonynode.node.daemon.p2p import parse_addr
from tests.integration.harness import CLI, Colony, Daemon, three_voters, wait_until
from tests.integration.test_fs import get, put, sees

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def node_id(d: Daemon) -> bytes:
    nid = parse_addr(d.status()["addrs"][0])[2]
    assert nid is not None
    return bytes(nid)


def empty_store(d: Daemon) -> None:
    """Delete every chunk file `d` holds (its daemon runs on, unaware)."""
    for path in (d.dir / "chunks").rglob("*"):
        if path.is_file():
            path.unlink()


def fs(d: Daemon) -> dict[str, int]:
    return dict(d.status()["fs"])


def test_a_corrupt_copy_met_on_the_bulk_path_is_refused_fetched_elsewhere_and_deleted(
    colony: Colony, tmp_path: Path
) -> None:
    a, b, c = three_voters(colony)
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(CHUNK_BYTES))  # one chunk, held by all three (R = 3)
    rev = put(a, data, "/d")
    assert fs(b)["bulk_chunks_received"] == fs(c)["bulk_chunks_received"] == 1  # a put's too
    wait_until("b sees it", lambda: sees(b, "/d", "data.bin", rev["checksum"]))
    cid = chunk_id(data.read_bytes())
    by_id = {node_id(d): d for d in (a, b, c)}
    first, other = [by_id[m] for m in placement(cid, list(by_id), 3) if by_id[m] is not b]  # type: ignore[misc]
    (b.dir / "chunks" / cid.hex()[:2] / cid.hex()).unlink()  # b reads it from a holder
    spoiled = first.dir / "chunks" / cid.hex()[:2] / cid.hex()
    spoiled.write_bytes(b"rot" + spoiled.read_bytes()[3:])  # where b asks first

    assert get(b, "/d", "data.bin", tmp_path / "out").read_bytes() == data.read_bytes()
    assert fs(b)["bulk_fetches"] >= 2  # from the first holder, then the other
    assert fs(b)["bad_chunks"] == 1 and fs(b)["bad_chunks_reported"] == 1
    assert fs(other)["bulk_chunks_served"] == 1
    wait_until("the holder deleted its corrupt copy", lambda: not spoiled.exists())
    assert fs(first)["bad"] == 1  # read again on b's word, found corrupt, counted


OLDER = [sys.executable, "-m", "tests.integration.older_holder"]


@pytest.mark.parametrize("why", ["fs_bulk false", "an older version"])
def test_a_holder_without_a_bulk_path_is_read_on_the_link(
    colony: Colony, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, why: str
) -> None:
    getter = colony.founder("g")
    holder = colony.daemon("h")
    if why == "an older version":
        monkeypatch.setenv("PYTHONPATH", str(ROOT))  # (the holder's module is a test's)
        holder.program = OLDER
    holder.join(getter.addr(), getter.invite("executor,submitter"))
    if why == "fs_bulk false":
        holder.restart_with(fs_bulk=False)
    wait_until("linked", lambda: getter.status()["connected_peers"] == 1)
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(14 * CHUNK_BYTES + 99))  # more than a get asks for at once
    rev = put(holder, data, "/d")
    wait_until("the getter sees it", lambda: sees(getter, "/d", "data.bin", rev["checksum"]))
    empty_store(getter)  # every chunk comes from the holder

    out = get(getter, "/d", "data.bin", tmp_path / "out")
    assert out.read_bytes() == data.read_bytes()
    assert fs(getter)["chunks_fetched"] == 15 and fs(getter).get("bulk_fetches", 0) == 0
    assert fs(holder)["chunks_served"] == 15 and fs(holder).get("bulk_chunks_served", 0) == 0


ODD = [sys.executable, "-m", "tests.integration.odd_holder"]


def odd_holder(colony: Colony, writer: Daemon, monkeypatch: pytest.MonkeyPatch, how: str) -> Daemon:
    """A member whose bulk port fails `how` (tests/integration/odd_holder.py)."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # (the holder's module is a test's)
    monkeypatch.setenv("COLONYNODE_TEST_BULK", how)  # (the writer runs already)
    holder = colony.daemon("h")
    holder.program = ODD
    holder.join(writer.addr(), writer.invite("executor,submitter"))
    wait_until("linked", lambda: writer.status()["connected_peers"] == 1)
    return holder


@pytest.mark.parametrize("how", ["closed-port", "slams"])
def test_a_holder_whose_bulk_port_fails_is_written_to_and_read_on_the_link(
    colony: Colony, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    writer = colony.founder("w")
    holder = odd_holder(colony, writer, monkeypatch, how)
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(14 * CHUNK_BYTES + 99))
    rev = put(writer, data, "/d")  # to the holder, on the link
    assert fs(holder)["chunks_received"] == 15 and fs(holder).get("bulk_chunks_received", 0) == 0
    assert sees(writer, "/d", "data.bin", rev["checksum"])
    empty_store(writer)  # every chunk comes from the holder now

    out = get(writer, "/d", "data.bin", tmp_path / "out")
    assert out.read_bytes() == data.read_bytes()
    assert fs(writer)["chunks_fetched"] == 15 and fs(holder)["chunks_served"] == 15
    gave_up = fs(writer).get("bulk_dials_failed" if how == "closed-port" else "bulk_fallbacks", 0)
    assert gave_up >= 1


def test_a_holder_whose_bulk_port_refused_is_dialled_again_once_it_has_another(
    colony: Colony, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused port is left to the link for NO_BULK_S, that port only: the member
    restarted (a new bulk port) is read on the bulk path at the next get."""
    writer = colony.founder("w")
    holder = odd_holder(colony, writer, monkeypatch, "closed-port")
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(6 * CHUNK_BYTES + 5))
    rev = put(writer, data, "/d")
    assert sees(writer, "/d", "data.bin", rev["checksum"])
    empty_store(writer)
    assert get(writer, "/d", "data.bin", tmp_path / "one").read_bytes() == data.read_bytes()
    failed = fs(writer)["bulk_dials_failed"]  # (the put's batches may each have dialled)
    assert failed >= 1 and fs(writer).get("bulk_connections", 0) == 0

    empty_store(writer)
    get(writer, "/d", "data.bin", tmp_path / "two")  # the same port: not dialled again
    assert fs(writer)["chunks_fetched"] == 14 and fs(writer)["bulk_dials_failed"] == failed

    holder.program = [CLI]
    holder.restart_with()  # the product's daemon: a bulk port that works
    wait_until("linked", lambda: holder.status()["connected_peers"] == 1)
    empty_store(writer)
    out = get(writer, "/d", "data.bin", tmp_path / "three")
    assert out.read_bytes() == data.read_bytes()
    assert fs(writer)["chunks_fetched"] == 21 and fs(writer)["bulk_dials_failed"] == failed
    assert fs(writer)["bulk_connections"] == 1 and fs(holder)["bulk_chunks_served"] == 7


def test_a_get_goes_past_a_holder_that_hangs_with_its_link_up(
    colony: Colony, tmp_path: Path
) -> None:
    a, b, c = three_voters(colony)
    b.restart_with(fs_request_s=2.0)
    wait_until("b linked again", lambda: b.status()["connected_peers"] == 2)
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(CHUNK_BYTES))
    rev = put(a, data, "/d")
    wait_until("b sees it", lambda: sees(b, "/d", "data.bin", rev["checksum"]))
    cid = chunk_id(data.read_bytes())
    by_id = {node_id(d): d for d in (a, b, c)}
    first = next(by_id[m] for m in placement(cid, list(by_id), 3) if by_id[m] is not b)
    (b.dir / "chunks" / cid.hex()[:2] / cid.hex()).unlink()
    assert first.proc is not None
    first.proc.send_signal(signal.SIGSTOP)  # its links stay up; it answers nothing
    try:
        t0 = time.monotonic()
        assert get(b, "/d", "data.bin", tmp_path / "out").read_bytes() == data.read_bytes()
        # b's own deadline (2 s a request), not the default's 60 s: a bound, not a speed
        assert time.monotonic() - t0 < 30
        assert fs(b)["fetch_failures"] >= 1  # the hung holder's request timed out
    finally:
        first.proc.send_signal(signal.SIGCONT)
