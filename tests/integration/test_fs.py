"""ColonyFS between real daemons (issue 15): an acknowledged put outlives its writer, a
conflict under each policy, a process whose spec syncs /in down and /out up, names that
would leave a directory refused, a corrupted chunk refused and fetched from another
holder, a full quota refused with nothing committed."""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from colonynode.node.apiclient import ApiClient, ApiError
from colonynode.node.core.fs import CHUNK_BYTES, INLINE_CHUNKS_MAX
from colonynode.sdk import Client
from tests.integration.harness import Colony, Daemon, Executors, three_voters, wait_until

pytestmark = pytest.mark.integration

FUNCTIONS = """
from pathlib import Path
from colonynode.sdk import current, function

@function
def shout():
    text = Path("in/words.txt").read_text()
    Path("out").mkdir(exist_ok=True)
    Path("out/loud.txt").write_text(text.upper())
    frozen = Path("frozen/words.txt")
    return [current().fs_dir, frozen.read_text() if frozen.exists() else None]
"""


def api(d: Daemon) -> ApiClient:
    return ApiClient.for_data_dir(d.dir, timeout_s=120)


def put(d: Daemon, path: Path, label: str, name: str = "") -> dict[str, Any]:
    got = api(d).post("/v1/fs/put", {"path": str(path), "label": label, "name": name})
    assert got["state"] == "done", got
    return dict(got["result"])


def get(d: Daemon, label: str, name: str, into: Path) -> Path:
    got = api(d).post("/v1/fs/get", {"label": label, "name": name, "dir": str(into)})
    assert got["state"] == "done", got
    return Path(got["result"]["path"])


def sync(d: Daemon, label: str, directory: Path, **kw: Any) -> dict[str, Any]:
    got = api(d).post("/v1/fs/sync", {"label": label, "dir": str(directory), **kw})
    assert got["state"] == "done", got
    return dict(got["result"])


def sees(d: Daemon, label: str, name: str, checksum: str) -> bool:
    return any(f["name"] == name and f["checksum"] == checksum
               for f in api(d).get(f"/v1/fs/files?label={label}"))  # fmt: skip


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_acknowledged_put_is_readable_after_its_writer_is_killed(
    colony: Colony, tmp_path: Path
) -> None:
    a, b, c = three_voters(colony)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(5 * CHUNK_BYTES + 1234))
    small = tmp_path / "small.txt"
    small.write_text("hello, colony\n")
    revs = [put(a, big, "/data"), put(a, small, "/data", "note.txt")]
    assert revs[0]["checksum"] == sha(big) and revs[0]["size"] == big.stat().st_size
    assert revs[0]["chunks"] == 6 and revs[0]["checksumalg"] == "SHA256"
    a.stop(signal.SIGKILL)  # at once: the put's answer must already mean durable

    for d, into in ((b, tmp_path / "got-b"), (c, tmp_path / "got-c")):
        wait_until(f"{d.name} sees the files", lambda d=d: sees(d, "/data", "big.bin", sha(big)))
        assert get(d, "/data", "big.bin", into).read_bytes() == big.read_bytes()
        assert get(d, "/data", "note.txt", into).read_text() == "hello, colony\n"


def test_conflicts_keep_the_local_file_or_take_the_colonys(colony: Colony, tmp_path: Path) -> None:
    a, b, c = three_voters(colony)
    first = tmp_path / "dir-a"
    (first / "sub").mkdir(parents=True)
    (first / "report.txt").write_text("from a\n")
    (first / "sub" / "raw.bin").write_bytes(os.urandom(3000))
    plan = sync(a, "/proj", first)
    assert (plan["upload"], plan["download"], plan["conflicts"]) == (2, 0, 0)
    wait_until(
        "b sees a's files", lambda: sees(b, "/proj", "report.txt", sha(first / "report.txt"))
    )
    wait_until(
        "c sees a's files", lambda: sees(c, "/proj", "report.txt", sha(first / "report.txt"))
    )

    # keeplocal (the default): b's differing file becomes the latest revision, b's stays
    mine = tmp_path / "dir-b"
    mine.mkdir()
    (mine / "report.txt").write_text("from b\n")
    dry = sync(b, "/proj", mine, dry=True)
    assert (dry["upload"], dry["download"], dry["conflicts"]) == (1, 1, 1)
    assert not (mine / "sub").exists(), "a dry run writes nothing"
    sync(b, "/proj", mine)
    assert (mine / "report.txt").read_text() == "from b\n"
    assert (mine / "sub" / "raw.bin").read_bytes() == (first / "sub" / "raw.bin").read_bytes()
    info = api(b).get("/v1/fs/info?label=/proj&name=report.txt")
    assert [r["seq"] for r in info] == [1, 2] and info[-1]["checksum"] == sha(mine / "report.txt")

    # keepremote: c's differing file is overwritten by the colony's latest (b's)
    wait_until("c sees b's revision", lambda: sees(c, "/proj", "report.txt", info[-1]["checksum"]))
    theirs = tmp_path / "dir-c"
    theirs.mkdir()
    (theirs / "report.txt").write_text("from c\n")
    plan = sync(c, "/proj", theirs, keeplocal=False)
    assert (plan["upload"], plan["download"], plan["conflicts"]) == (0, 2, 1)
    assert (theirs / "report.txt").read_text() == "from b\n"
    assert len(api(c).get("/v1/fs/info?label=/proj&name=report.txt")) == 2
    again = sync(c, "/proj", theirs)
    assert (again["upload"], again["download"], again["unchanged"]) == (0, 0, 2)


def test_a_process_syncs_its_input_down_and_its_output_up(colony: Colony, tmp_path: Path) -> None:
    a, b, c = three_voters(colony)
    ex = Executors(tmp_path, FUNCTIONS)
    try:
        ex.start(b)
        words = tmp_path / "words.txt"
        words.write_text("first words\n")
        put(a, words, "/in")
        snap = api(a).post("/v1/fs/snapshots", {"label": "/in", "name": "in-v1"})
        words.write_text("quiet words\n")
        put(a, words, "/in")  # the latest; the snapshot keeps the first
        wait_until("b sees the input", lambda: sees(b, "/in", "words.txt", sha(words)))
        wait_until("b sees the snapshot", lambda: api(b).get("/v1/fs/snapshots") != [])
        spec = {"funcname": "shout", "conditions": {"executortype": "py"}, "maxexectime": 60,
                "fs": {"mount": "/cfs", "dirs": [
                    {"label": "/in", "dir": "in", "keepfiles": False},
                    {"label": "/out/{processid}", "dir": "out", "keepfiles": False}],
                    "snapshots": [{"snapshotid": snap["snapshotid"], "label": "/in",
                                   "dir": "frozen", "keepsnapshot": False}]}}  # fmt: skip
        with Client(a.dir) as client:
            proc = client.wait(client.submit(spec)["processid"], timeout_s=60)
        assert proc["state"] == "SUCCESS", proc
        pid, fs_root = proc["processid"], Path(proc["output"][0])
        assert fs_root == (b.dir / "fs").resolve()
        assert proc["output"][1] == "first words\n"  # the snapshot, downloaded before
        assert not (fs_root / "in").exists() and not (fs_root / "out").exists()  # keepfiles
        assert not (fs_root / "frozen").exists()  # keepsnapshot false
        label = f"/out/{pid}"
        wait_until("c sees the output", lambda: api(c).get(f"/v1/fs/files?label={label}") != [])
        assert get(c, label, "loud.txt", tmp_path / "got").read_text() == "QUIET WORDS\n"

        # a spec whose fs dir would leave the executor's fs root fails with the reason
        bad = {**spec, "fs": {"dirs": [{"label": "/in", "dir": "../../escape"}]}}
        with Client(a.dir) as client:
            failed = client.wait(client.submit(bad)["processid"], timeout_s=60)
        assert (
            failed["state"] == "FAILED" and "leaves the executor's fs root" in failed["errors"][0]
        )
        assert not (b.dir.parent / "escape").exists()
    finally:
        ex.stop_all()


def test_names_that_would_leave_a_directory_are_refused(colony: Colony, tmp_path: Path) -> None:
    a, b, _ = three_voters(colony)
    f = tmp_path / "f.txt"
    f.write_text("x")
    for label, name in (("/a/../b", ""), ("/a", "../x"), ("/a", "x\\y"), ("/a", "y" * 256)):
        with pytest.raises(ApiError) as refused:
            api(a).post("/v1/fs/put", {"path": str(f), "label": label, "name": name})
        assert refused.value.status == 400, (label, name)
    # what a get writes stays in its directory, whatever the records say (unit-tested
    # too: tests/node/test_fs.py)
    assert api(b).get("/v1/fs/labels") == []


def test_a_corrupted_chunk_is_refused_and_fetched_from_another_holder(
    colony: Colony, tmp_path: Path
) -> None:
    a, b, _ = three_voters(colony)
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(2 * CHUNK_BYTES))
    rev = put(a, data, "/d")
    wait_until("b sees it", lambda: sees(b, "/d", "data.bin", rev["checksum"]))
    chunks = sorted((b.dir / "chunks").rglob("*"))
    held = [p for p in chunks if p.is_file()]
    assert len(held) == 2  # three members, R = 3: b holds every chunk
    held[0].write_bytes(b"not the bytes of this chunk" + held[0].read_bytes()[27:])
    assert get(b, "/d", "data.bin", tmp_path / "out").read_bytes() == data.read_bytes()
    assert b.status()["fs"]["bad"] == 1  # refused, counted, deleted; fetched from a or c
    metrics = api(b).get_text("/metrics")
    assert (
        "colonynode_fs_bad_total 1" in metrics and "colonynode_fs_chunks 1" in metrics
    )  # the get keeps no copy


def test_a_full_quota_is_a_clear_error_and_nothing_is_committed(
    colony: Colony, tmp_path: Path
) -> None:
    a = colony.founder("a")
    b = colony.daemon("b")
    token = a.invite()
    b.join(a.addr(), token)
    b.restart_with(fs_quota_bytes=CHUNK_BYTES)
    wait_until("a and b connected", lambda: a.status()["connected_peers"] == 1)
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(3 * CHUNK_BYTES))
    with pytest.raises(ApiError) as refused:
        api(a).post("/v1/fs/put", {"path": str(f), "label": "/q"})
    assert "quota" in str(refused.value) and "nothing was committed" in str(refused.value)
    assert api(a).get("/v1/fs/files?label=/q") == []
    assert b.status()["fs"]["quota_refused"] >= 1


def test_a_file_of_more_chunks_than_a_revision_lists_goes_through_manifests(
    colony: Colony, tmp_path: Path
) -> None:
    a, b, _ = three_voters(colony)
    big = tmp_path / "big.bin"
    with big.open("wb") as f:  # INLINE_CHUNKS_MAX + 3 chunks, the last one short
        for _ in range(INLINE_CHUNKS_MAX + 2):
            f.write(os.urandom(CHUNK_BYTES))
        f.write(b"tail")
    rev = put(a, big, "/m")
    assert rev["tree"] is True and rev["chunks"] == 1  # one manifest names them all
    wait_until("b sees it", lambda: sees(b, "/m", "big.bin", sha(big)))
    assert sha(get(b, "/m", "big.bin", tmp_path / "got")) == sha(big)
