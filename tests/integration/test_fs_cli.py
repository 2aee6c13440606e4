"""ColonyFS through the CLI and the SDK between real daemons: a file put on one node is
read byte for byte on another; revisions, removal, labels, snapshots and directory sync
behave as ColonyOS's `fs` commands do; bad input is a one-line error.

The colony spreads file records by gossip: a test that wrote on one node polls the
other until it has heard before reading there."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonynode.sdk import Client
from colonynode.sdk.fs import TransferFailed
from tests.integration.harness import CLI, Colony, Daemon, cli, cli_json, three_voters, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Daemon]]:
    """Three voters for the whole module: each test works under labels of its own."""
    colony = Colony(tmp_path_factory.mktemp("colony"))
    try:
        yield three_voters(colony)
    finally:
        colony.stop_all()


def fs(d: Daemon, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return cli("fs", *args, "--data-dir", str(d.dir), check=check)


def fs_json(d: Daemon, *args: str) -> Any:
    return cli_json("fs", *args, "--data-dir", str(d.dir))


def answering(d: Daemon, stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`colonynode fs ARGS` with `stdin` typed at its confirmation prompt."""
    env = {k: v for k, v in os.environ.items() if k != "COLONYNODE_HOME"}
    argv = [CLI, "fs", *args, "--data-dir", str(d.dir)]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60,
                          env=env, check=False)  # fmt: skip


def names(d: Daemon, label: str) -> set[str]:
    return {r["name"] for r in fs_json(d, "ls", "-l", label)}


def revisions(d: Daemon, label: str, name: str) -> list[dict[str, Any]]:
    """`fs info` on `d`: [] while `d` has not heard of the file."""
    got = fs(d, "info", "-l", label, "-n", name, "--json", check=False)
    if got.returncode != 0 and "no file" in got.stderr:
        return []
    assert got.returncode == 0, got.stderr
    return list(json.loads(got.stdout))


def labels(d: Daemon, prefix: str = "/") -> dict[str, int]:
    """`d`'s labels that start with `prefix`, and their files."""
    return {x["label"]: x["files"] for x in fs_json(d, "label", "ls")
            if x["label"].startswith(prefix)}  # fmt: skip


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file under `root` by relative path (the `.cfs` marker aside)."""
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".cfs"}  # fmt: skip


def one_line_error(got: subprocess.CompletedProcess[str], *words: str) -> None:
    assert got.returncode != 0, got.stdout
    assert len(got.stderr.strip().splitlines()) == 1, got.stderr
    assert got.stderr.startswith("error: "), got.stderr
    for word in words:
        assert word in got.stderr, got.stderr


def test_a_file_put_on_one_node_is_got_byte_for_byte_on_another(
    nodes: list[Daemon], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, _ = nodes
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(4 * 1024 * 1024 + 12_345))  # 17 chunks, the last one short
    small = tmp_path / "notes.txt"
    small.write_text("ColonyFS: files stored in the colony\n")
    rev = fs_json(a, "put", str(big), "-l", "/xfer")
    assert (rev["label"], rev["name"], rev["seq"]) == ("/xfer", "big.bin", 1)
    assert rev["checksum"] == sha256(big.read_bytes()) and rev["checksumalg"] == "SHA256"
    assert rev["size"] == big.stat().st_size
    monkeypatch.chdir(tmp_path)  # a relative FILE is the caller's
    assert fs_json(a, "put", "notes.txt", "-l", "xfer/", "-n", "readme")["label"] == "/xfer"
    wait_until("b lists both", lambda: names(b, "/xfer") == {"big.bin", "readme"})
    out = tmp_path / "on-b"
    got = fs_json(b, "get", "-l", "/xfer", "-n", "big.bin", "-d", str(out))
    assert got["path"] == str(out / "big.bin") and got["fileid"] == rev["fileid"]
    assert (out / "big.bin").read_bytes() == big.read_bytes()
    text = fs(b, "get", "-l", "/xfer", "-n", "readme", "-d", str(out)).stdout
    assert text.startswith("got /xfer/readme revision 1") and str(out / "readme") in text, text
    assert (out / "readme").read_bytes() == small.read_bytes()


def test_a_second_put_is_revision_two_and_rm_removes_every_revision(
    nodes: list[Daemon], tmp_path: Path
) -> None:
    a, b, c = nodes
    file = tmp_path / "model.json"
    file.write_text('{"version": 1}')
    first = fs_json(a, "put", str(file), "-l", "/revs")
    file.write_text('{"version": 2, "better": true}')
    second = fs_json(a, "put", str(file), "-l", "/revs")
    assert (first["seq"], second["seq"]) == (1, 2) and first["fileid"] != second["fileid"]
    wait_until("b has both revisions", lambda: len(revisions(b, "/revs", "model.json")) == 2)
    revs = revisions(b, "/revs", "model.json")
    assert [r["seq"] for r in revs] == [1, 2]
    assert [r["fileid"] for r in revs] == [first["fileid"], second["fileid"]]
    [latest] = fs_json(b, "ls", "-l", "/revs")
    assert latest["seq"] == 2 and latest["checksum"] == sha256(file.read_bytes())
    assert "model.json" in fs(b, "ls", "-l", "/revs").stdout
    old = fs_json(b, "get", "-l", "/revs", "-n", "model.json", "-d", str(tmp_path / "old"),
                  "--revision", first["fileid"])  # fmt: skip
    assert old["seq"] == 1 and Path(old["path"]).read_text() == '{"version": 1}'
    assert "removed /revs/model.json" in fs(b, "rm", "-l", "/revs", "-n", "model.json").stdout
    for d in (a, b, c):
        wait_until(f"{d.name}: /revs empty", lambda d=d: fs_json(d, "ls", "-l", "/revs") == [])
    gone = fs(a, "info", "-l", "/revs", "-n", "model.json", check=False)
    one_line_error(gone, "no file")


def test_label_ls_counts_files_and_label_rm_removes_sub_labels_too(
    nodes: list[Daemon], tmp_path: Path
) -> None:
    a, b, c = nodes
    file = tmp_path / "x.txt"
    file.write_text("x")
    for label, name in (("/lab", "one"), ("/lab", "two"), ("/lab/sub", "three"), ("/lab2", "x")):
        fs(a, "put", str(file), "-l", label, "-n", name)
    counts = {"/lab": 2, "/lab/sub": 1, "/lab2": 1}
    wait_until("b counts them", lambda: labels(b, "/lab") == counts)
    assert "sub-labels: /lab/sub (1)" in fs(b, "ls", "-l", "/lab").stdout
    no = answering(b, "n\n", "label", "rm", "-l", "/lab")
    assert no.returncode != 0 and "remove 3 files under /lab" in no.stdout, no.stdout
    assert labels(b)["/lab"] == 2
    assert "removed 3 files under /lab" in fs(b, "label", "rm", "-l", "/lab", "--yes").stdout
    for d in (a, b, c):
        # /lab2 only starts like /lab: it is not under it
        wait_until(f"{d.name}: /lab gone", lambda d=d: labels(d, "/lab") == {"/lab2": 1})
    one_line_error(fs(a, "label", "rm", "-l", "/lab", "--yes", check=False), "no files")


def test_a_snapshot_keeps_the_revisions_it_was_taken_of(
    nodes: list[Daemon], tmp_path: Path
) -> None:
    a, b, c = nodes
    src = tmp_path / "src"
    (src / "deep").mkdir(parents=True)
    (src / "top.txt").write_text("before the snapshot")
    (src / "deep" / "data.bin").write_bytes(os.urandom(700_000))
    fs(a, "put", str(src / "top.txt"), "-l", "/snap")
    fs(a, "put", str(src / "deep" / "data.bin"), "-l", "/snap/deep")
    snap = fs_json(a, "snapshot", "create", "-l", "/snap", "-n", "snap-one")
    assert (snap["name"], snap["label"], snap["files"]) == ("snap-one", "/snap", 2)
    (tmp_path / "top.txt").write_text("after the snapshot")
    fs(a, "put", str(tmp_path / "top.txt"), "-l", "/snap")  # revision 2, not in the snapshot

    def b_has_it() -> bool:
        known = {s["name"] for s in fs_json(b, "snapshot", "ls")}
        return ("snap-one" in known and len(revisions(b, "/snap", "top.txt")) == 2
                and names(b, "/snap/deep") == {"data.bin"})  # fmt: skip

    wait_until("b knows the snapshot and both files", b_has_it)
    info = fs_json(b, "snapshot", "info", "-n", "snap-one")
    assert info["snapshotid"] == snap["snapshotid"] and sorted(info["fileids"]) == sorted(
        snap["fileids"]
    )
    assert "snap-one" in fs(b, "snapshot", "ls").stdout
    assert fs_json(b, "snapshot", "info", "-n", snap["snapshotid"])["name"] == "snap-one"
    out = tmp_path / "restored"
    said = fs(b, "snapshot", "download", "-n", "snap-one", "-d", str(out)).stdout
    assert "downloaded 2 files" in said, said
    assert tree(out) == tree(src)  # the first revision of top.txt, deep/ as a subdirectory
    assert "removed snapshot snap-one" in fs(c, "snapshot", "rm", "-n", "snap-one").stdout
    for d in (a, b, c):
        wait_until(f"{d.name}: snapshot gone", lambda d=d: all(
            s["name"] != "snap-one" for s in fs_json(d, "snapshot", "ls")))  # fmt: skip
    one_line_error(fs(a, "snapshot", "info", "-n", "snap-one", check=False), "no snapshot")


def test_sync_plans_dry_asks_first_and_reproduces_a_nested_directory(
    nodes: list[Daemon], tmp_path: Path
) -> None:
    a, b, _ = nodes
    src = tmp_path / "project"
    (src / "raw" / "2026").mkdir(parents=True)
    (src / "README").write_text("a synced project\n")
    (src / "empty").write_bytes(b"")
    (src / "raw" / "samples.bin").write_bytes(os.urandom(1_500_000))
    (src / "raw" / "2026" / "12.csv").write_text("day,value\n1,2\n")
    # --dry: the plan, and nothing written to the colony nor a .cfs file to the directory
    plan = fs(a, "sync", "-l", "/proj", "-d", str(src), "--dry").stdout
    assert "upload 4, download 0" in plan, plan
    for name in ("/proj/README", "/proj/empty", "/proj/raw/samples.bin", "/proj/raw/2026/12.csv"):
        assert f"upload    {name}" in plan, plan
    assert fs_json(a, "sync", "-l", "/proj", "-d", str(src), "--dry")["upload"] == 4
    # without --yes: the plan, then a question; "n" changes nothing
    no = answering(a, "n\n", "sync", "-l", "/proj", "-d", str(src))
    assert no.returncode != 0 and "upload 4" in no.stdout and "this sync?" in no.stdout, no.stdout
    assert labels(a, "/proj") == {} and not (src / ".cfs").exists()
    done = fs_json(a, "sync", "-l", "/proj", "-d", str(src), "--yes")
    assert (done["upload"], done["download"], done["dry"]) == (4, 0, False)
    assert (src / ".cfs").exists()
    counts = {"/proj": 2, "/proj/raw": 1, "/proj/raw/2026": 1}
    wait_until("b has the tree", lambda: labels(b, "/proj") == counts)
    dst = tmp_path / "copy"
    yes = answering(b, "y\n", "sync", "-l", "/proj", "-d", str(dst))
    assert yes.returncode == 0 and "download 4" in yes.stdout, yes.stdout + yes.stderr
    assert "downloaded 4" in yes.stdout, yes.stdout
    assert tree(dst) == tree(src)
    # again, the label from .cfs: nothing to do, so nothing asked
    again = fs(b, "sync", "-d", str(dst))
    assert "nothing to do" in again.stdout and "unchanged 4" in again.stdout, again.stdout
    # a conflict: the local file wins with --keeplocal (a new revision), else the colony's
    (dst / "README").write_text("edited on b\n")
    kept = fs_json(b, "sync", "-d", str(dst), "--keepremote", "--dry")
    assert kept["conflicted"] == ["/proj/README"] and kept["download"] == 1
    up = fs_json(b, "sync", "-d", str(dst), "--yes")
    assert (up["conflicts"], up["upload"], up["download"]) == (1, 1, 0)
    readme = fs_json(b, "info", "-l", "/proj", "-n", "README")
    assert [r["seq"] for r in readme] == [1, 2] and readme[1]["checksum"] == sha256(
        b"edited on b\n"
    )


def test_bad_input_is_one_line_error(nodes: list[Daemon], tmp_path: Path) -> None:
    a, _, _ = nodes
    file = tmp_path / "f.txt"
    file.write_text("f")
    one_line_error(fs(a, "ls", "-l", "/a/../b", check=False), "label")
    one_line_error(fs(a, "put", str(file), "-l", "/a/../b", check=False), "label")
    one_line_error(fs(a, "put", str(tmp_path / "missing"), "-l", "/bad", check=False),
                   "is not a file")  # fmt: skip
    one_line_error(fs(a, "put", str(file), "-l", "/bad", "-n", "..", check=False), "name")
    one_line_error(fs(a, "get", "-l", "/bad", "-n", "nope", "-d", str(tmp_path), check=False),
                   "no file")  # fmt: skip
    one_line_error(fs(a, "sync", "-d", str(tmp_path / "no-cfs"), check=False), "-l LABEL")
    assert "/bad" not in labels(a)
    # a transfer that fails in the daemon (its target is a directory) says why, one line
    fs(a, "put", str(file), "-l", "/clash")
    (tmp_path / "out" / "f.txt").mkdir(parents=True)
    clash = fs(a, "get", "-l", "/clash", "-n", "f.txt", "-d", str(tmp_path / "out"), check=False)
    one_line_error(clash, "get failed", "f.txt")
    with Client(a.dir) as colony, pytest.raises(TransferFailed, match="get failed"):
        colony.fs.get("/clash", "f.txt", tmp_path / "out")


def test_the_sdk_puts_and_gets_with_relative_paths(
    nodes: list[Daemon], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, _ = nodes
    monkeypatch.chdir(tmp_path)
    Path("weights.bin").write_bytes(data := os.urandom(2_000_000))
    seen: list[dict[str, Any]] = []
    with Client(a.dir) as colony:
        rev = colony.fs.put("weights.bin", "/sdk", on_progress=seen.append)
    assert rev["name"] == "weights.bin" and rev["checksum"] == sha256(data)
    assert seen[-1]["state"] == "done" and seen[-1]["bytes_done"] == len(data)
    with Client(b.dir) as colony:
        wait_until("b lists it", lambda: [r["name"] for r in colony.fs.ls("/sdk")] == [rev["name"]])
        got = colony.fs.get("/sdk", "weights.bin", Path("out"))
        assert got["path"] == str(tmp_path / "out" / "weights.bin")
        assert (tmp_path / "out" / "weights.bin").read_bytes() == data
        assert [r["seq"] for r in colony.fs.info("/sdk", "weights.bin")] == [1]
        assert {"label": "/sdk", "files": 1} in colony.fs.labels()
        plan = colony.fs.sync("/sdk", "out", dry=True)
        assert (plan["unchanged"], plan["upload"], plan["download"]) == (1, 0, 0)
        assert colony.fs.remove_label("/sdk") == {"removed": 1}
