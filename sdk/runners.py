"""Where an executor's functions run: in a worker process (the default), or on threads.

`ProcessRunner` keeps one worker process (a fresh interpreter, started with
`subprocess`, talking over a socket pair) that loads the functions file and runs one
call at a time. (Not multiprocessing's `spawn`: it also starts its resource tracker, a
third process of 12.8 MiB that nothing here needs.) What the call prints, from any thread,
and what it logs or sets as attributes come back over a pipe into the run's
`ProcessContext`. When a run must stop (maxexectime, a lost lease, a cancel) the worker
is killed, for real, and the next run starts a fresh one; a worker that dies by itself
(a crash, `os._exit`) fails the process with its exit code. The worker exits on its own
if the executor dies.

`ThreadRunner` (`colonynode executor run --in-process`) calls the functions on a thread
of the executor: no start-up cost and shared memory, but a call that must stop can only
be abandoned: a Python thread cannot be killed, so it may run on.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from colonynode.sdk.context import ProcessContext, bind
from colonynode.sdk.functions import FunctionError, load_functions, run_function

__all__ = ["ProcessRunner", "Run", "Runner", "ThreadRunner"]

log = logging.getLogger(__name__)

WORKER_START_S = 120.0  # loading a functions file may take a while (imports, models)
WORKER_STOP_S = 2.0  # SIGTERM, then SIGKILL after this
PARENT_CHECK_S = 1.0  # the worker checks this often that its executor still lives


class Run:
    """One call in progress; `outcome` is `{"output": [...]}` or `{"error": "..."}` once
    it is done."""

    def __init__(self, target: Callable[[Run], None], name: str) -> None:
        self.outcome: dict[str, Any] = {}
        self._thread = threading.Thread(target=target, args=(self,), name=name, daemon=True)
        self._thread.start()

    def join(self, timeout_s: float | None) -> None:
        self._thread.join(timeout_s)

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()


class _PipeRun(Run):
    """A call in the worker process, relayed by whoever waits for it (`join`), not by a
    thread of its own: waking a relay thread and then its joiner cost a no-op call 4 ms
    in one run of ten on this 2-core machine (p90 4.0 ms against 0.04 ms inline)."""

    def __init__(self, runner: ProcessRunner, proc: _Worker, conn: Connection,
                 ctx: ProcessContext) -> None:  # fmt: skip
        self.outcome = {}
        self._runner, self._proc, self._conn, self._ctx = runner, proc, conn, ctx
        self._done = False

    def join(self, timeout_s: float | None) -> None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self._done:
            left_s = None if deadline is None else deadline - time.monotonic()
            if left_s is not None and left_s <= 0:
                return
            try:
                if not self._conn.poll(left_s):
                    return
                kind, *rest = self._conn.recv()
            except (EOFError, OSError):
                self._proc.join(WORKER_STOP_S)
                self.outcome["error"] = (f"the worker process died (exit code"
                                         f" {self._proc.exitcode})")  # fmt: skip
                self._runner._died(self._proc)
                self._done = True
                return
            if kind == "write":
                self._ctx.write(rest[0])
            elif kind == "attribute":
                self._ctx.add_attribute(rest[0], rest[1])
            elif kind == "done":
                self.outcome.update(rest[0])
                self._done = True

    @property
    def done(self) -> bool:
        return self._done


class ThreadRunner:
    """Calls functions on a thread of this process (`--in-process`)."""

    def __init__(self, functions: dict[str, Callable[..., Any]]) -> None:
        self.functions = functions
        self.names = sorted(functions)

    def start(self, ctx: ProcessContext, args: list[Any], kwargs: dict[str, Any]) -> Run:
        fn = self.functions[ctx.spec["funcname"]]

        def call(run: Run) -> None:
            bind(ctx)
            try:
                run.outcome["output"] = run_function(fn, args, kwargs)
            except Exception as exc:
                run.outcome["error"] = f"{type(exc).__name__}: {exc}"
            finally:
                bind(None)

        return Run(call, f"process-{ctx.processid[:8]}")

    def stop(self, run: Run) -> bool:
        """A thread cannot be stopped: False (the call may run on; its result is dropped)."""
        return False

    def close(self) -> None:
        pass


class ProcessRunner:
    """Calls functions in a worker process that can be killed."""

    def __init__(self, path: str) -> None:
        self.path = str(path)
        self._proc: _Worker | None = None
        self._conn: Connection | None = None
        self.started = 0  # worker processes started (1 + one per kill or crash)
        self.names = self._start()

    def _start(self) -> list[str]:
        proc = _Worker(self.path)
        mine = proc.conn
        self.started += 1
        try:
            if not mine.poll(WORKER_START_S):
                raise FunctionError(f"{self.path}: the worker did not load it in"
                                    f" {WORKER_START_S:.0f} s")  # fmt: skip
            kind, detail = mine.recv()
        except (EOFError, OSError):
            proc.join(WORKER_STOP_S)
            raise FunctionError(
                f"{self.path}: the worker process exited while loading it (exit code"
                f" {proc.exitcode})"
            ) from None
        except FunctionError:
            _kill(proc)
            raise
        if kind == "error":
            proc.join(WORKER_STOP_S)
            raise FunctionError(str(detail))
        self._proc, self._conn = proc, mine
        return list(detail)

    def start(self, ctx: ProcessContext, args: list[Any], kwargs: dict[str, Any]) -> Run:
        if self._proc is None or not self._proc.is_alive():
            self._start()
        conn, proc = self._conn, self._proc
        assert conn is not None and proc is not None
        conn.send(("run", ctx.spec["funcname"], args, kwargs, ctx.processid, ctx.spec,
                   ctx.input, ctx.fs_dir))  # fmt: skip
        return _PipeRun(self, proc, conn, ctx)

    def _died(self, proc: _Worker) -> None:
        if self._proc is proc:
            self._proc = self._conn = None

    def stop(self, run: Run) -> bool:
        """Kill the worker (the call with it); the next run starts a new one."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if proc is None:
            return True
        _kill(proc)
        if conn is not None:
            conn.close()
        run.join(WORKER_STOP_S)
        return True

    def close(self) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            try:
                conn.send(("exit",))
            except OSError:
                pass
        if proc is not None:
            proc.join(WORKER_STOP_S)
            _kill(proc)


class _Worker:
    """A worker process: `python -c` of `_main`, its end of a socket pair by number."""

    def __init__(self, path: str) -> None:
        mine, theirs = socket.socketpair()
        with theirs:
            code = "from colonynode.sdk.runners import _main; _main()"
            self.proc = subprocess.Popen(
                [sys.executable, "-B", "-c", code, str(theirs.fileno()), path, str(os.getpid())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self.conn = Connection(mine.detach())

    @property
    def exitcode(self) -> int | None:
        return self.proc.poll()

    def is_alive(self) -> bool:
        return self.proc.poll() is None

    def join(self, timeout_s: float) -> None:
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pass

    def terminate(self) -> None:
        if self.is_alive():
            self.proc.terminate()

    def kill(self) -> None:
        if self.is_alive():
            self.proc.kill()


def _kill(proc: _Worker) -> None:
    if proc.is_alive():
        proc.terminate()
        proc.join(WORKER_STOP_S)
    if proc.is_alive():
        proc.kill()
        proc.join(WORKER_STOP_S)


# -- inside the worker process --------------------------------------------------------


def _nowhere(msg: tuple[Any, ...]) -> None:
    pass


@dataclass
class _RemoteContext(ProcessContext):
    """The worker's side of a run: lines and attributes go straight to the executor."""

    send: Callable[[tuple[Any, ...]], None] = field(default=_nowhere, repr=False)

    def write(self, text: str) -> None:
        self.send(("write", text))

    def add_attribute(self, key: str, value: str) -> None:
        self.send(("attribute", key, value))


class _PipeOut:
    """The worker's sys.stdout: whatever any thread prints is the current run's log."""

    def __init__(self, send: Callable[[tuple[Any, ...]], None], real: Any) -> None:
        self.send, self.real = send, real

    def write(self, text: str) -> int:
        if text:
            self.send(("write", text))
        return len(text)

    def flush(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _main() -> None:
    """The worker process's entry: `python -c ... FD PATH PARENT_PID`."""
    fd, path, parent_pid = sys.argv[1:4]
    _serve(Connection(int(fd)), path, int(parent_pid))


def _serve(conn: Connection, path: str, parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the executor's to handle
    lock = threading.Lock()

    def send(msg: tuple[Any, ...]) -> None:
        with lock:
            conn.send(msg)

    def orphaned() -> None:  # the executor died (even by SIGKILL): stop with it
        while True:
            time.sleep(PARENT_CHECK_S)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=orphaned, name="parent-check", daemon=True).start()
    try:
        functions = load_functions(path)
    except FunctionError as exc:
        send(("error", str(exc)))
        return
    send(("ready", sorted(functions)))
    sys.stdout = _PipeOut(send, sys.stdout)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] != "run":
            return
        _, name, args, kwargs, pid, spec, given, fs_dir = msg
        ctx = _RemoteContext(pid, spec, list(given), fs_dir, send=send)
        if fs_dir:
            os.chdir(fs_dir)  # a worker runs one call at a time: its own working directory
        bind(ctx)
        try:
            outcome: dict[str, Any] = {"output": run_function(functions[name], args, kwargs)}
        except Exception as exc:
            outcome = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            bind(None)
        try:
            send(("done", outcome))
        except (OSError, ValueError):
            return


Runner = ProcessRunner | ThreadRunner
