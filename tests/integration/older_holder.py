"""`colonynode`, run as a member of the version before the bulk path (a test's holder).

    python -m tests.integration.older_holder join ADDR --invite TOKEN --data-dir D ...

The same CLI and daemon, with the ColonyFS stream's codec of that version: it knows no
BulkAsk, BulkTicket or Verify, so a ticket asked of it is a message it cannot decode (its
stream is reset, as that version did); and, as that version, it asks no peer for one (its
puts and gets go on the link). A test shows that a get on a newer node still reads its
chunks, on the link. Nothing here is used by the product.
"""

from __future__ import annotations

from typing import Any

from colonynode.cli.main import main
from colonynode.core.codec import MessageCodec
from colonynode.core.limits import WIRE
from colonynode.node.daemon import run
from colonynode.node.daemon.fs import transfer as t
from colonynode.node.daemon.fs.service import FsService


def _install() -> None:
    kinds = {1: t.Store, 2: t.Stored, 3: t.Flush, 4: t.Flushed, 5: t.Fetch, 6: t.Chunks,
             7: t.Has, 8: t.Holding}  # fmt: skip
    older = MessageCodec("fs", kinds, WIRE)
    t.FS_CODEC = run.FS_CODEC = older  # type: ignore[misc]

    async def link_only(self: FsService, peer: Any, client: Any) -> tuple[Any, None]:
        return client or await self.open_peer(peer), None

    FsService.bulk_or_link = link_only  # type: ignore[method-assign,assignment]


if __name__ == "__main__":
    _install()
    main()
