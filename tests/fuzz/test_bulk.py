"""Fuzzed bulk-path input (node/daemon/fs/bulk.py, issue 18): whatever a getter sends after
its token, in the clear or sealed under the ticket's key, the holder answers it or ends
that connection (counted), never fails otherwise, and serves the next getter in full."""

from __future__ import annotations

import socket
from pathlib import Path

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colonynode.node.daemon.fs.bulk import BulkServer
from colonynode.node.daemon.fs.chunks import ChunkStore
from tests.fuzz.strategies import EXAMPLES
from tests.node.test_bulk import connect, holder, sealed, taker

SLOW = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=SLOW)


@FUZZ
@given(data=st.binary(max_size=2048), seal=st.booleans(), asked=st.lists(st.integers(0, 3)))
def test_whatever_a_getter_sends_the_holder_answers_or_ends_it_and_serves_on(
    tmp_path_factory: object, data: bytes, seal: bool, asked: list[int]
) -> None:
    root = Path(tmp_path_factory.mktemp("bulk"))  # type: ignore[attr-defined]

    async def test(server: BulkServer, store: ChunkStore, ids: list[bytes]) -> None:
        port, token, key = server.ticket()
        body = data + b"".join(ids[i] if i < 3 else b"\7" * 32 for i in asked)

        def send() -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                try:
                    sock.sendall(token + (sealed(key, 1, body) if seal else body))
                    sock.shutdown(socket.SHUT_WR)
                    while sock.recv(65536):
                        pass
                except OSError:  # the holder ended the connection first: one way to refuse
                    pass

        await trio.to_thread.run_sync(send)
        honest = await connect(server)
        taken, _, _ = await trio.to_thread.run_sync(honest.fetch_and, ids, taker({}))
        honest.close()
        assert taken == set(ids)
        assert server.counters["bulk_errors"] == 0

    holder(root, test)
