"""One compact log format with the node's short id; libp2p routed through it, folded."""

from __future__ import annotations

import io
import logging

from colonynode.node import logs


def test_lines_carry_the_node_id_and_libp2p_is_folded_at_warning() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    logs._handler = None
    try:
        logs.setup_logging("INFO", stream=stream)
        logs.set_node_id("abc123")
        import libp2p  # noqa: F401  (its import resets its own loggers)

        logs.route_libp2p_logs()
        logging.getLogger("colonynode.test").info("hello")
        logging.getLogger("libp2p.network.swarm").info("chatty detail")
        logging.getLogger("libp2p.network.swarm").warning("first line\nsecond line")
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved_handlers:
            root.addHandler(h)
        root.setLevel(saved_level)
        logs._handler = None
        logs.set_node_id("-")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert "INFO  abc123 colonynode.test: hello" in lines[0]
    assert "WARNING abc123 libp2p.network.swarm: first line | second line" in lines[1]
