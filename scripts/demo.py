"""`make demo`: a real colony of three daemons on loopback, formed through the CLI.

1. Node a creates colony "lab"; b joins through a, c joins through b (the join is
   forwarded to the owner); all three become voters.
2. Executors serving a functions file attach to b and c; about 50 processes are
   submitted from a: quick and slower ones, one that raises, one that exceeds its
   maxexectime. Mid-run, b's daemon and executor are killed with SIGKILL: the leases they
   held expire and their processes finish on c, each result committed exactly once.
3. A results table (who ran what, how long); a workflow whose last step adds its
   parents' outputs, a function's log lines followed from another node, and a running
   process cancelled; pycolonies programs through two nodes' Colonies-compatible APIs; a
   node joining with no address through mDNS (in a private network namespace); a
   gossip record, a DHT file record, and a
   seeded simulation of the same protocol code; then everything stops and the temporary
   data dirs are removed.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from colonynode.node.apiclient import ApiClient  # noqa: E402
from colonynode.sdk import Client  # noqa: E402
from tests.integration.harness import CLI, Colony, Daemon, cli, cli_json, wait_until  # noqa: E402

FUNCTIONS = """
import math
import time
from colonynode.sdk import function, log, set_attribute

@function
def add(a, b):
    return a + b

@function
def estimate_pi(n):
    inside = sum(1 for i in range(n) if (i * 0.618033 % 1) ** 2 + (i * 0.414213 % 1) ** 2 < 1)
    return 4 * inside / n

@function
def nap(seconds):
    time.sleep(seconds)
    return f"slept {seconds} s"

@function
def total(*numbers):
    return sum(numbers)

@function
def countdown(n):
    for i in range(n, 0, -1):
        log(f"{i}...")
        time.sleep(0.2)
    print("lift-off")
    set_attribute("counted", str(n))
    return "done"

@function
def boom():
    raise RuntimeError("this function always fails")

@function
def wordcount():
    from pathlib import Path
    words = sum(len(p.read_text().split()) for p in Path("in").glob("*.txt"))
    Path("out").mkdir(exist_ok=True)
    Path("out/count.txt").write_text(f"{words} words\\n")
    return words
"""
console = Console()


def show(*args: str) -> None:
    console.print(f"\n[bold]$ colonynode {' '.join(args)}[/bold]")
    subprocess.run([CLI, *args], check=True)


def spec(funcname: str, *args: object, **extra: object) -> dict[str, object]:
    return {"funcname": funcname, "args": list(args), "maxretries": 3,
            "conditions": {"executortype": "python"}, **extra}  # fmt: skip


def start_executor(root: Path, d: Daemon) -> subprocess.Popen[bytes]:
    log = (root / f"{d.name}-executor.log").open("ab")
    return subprocess.Popen(
        [CLI, "executor", "run", str(root / "functions.py"), "--type", "python",
         "--concurrency", "2", "--data-dir", str(d.dir)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def seconds(a: str | None, b: str | None) -> str:
    if not a or not b:
        return ""
    parse = lambda t: datetime.fromisoformat(t[:26].rstrip("Z"))  # noqa: E731
    return f"{(parse(b) - parse(a)).total_seconds():.2f}"


PY_EXECUTOR = """
from pycolonies import Crypto, colonies_client
colonies, colony, colony_key, _, _ = colonies_client()
crypto = Crypto(); key = crypto.prvkey()
colonies.add_executor({"executorname": "hello-executor", "executorid": crypto.id(key),
                       "colonyname": colony, "executortype": "hello"}, colony_key)
colonies.approve_executor(colony, "hello-executor", colony_key)
print("registered", flush=True)
while True:
    try:
        process = colonies.assign(colony, 10, key)
    except Exception:
        continue
    colonies.add_log(process.processid, "Hello from executor", key)
    colonies.close(process.processid, ["hello" + "world"], key)
"""
PY_SUBMIT = """
from pycolonies import colonies_client, func_spec
colonies, colony, _, _, key = colonies_client()
spec = func_spec(func="helloworld", args=[], colonyname=colony, executortype="hello",
                 maxexectime=10, maxretries=3)
process = colonies.wait(colonies.submit_func_spec(spec, key), 30, key)
print(f"pycolonies on a's gateway: {process.processid} -> {process.output[0]}")
"""


def pycolonies_demo(root: Path, a: Daemon, c: Daemon) -> None:
    """pycolonies programs, unmodified, against two nodes' Colonies-compatible APIs."""
    import os

    console.print("\n[bold]pycolonies against the Colonies-compatible API[/bold]: an "
                  "executor through c's gateway, a submitter through a's")  # fmt: skip
    show("gateway", "env", "--data-dir", str(c.dir))
    env_a = cli_json("gateway", "env", "--data-dir", str(a.dir))
    env_c = {**cli_json("gateway", "env", "--data-dir", str(c.dir)),
             "COLONIES_COLONY_PRVKEY": env_a["COLONIES_COLONY_PRVKEY"]}  # fmt: skip
    (root / "hello_executor.py").write_text(PY_EXECUTOR)
    (root / "submit_hello.py").write_text(PY_SUBMIT)
    log = (root / "hello-executor.log").open("ab")
    executor = subprocess.Popen([sys.executable, str(root / "hello_executor.py")],
                                env={**os.environ, **env_c}, stdout=log,
                                stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_until("the pycolonies executor", lambda: "registered" in (
            root / "hello-executor.log").read_text(), timeout_s=30)  # fmt: skip
        subprocess.run([sys.executable, str(root / "submit_hello.py")], check=True,
                       env={**os.environ, **env_a}, timeout=60)  # fmt: skip
    finally:
        executor.kill()
        executor.wait()


def colonyfs_demo(root: Path, a: Daemon, c: Daemon) -> None:
    """A directory synced up on a and down on c; a process whose spec syncs /in and /out."""
    import os

    console.print("\n[bold]ColonyFS[/bold]: files kept in the colony itself (chunks on three"
                  " members, records held by the voters)")  # fmt: skip
    src = root / "fs-a"
    (src / "raw").mkdir(parents=True)
    (src / "notes.txt").write_text("colonies keep their own files\n")
    (src / "raw" / "sample.bin").write_bytes(os.urandom(700_000))
    show("fs", "sync", "-l", "/demo", "-d", str(src), "--yes", "--data-dir", str(a.dir))
    wait_until("c to list a's files", lambda: cli_json(
        "fs", "ls", "-l", "/demo/raw", "--json", "--data-dir", str(c.dir)))  # fmt: skip
    dst = root / "fs-c"
    show("fs", "sync", "-l", "/demo", "-d", str(dst), "--yes", "--data-dir", str(c.dir))
    same = all((dst / p.relative_to(src)).read_bytes() == p.read_bytes()
               for p in src.rglob("*") if p.is_file())  # fmt: skip
    console.print("synced up on a and down on c, byte for byte:", same)
    show("fs", "label", "ls", "--data-dir", str(c.dir))
    words = root / "words.txt"
    words.write_text("a colony is one computer made of many\n")
    cli("fs", "put", str(words), "-l", "/in", "--data-dir", str(a.dir))
    fs = {"dirs": [{"label": "/in", "dir": "in"}, {"label": "/out/{processid}", "dir": "out"}]}
    with Client(a.dir) as colony:
        wait_until("c to list /in", lambda: colony.fs.ls("/in") != [])
        proc = colony.wait(colony.submit(spec("wordcount", fs=fs))["processid"], timeout_s=60)
        label = f"/out/{proc['processid']}"
        wait_until("the output's record", lambda: colony.fs.ls(label) != [])
        got = colony.fs.get(label, "count.txt", root / "fs-out")
    console.print(f"a process synced /in down and {label} up:",
                  Path(got["path"]).read_text().strip())  # fmt: skip


def lan_demo(root: Path) -> None:
    """Two more daemons in a private network namespace (multicast on its loopback, so
    nothing leaves the machine): the second joins with no address, through mDNS."""
    import os

    console.print("\n[bold]A colony on a LAN[/bold]: `join --mdns` finds a member with no"
                  " address (in a private network namespace)")  # fmt: skip
    if os.geteuid() != 0:
        console.print("skipped: a private network namespace needs root")
        return
    ns = f"cndemo{os.getpid() % 100_000}"
    ip = lambda *a: subprocess.run(["ip", *a], check=True, capture_output=True)  # noqa: E731
    ip("netns", "add", ns)
    lan = Colony(root / "lan")
    try:
        for args in (("link", "set", "lo", "up"), ("link", "set", "lo", "multicast", "on"),
                     ("route", "add", "224.0.0.0/4", "dev", "lo")):  # fmt: skip
            ip("netns", "exec", ns, "ip", *args)
        home, laptop = lan.daemon("home"), lan.daemon("laptop")
        for d in (home, laptop):
            d.prefix, d.extra = ["ip", "netns", "exec", ns], ["--mdns"]
        home.init("house")
        home.start()
        token = home.invite()
        console.print(f"[bold]$ colonynode join --mdns --invite {token[:16]}...[/bold]")
        laptop.join("", token)
        show("members", "--data-dir", str(laptop.dir))
    finally:
        lan.stop_all()
        ip("netns", "del", ns)


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="colonynode-demo-"))
    colony = Colony(root)
    executors: list[subprocess.Popen[bytes]] = []
    t0 = time.monotonic()
    try:
        console.print(f"[bold]colonynode demo[/bold]: three daemons in {root}")
        a = colony.daemon("a")
        a.init("lab")
        a.extra = ["--colonies-port", "0"]  # the Colonies-compatible API, for pycolonies
        a.start()
        b = colony.joined("b", via=a)
        c = colony.daemon("c")
        c.extra = ["--colonies-port", "0"]
        c.join(b.addr(), a.invite())
        console.print("a created colony lab; b joined through a; c joined through b")
        cli("voters", "set", "a", "b", "c", "--data-dir", str(a.dir))
        for d in (a, b, c):
            wait_until(f"{d.name}: 3 voters",
                       lambda d=d: sum(m["voter"] for m in d.members()) == 3)  # fmt: skip
            wait_until(f"{d.name}: mesh", lambda d=d: d.status()["connected_peers"] == 2)
        show("members", "--data-dir", str(c.dir))

        (root / "functions.py").write_text(FUNCTIONS)
        executors = [start_executor(root, b), start_executor(root, c)]
        api = ApiClient.for_data_dir(a.dir, timeout_s=60)
        specs = [spec("add", i, i) for i in range(20)]
        specs += [spec("estimate_pi", 20_000 + i) for i in range(16)]
        specs += [spec("nap", 1.5) for _ in range(12)]
        specs += [spec("boom", maxretries=0)]
        specs += [spec("nap", 30, maxexectime=2, maxretries=1)]
        pids = [api.post("/v1/processes", {"spec": s})["processid"] for s in specs]
        console.print(f"\nsubmitted {len(pids)} processes from a (each acknowledged by a "
                      "majority of voters)")  # fmt: skip

        def closed() -> int:
            return sum(p["state"] in ("SUCCESS", "FAILED") for p in
                       cli_json("ps", "--limit", "200", "--data-dir", str(a.dir)))  # fmt: skip

        wait_until("some processes to finish", lambda: closed() >= 10, timeout_s=60)
        console.print("[bold red]SIGKILL[/bold red] b's daemon and executor mid-run")
        b.stop(signal.SIGKILL)
        executors[0].kill()
        wait_until("every process to close", lambda: closed() == len(pids), timeout_s=90)

        procs = cli_json("ps", "--limit", "200", "--data-dir", str(a.dir))
        table = Table("function", "state", "executor", "epoch", "retries", "ran s", "output")
        for p in sorted(procs, key=lambda p: (p["spec"]["funcname"], p["submissiontime"])):
            out = json.dumps(p["output"] if p["state"] == "SUCCESS" else p["errors"])
            table.add_row(p["spec"]["funcname"], p["state"], p["executor"] or "",
                          str(p["epoch"]), str(p["retries"]),
                          seconds(p["starttime"], p["endtime"]), out[:40])  # fmt: skip
        console.print(table)
        by = Counter((p["executor"], p["state"]) for p in procs)
        console.print("who ran what:", dict(by))

        console.print("\n[bold]A workflow, logs and a cancel (c's executor only)[/bold]")
        workflow = root / "workflow.json"
        workflow.write_text(json.dumps({"functionspecs": [
            {**spec("add", 1, 2), "nodename": "x"},
            {**spec("add", 10, 20), "nodename": "y"},
            {**spec("total", 100), "nodename": "sum",
             "conditions": {"executortype": "python", "dependencies": ["x", "y"]}},
        ]}))  # fmt: skip
        show("submit", str(workflow), "--wait", "--data-dir", str(a.dir))
        counted = api.post("/v1/processes", {"spec": spec("countdown", 5)})["processid"]
        show("logs", counted, "--follow", "--data-dir", str(a.dir))
        long = api.post("/v1/processes", {"spec": spec("nap", 60)})["processid"]
        wait_until("the long nap to start", lambda: cli_json(
            "get", long, "--data-dir", str(a.dir))["state"] == "RUNNING")  # fmt: skip
        show("cancel", long, "--data-dir", str(a.dir))
        majority = cli_json("get", long, "--consistent", "--data-dir", str(c.dir))
        shown = {k: majority[k] for k in ("state", "errors", "output", "consistent")}
        console.print("read from a majority of voters on c:", shown)

        console.print("\n[bold]Many calls[/bold]: Client.map (one batch of submissions,"
                      " results as they close; c's executor runs 2 at once)")  # fmt: skip
        with Client(a.dir) as client:
            began = time.monotonic()
            outputs = list(client.map("add", range(200), range(200), executortype="python"))
            took = time.monotonic() - began
        assert outputs == [[2 * i] for i in range(200)], outputs[:5]
        console.print(f"map('add', range(200), range(200)): {outputs[:3]} ... {outputs[-1]},"
                      f" in order, {200 / took:.0f} calls/s")  # fmt: skip

        console.print("\n[bold]A cron and a generator without a leader[/bold]: every tick"
                      " fires once, whichever node fires it")  # fmt: skip
        every = root / "every.json"
        every.write_text(json.dumps(spec("add", 1, 1)))
        cronid = cli("cron", "add", "--name", "every-second", "--spec", str(every),
                     "--interval", "1", "--data-dir", str(c.dir)).stdout.strip()  # fmt: skip
        wait_until("3 ticks", lambda: sum(p["state"] == "SUCCESS" for p in cli_json(
            "ps", "--cron", cronid, "--data-dir", str(a.dir))) >= 3, timeout_s=30)  # fmt: skip
        show("cron", "get", cronid, "--data-dir", str(a.dir))
        ticked = cli_json("ps", "--cron", cronid, "--data-dir", str(a.dir))
        console.print(f"{len(ticked)} ticks, {len({p['submissiontime'] for p in ticked})}"
                      " distinct: one graph a tick")  # fmt: skip
        show("cron", "rm", cronid, "--data-dir", str(a.dir))
        pair = root / "pair.json"
        pair.write_text(json.dumps({"funcname": "add", "conditions": {"executortype": "python"}}))
        gid = cli("generator", "add", "--name", "pairs", "--spec", str(pair), "--trigger", "2",
                  "--data-dir", str(a.dir)).stdout.strip()  # fmt: skip
        for word, d in (("col", a), ("ony", c), ("no", a), ("de", c)):
            cli("generator", "pack", gid, word, "--data-dir", str(d.dir))
        wait_until("two batches", lambda: sum(p["state"] == "SUCCESS" for p in cli_json(
            "ps", "--generator", gid, "--data-dir", str(c.dir))) == 2, timeout_s=30)  # fmt: skip
        batched = cli_json("ps", "--generator", gid, "--data-dir", str(c.dir))
        console.print("a generator, trigger 2, four args packed on a and c:",
                      sorted(p["output"][0] for p in batched), "(each arg used once)")  # fmt: skip

        pycolonies_demo(root, a, c)
        colonyfs_demo(root, a, c)
        lan_demo(root)

        console.print("\n[bold]Voters that manage themselves[/bold] (b, killed above, would "
                      "be replaced once away 60 s: the demo ends sooner)")  # fmt: skip
        show("voters", "auto", "--data-dir", str(a.dir))
        console.print("the simulator checks it: joins, leaves, voter deaths, under faults")
        show("simulate", "--scenario", "voters", "--seeds", "1..3", "--faults", "chaos")
        console.print("\n[bold]Seeing the colony[/bold]: `colonynode top` (live; one frame "
                      "here) and the web dashboard the node serves")  # fmt: skip
        show("top", "--once", "--data-dir", str(a.dir))
        url = subprocess.run([CLI, "dashboard", "--print", "--data-dir", str(a.dir)],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        console.print(f"`colonynode dashboard` opens {url.split('#')[0]} in a browser "
                      "(the API token rides in the URL's fragment)")  # fmt: skip
        st = cli_json("status", "--data-dir", str(a.dir))
        ret, links = st["retention"], st["links"]
        console.print(
            f"\n[bold]Bounded over time[/bold] (`status --json`): a's voter holds "
            f"{ret['registers']} registers (closed ones are dropped 10 min after, once every "
            f"voter holds the result), its view {ret['view']} processes; it links to "
            f"{links['voters']} other voter(s) and {links['others']} other member(s) (at most "
            f"{links['bound']} besides the voters, in colonies larger than this one)"
        )
        console.print("\n[bold]Other subsystems between the same daemons[/bold]")
        cli("gossip", "publish", "note", '{"text": "hello from c"}', "--data-dir", str(c.dir))
        wait_until("a to hold c's note", lambda: cli_json(
            "gossip", "ls", "--kind", "note", "--data-dir", str(a.dir)))  # fmt: skip
        show("gossip", "ls", "--kind", "note", "--data-dir", str(a.dir))
        show("simulate", "--scenario", "ping", "--nodes", "500", "--seed", "1", "--faults", "chaos")
        console.print(
            "\n[bold]The same NodeCore the daemons run, 100 of them in one process[/bold]"
            " (processes, gossip, DHT, lease quorum; faults drawn from the seed)"
        )
        show("simulate", "--scenario", "claims", "--nodes", "100", "--seeds", "1..3")
        console.print(f"\ndemo finished in {time.monotonic() - t0:.1f} s")
        return 0
    finally:
        for e in executors:
            e.kill()
        colony.stop_all()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
