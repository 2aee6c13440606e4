"""`colonynode`, run as a member of the version before the bulk path (a test's holder).

    python -m tests.integration.older_holder join ADDR --invite TOKEN --data-dir D ...

The same CLI and daemon, with the ColonyFS stream's codec of that version: it knows no
BulkAsk, BulkTicket or Verify, so a ticket asked of it is a message it cannot decode (its
stream is reset, as that version did). A test shows that a get on a newer node still reads
its chunks, on the link. Nothing here is used by the product.
"""

from __future__ import annotations

from colonynode.cli.main import main
from colonynode.core.codec import MessageCodec
from colonynode.core.limits import WIRE
from colonynode.node.daemon import run
from colonynode.node.daemon.fs import transfer as t


def _install() -> None:
    kinds = {1: t.Store, 2: t.Stored, 3: t.Flush, 4: t.Flushed, 5: t.Fetch, 6: t.Chunks,
             7: t.Has, 8: t.Holding}  # fmt: skip
    older = MessageCodec("fs", kinds, WIRE)
    t.FS_CODEC = run.FS_CODEC = older  # type: ignore[misc]


if __name__ == "__main__":
    _install()
    main()
