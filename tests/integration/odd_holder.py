"""`colonynode`, run as a member whose bulk port does not work (a test's holder).

    COLONYNODE_TEST_BULK=closed-port|slams python -m tests.integration.odd_holder join ...

The same CLI and daemon, with its bulk port broken one of two ways:

- ``closed-port``: its tickets name a port nothing listens on (a firewall that refuses);
- ``slams``: its bulk port takes connections and closes them at once (a port full of
  strangers' connections answers so).

A test shows that puts to it and gets from it still work, on the link. Nothing here is
used by the product.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from colonynode.cli.main import main
from colonynode.node.daemon.fs.bulk import BulkServer


def _install() -> None:
    mode = os.environ["COLONYNODE_TEST_BULK"]
    if mode == "closed-port":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]  # free once closed: nothing listens there
        ticket = BulkServer.ticket

        def dead_ticket(self: BulkServer) -> tuple[int, bytes, bytes]:
            _, token, key = ticket(self)
            return dead, token, key

        BulkServer.ticket = dead_ticket  # type: ignore[method-assign]
    elif mode == "slams":

        def slam(self: BulkServer, raw: Any) -> None:
            return None  # the caller closes it

        BulkServer._connection = slam  # type: ignore[method-assign]
    else:
        raise SystemExit(f"COLONYNODE_TEST_BULK: {mode}?")


if __name__ == "__main__":
    _install()
    main()
