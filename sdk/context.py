"""What a running function knows of its process, and how it talks back: `log` (and plain
`print`), `set_attribute`, `current()`.

The executor runs each function bound to a `ProcessContext` (in its worker process,
`colonynode.sdk.worker`, or on a thread with `--in-process`). Lines the function prints
or logs are buffered there and shipped to the node with the executor's next heartbeat
(about once a second), so a chatty function costs one API call per second, not one per
line. In a worker process everything printed is the process's; in-process, output of
threads the function starts itself is not captured.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import Any, TextIO

from colonynode.core.errors import ColonyError

__all__ = ["ProcessContext", "current", "log", "set_attribute"]

LINES_BUFFERED_MAX = 10_000  # lines held between two flushes; more are dropped, counted
ATTRIBUTES_BUFFERED_MAX = 256

_local = threading.local()


@dataclass
class ProcessContext:
    """The process a worker thread runs: its id, spec, input (a workflow process's
    parents' outputs), and the lines and attributes waiting to be sent."""

    processid: str
    spec: dict[str, Any]
    input: list[Any] = field(default_factory=list)
    fs_dir: str = ""  # the executor's ColonyFS root (its spec's fs dirs are under it)
    lines: list[str] = field(default_factory=list)
    attributes: list[tuple[str, str]] = field(default_factory=list)
    dropped: int = 0
    _partial: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def write(self, text: str) -> None:
        with self._lock:
            text = self._partial + text
            *complete, self._partial = text.split("\n")
            for line in complete:
                self._add(line)

    def add_attribute(self, key: str, value: str) -> None:
        with self._lock:
            if len(self.attributes) < ATTRIBUTES_BUFFERED_MAX:
                self.attributes.append((key, value))

    def _add(self, line: str) -> None:
        if len(self.lines) < LINES_BUFFERED_MAX:
            self.lines.append(line)
        else:
            self.dropped += 1

    def take(self, final: bool = False) -> tuple[list[str], list[tuple[str, str]]]:
        """The lines and attributes buffered since the last take (with `final`, also an
        unfinished last line)."""
        with self._lock:
            if final and self._partial:
                self._add(self._partial)
                self._partial = ""
            if final and self.dropped:
                self.lines.append(f"[{self.dropped} log lines dropped: more than"
                                  f" {LINES_BUFFERED_MAX} between two flushes]")  # fmt: skip
                self.dropped = 0
            lines, self.lines = self.lines, []
            attrs, self.attributes = self.attributes, []
        return lines, attrs


def bind(ctx: ProcessContext | None) -> None:
    """Make `ctx` the current thread's process (None: none)."""
    _local.ctx = ctx


def current() -> ProcessContext:
    """The process the calling function runs as; a ColonyError outside one."""
    ctx: ProcessContext | None = getattr(_local, "ctx", None)
    if ctx is None:
        raise ColonyError("not inside a colony process (no executor runs this thread)")
    return ctx


def log(*parts: Any) -> None:
    """Add a line to the process's log (`colonynode logs PID`), like print."""
    current().write(" ".join(str(p) for p in parts) + "\n")


def set_attribute(key: str, value: str) -> None:
    """Add a ColonyOS attribute (type OUT) to the process; shown by `colonynode get`."""
    current().add_attribute(str(key), str(value))


class StdoutRouter:
    """sys.stdout for an executor: what a process thread prints goes to its log, what
    any other thread prints goes to the real stream."""

    def __init__(self, real: TextIO) -> None:
        self.real = real

    def write(self, text: str) -> int:
        ctx = getattr(_local, "ctx", None)
        if ctx is None:
            return self.real.write(text)
        ctx.write(text)
        return len(text)

    def flush(self) -> None:
        if getattr(_local, "ctx", None) is None:
            self.real.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def route_stdout() -> None:
    """Install the router once (idempotent)."""
    if not isinstance(sys.stdout, StdoutRouter):
        sys.stdout = StdoutRouter(sys.stdout)
