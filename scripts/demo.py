"""`make demo`: a real colony of three daemons on loopback, formed through the CLI.

Starts node a (owner), invites b and c, makes all three voters, shows the roster from
each node, runs a seeded simulation of the same protocol code, then stops everything
and removes the temporary data dirs. The end-to-end issue adds executors and processes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.harness import CLI, Colony, cli, wait_until  # noqa: E402


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
        for name in ("b", "c"):
            colony.joined(name, via=a)
            print(f"{name} joined through a")
        cli("voters", "set", "a", "b", "c", "--data-dir", str(a.dir))
        for d in colony.daemons.values():
            wait_until(f"{d.name} to see 3 voters",
                       lambda d=d: sum(m["voter"] for m in d.members()) == 3)  # fmt: skip
            wait_until(f"{d.name} to connect to both peers",
                       lambda d=d: d.status()["connected_peers"] == 2)  # fmt: skip
        show("members", "--data-dir", str(colony.daemons["c"].dir))
        show("status", "--data-dir", str(colony.daemons["b"].dir))
        show("simulate", "--scenario", "ping", "--nodes", "200", "--seed", "1")
        print(f"\ndemo finished in {time.monotonic() - t0:.1f} s", flush=True)
        return 0
    finally:
        colony.stop_all()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
