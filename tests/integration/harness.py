"""Real daemons as OS processes on 127.0.0.1, driven through the `colonynode` CLI.

Waiting is polling a condition with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

CLI = str(Path(sys.executable).parent / "colonynode")
LISTEN = "/ip4/127.0.0.1/tcp/0"
POLL_S = 0.05
T = TypeVar("T")


def wait_until(what: str, condition: Callable[[], T], timeout_s: float = 20.0) -> T:
    """Poll `condition` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(POLL_S)


class Gate:
    """A gate a workload function waits at until the test opens it, with no clock: the
    function connects to this Unix socket and blocks reading one byte, which the test
    sends when it opens the gate (at once to a run that connects afterwards, such as a
    retry elsewhere). A run that was killed meanwhile just misses its byte."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="gate")  # short: Unix socket paths are short
        self.path = os.path.join(self._dir, "s")
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(16)
        self._lock = threading.Lock()
        self._opened = False
        self._waiting: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:  # closed
                return
            with self._lock:
                if self._opened:
                    _let_through(conn)
                else:
                    self._waiting.append(conn)

    def open(self) -> None:
        with self._lock:
            self._opened = True
            for conn in self._waiting:
                _let_through(conn)
            self._waiting.clear()

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.close()
        with self._lock:
            for conn in self._waiting:
                conn.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def _let_through(conn: socket.socket) -> None:
    try:
        conn.sendall(b"o")
    except OSError:
        pass  # that run is gone
    finally:
        conn.close()


def pid_alive(pid: int) -> bool:
    """Is process `pid` running? (A zombie nobody reaped yet counts as ended.)"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def cli(
    *args: str, check: bool = True, timeout_s: float = 60.0
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLONYNODE_LOG": "INFO"}
    env.pop("COLONYNODE_HOME", None)
    result = subprocess.run(
        [CLI, *args], capture_output=True, text=True, timeout=timeout_s, env=env, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"colonynode {' '.join(args)} failed: {result.stderr}{result.stdout}")
    return result


def cli_json(*args: str) -> Any:
    return json.loads(cli(*args, "--json").stdout)


def state_of(d: Daemon, pid: str) -> str | None:
    """The process's state in `d`'s view; None while `d` has not heard of it yet (any
    other error fails)."""
    got = cli("get", pid, "--json", "--data-dir", str(d.dir), check=False)
    if got.returncode != 0 and got.stderr.startswith("error: no process"):
        return None
    assert got.returncode == 0, got.stderr
    return str(json.loads(got.stdout)["state"])


class Daemon:
    """One `colonynode start` (or `join`) process and its data dir."""

    def __init__(self, data_dir: Path, name: str) -> None:
        self.dir = data_dir
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{name}.log"
        self.started_at = 0.0
        self.prefix: list[str] = []  # e.g. `ip netns exec NS` (tests/chaos/netns.py)
        self.program = [CLI]  # or another entry point, e.g. tests/integration/forging_member.py
        self.extra: list[str] = []  # more `start`/`join` options, e.g. --colonies-port 0
        self.listen = LISTEN

    def init(self, colony: str = "lab", voters: str = "pinned") -> None:
        """Tests choose their voters (`voters set`) unless they ask for auto."""
        cli("init", "--colony", colony, "--data-dir", str(self.dir), "--name", self.name,
            "--voters", voters)  # fmt: skip

    def _spawn(self, *args: str) -> None:
        log = self.log_path.open("ab")
        env = {**os.environ, "COLONYNODE_LOG": "INFO"}
        self.started_at = time.monotonic()
        argv = [*self.prefix, *self.program, *args, "--data-dir", str(self.dir)]
        argv += ["--name", self.name]
        self.proc = subprocess.Popen(
            [*argv, "--listen", self.listen, *self.extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        log.close()

    def start(self, wait: bool = True) -> Daemon:
        self._spawn("start")
        if wait:
            self.wait_ready()
        return self

    def join(self, addr: str, token: str, wait: bool = True) -> Daemon:
        self._spawn("join", addr, "--invite", token)
        if wait:
            self.wait_ready()
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.log()}")
        if not (self.dir / "api.json").exists():
            return False
        return cli("status", "--data-dir", str(self.dir), "--json", check=False).returncode == 0

    def wait_ready(self, timeout_s: float = 30.0) -> float:
        wait_until(f"{self.name} to be ready", self._ready, timeout_s)
        return time.monotonic() - self.started_at

    def status(self) -> Any:
        return cli_json("status", "--data-dir", str(self.dir))

    def members(self) -> Any:
        return cli_json("members", "--data-dir", str(self.dir))

    def member_names(self) -> set[str]:
        return {m["name"] for m in self.members()}

    def addr(self) -> str:
        return str(self.status()["addrs"][0])

    def invite(self, roles: str = "executor,submitter", ttl: str = "1h") -> str:
        out = cli("invite", "--data-dir", str(self.dir), "--roles", roles, "--ttl", ttl)
        return out.stdout.strip().splitlines()[-1]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=timeout_s)

    def restart_with(self, **settings: Any) -> Daemon:
        """Stopped, `settings` written into its node.json, started again."""
        self.stop()
        path = self.dir / "node.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **settings}))
        return self.start()

    def wait_exit(self, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)


class Colony:
    """Daemons created in one temporary directory; all stopped at the end of the test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.daemons: dict[str, Daemon] = {}

    def daemon(self, name: str) -> Daemon:
        d = Daemon(self.root / name, name)
        self.daemons[name] = d
        return d

    def founder(self, name: str = "a", colony: str = "lab") -> Daemon:
        d = self.daemon(name)
        d.init(colony)
        return d.start()

    def joined(self, name: str, via: Daemon, roles: str = "executor,submitter") -> Daemon:
        d = self.daemon(name)
        d.join(via.addr(), via.invite(roles))
        return d

    def stop_all(self) -> None:
        for d in self.daemons.values():
            d.stop()


class Executors:
    """`colonynode executor run` processes serving one functions file, one per daemon."""

    def __init__(
        self, root: Path, functions: str, executortype: str = "py", concurrency: int = 1
    ) -> None:
        """`concurrency` 1 by default: most tests watch one call at a time."""
        self.concurrency = concurrency
        self.file = root / "functions.py"
        self.file.write_text(functions)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.root = root
        self.executortype = executortype

    def start(self, d: Daemon, concurrency: int | None = None) -> None:
        log = (self.root / f"{d.name}-executor.log").open("ab")
        slots = concurrency or self.concurrency
        self.procs[d.name] = subprocess.Popen(
            [CLI, "executor", "run", str(self.file), "--type", self.executortype,
             "--concurrency", str(slots), "--data-dir", str(d.dir)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()

    def log(self, d: Daemon) -> str:
        path = self.root / f"{d.name}-executor.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        for p in self.procs.values():
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


def three_voters(colony: Colony) -> list[Daemon]:
    """a (owner), b and c joined through a, all three voters, fully connected."""
    a = colony.founder("a")
    nodes = [a, colony.joined("b", via=a), colony.joined("c", via=a)]
    cli("voters", "set", "a", "b", "c", "--data-dir", str(a.dir))
    for d in nodes:
        wait_until(f"{d.name}: 3 voters", lambda d=d: sum(m["voter"] for m in d.members()) == 3)
        wait_until(f"{d.name}: mesh", lambda d=d: d.status()["connected_peers"] == 2)
    return nodes
