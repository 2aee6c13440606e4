"""`make demo`: a real colony of three daemons on loopback, formed through the CLI.

Starts node a (owner), invites b and c (c joins through b: the join is forwarded to the
owner), makes all three voters, then shows each subsystem between the real daemons:
gossip records published on one node and listed on another, a process lease submitted,
claimed, closed exactly once and read back from a majority of voters, a ColonyFS
revision record put in the DHT on one node and read on another; then a seeded simulation
of the same protocol code. Everything is stopped and the data dirs removed at the end.
The end-to-end issue adds executors running real functions.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from colonynode.node.apiclient import ApiClient  # noqa: E402
from tests.integration.harness import CLI, Colony, Daemon, cli, cli_json, wait_until  # noqa: E402


def notes(d: Daemon) -> list[dict]:  # type: ignore[type-arg]
    return list(cli_json("gossip", "ls", "--kind", "note", "--data-dir", str(d.dir)))


def show(*args: str) -> None:
    print(f"\n$ colonynode {' '.join(args)}", flush=True)
    subprocess.run([CLI, *args], check=True)


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="colonynode-demo-"))
    colony = Colony(root)
    t0 = time.monotonic()
    try:
        print(f"colonynode demo: three daemons in {root}", flush=True)
        a = colony.founder("a")
        print(f"a is up: {a.addr()}")
        b = colony.joined("b", via=a)
        print("b joined through a")
        c = colony.daemon("c")
        c.join(b.addr(), a.invite())
        print("c joined through b (forwarded to the owner)")
        cli("voters", "set", "a", "b", "c", "--data-dir", str(a.dir))
        for d in colony.daemons.values():
            wait_until(f"{d.name} to see 3 voters",
                       lambda d=d: sum(m["voter"] for m in d.members()) == 3)  # fmt: skip
            wait_until(f"{d.name} to connect to both peers",
                       lambda d=d: d.status()["connected_peers"] == 2)  # fmt: skip
        show("members", "--data-dir", str(c.dir))
        show("status", "--data-dir", str(b.dir))

        for i in range(3):
            cli("gossip", "publish", "note", f'{{"n": {i}, "from": "b"}}', "--data-dir", str(b.dir))
        wait_until("c to hold b's notes", lambda: len(notes(c)) == 3)
        show("gossip", "ls", "--kind", "note", "--data-dir", str(c.dir))

        print("\nlease quorum: a submits, b claims and closes, c reads from a majority")
        api = {d.name: ApiClient.for_data_dir(d.dir) for d in (a, b, c)}
        print(" submit:", api["a"].post("/v1/leases/submit", {"pid": "d0d0", "maxretries": 1}))
        print(" claim: ", api["b"].post("/v1/leases/claim", {"pids": ["d0d0"]})["results"][0])
        print(" close: ", api["b"].post("/v1/leases/close", {"pid": "d0d0", "output": [3.14]}))
        print(" read:  ", api["c"].get("/v1/leases/d0d0"))

        print("\nColonyFS record in the DHT: put on a, read on c")
        digest = hashlib.sha256(b"demo").hexdigest()
        print(" put:", api["a"].post("/v1/fs/revisions", {"label": "demo", "name": "pi.txt",
                                                          "id": "r1", "sha256": digest,
                                                          "size": 4}))  # fmt: skip
        print(" get:", api["c"].get("/v1/fs/demo/pi.txt"))

        show("simulate", "--scenario", "ping", "--nodes", "200", "--seed", "1")
        print(f"\ndemo finished in {time.monotonic() - t0:.1f} s", flush=True)
        return 0
    finally:
        colony.stop_all()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
