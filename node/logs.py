"""One logging set-up for every entry point (daemon, CLI, simulator, benchmarks).

Lines are compact and carry the node's short id::

    17:53:32.114 INFO  a1b2c3 colonynode.node.daemon: listening on /ip4/...

py-libp2p's loggers are routed through the same handler at WARNING and above, folded to
one line (by default it prints multi-line warnings straight to stderr).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

__all__ = ["LIBP2P_LEVEL", "route_libp2p_logs", "set_node_id", "setup_logging"]

LIBP2P_LEVEL = logging.WARNING
_node_short_id = "-"
_handler: logging.Handler | None = None


class _CompactFormatter(logging.Formatter):
    def __init__(self, *, fold: bool) -> None:
        super().__init__(
            fmt="%(asctime)s.%(msecs)03d %(levelname)-5s %(node)s %(name)s: %(message)s",
            datefmt="%H:%M:%S",
        )
        self._fold = fold

    def format(self, record: logging.LogRecord) -> str:
        record.node = _node_short_id
        text = super().format(record)
        if self._fold:
            # One event, one line: a multi-line message or traceback is folded.
            text = " | ".join(part.rstrip() for part in text.splitlines() if part.strip())
        return text


def set_node_id(short_id: str) -> None:
    """Name the node in every following log line (its short id, DESIGN.md §12)."""
    global _node_short_id
    _node_short_id = short_id


def route_libp2p_logs() -> None:
    """Send libp2p's loggers through ours at WARNING and above.

    py-libp2p configures its root logger when it is imported (no propagation, no handler),
    so this runs again after the first import of libp2p.
    """
    lib = logging.getLogger("libp2p")
    lib.handlers.clear()
    lib.setLevel(LIBP2P_LEVEL)
    lib.propagate = True
    for name in ("multiaddr", "zeroconf", "hypercorn.error", "hypercorn.access", "httpx",
                 "httpcore"):  # fmt: skip
        logging.getLogger(name).setLevel(logging.WARNING)


def setup_logging(
    level: int | str | None = None, *, stream: TextIO | None = None, fold: bool = True
) -> None:
    """Install our handler on the root logger once; later calls only change the level.

    The level comes from the argument, else COLONYNODE_LOG (DEBUG, INFO, WARNING), else INFO.
    """
    global _handler
    if level is None:
        level = os.environ.get("COLONYNODE_LOG", "INFO").upper()
    root = logging.getLogger()
    if _handler is None:
        _handler = logging.StreamHandler(stream or sys.stderr)
        _handler.setFormatter(_CompactFormatter(fold=fold))
        for old in list(root.handlers):
            root.removeHandler(old)
        root.addHandler(_handler)
    root.setLevel(level)
    route_libp2p_logs()
