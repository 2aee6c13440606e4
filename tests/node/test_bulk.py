"""The bulk path (node/daemon/fs/bulk.py): a real holder's port on 127.0.0.1, real sockets,
a real chunk store; the getter's side in a thread, as a get runs it."""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from colonynode.core.errors import DecodeError
from colonynode.node.daemon.fs import bulk
from colonynode.node.daemon.fs.bulk import BulkClient, BulkServer
from colonynode.node.daemon.fs.chunks import ChunkStore, QuotaExceeded, chunk_id
from colonynode.node.daemon.wire import StreamClosed

CHUNK = 1024
Take = Callable[[tuple[Any, ...], frozenset[bytes]], tuple[set[bytes], int]]


def taker(into: dict[bytes, bytes]) -> Take:
    """What a get's `take` does: keep each chunk that hashes to an id asked for."""

    def take(chunks: tuple[Any, ...], wanted: frozenset[bytes]) -> tuple[set[bytes], int]:
        got = set()
        for data in chunks:
            cid = chunk_id(data)
            if cid in wanted:
                into[cid] = bytes(data)
                got.add(cid)
        return got, len(chunks) - len(got)

    return take


def holder(
    tmp_path: Path, test: Callable[[BulkServer, ChunkStore, list[bytes]], Awaitable[None]],
    batch_bytes: int = 64 * CHUNK, quota_bytes: int = 1 << 20,
) -> None:  # fmt: skip
    """Run `test` beside a holder serving three chunks of CHUNK bytes."""

    async def main() -> None:
        store = ChunkStore(tmp_path / "chunks", quota_bytes)
        datas = [os.urandom(CHUNK) for _ in range(3)]
        ids = await store.put(datas)
        server = BulkServer(store, Counters(), CHUNK, batch_bytes)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run, "127.0.0.1")
            await test(server, store, ids)
            nursery.cancel_scope.cancel()

    trio.run(main)


async def connect(server: BulkServer, ticket: tuple[int, bytes, bytes] | None = None) -> BulkClient:
    port, token, key = ticket or server.ticket()
    return await trio.to_thread.run_sync(BulkClient.connect, ["127.0.0.1"], port, token, key, CHUNK)


class Counters(defaultdict[str, int]):
    """A holder's counters that wake a test waiting on them: a serving thread changes
    them on the Trio thread (run_sync_soon), so a check and its wait never miss one."""

    def __init__(self) -> None:
        super().__init__(int)
        self.changed = trio.Event()

    def __setitem__(self, key: str, value: int) -> None:
        super().__setitem__(key, value)
        self.changed.set()
        self.changed = trio.Event()


async def until(server: BulkServer, what: str, ok: Callable[[], bool]) -> None:
    """Until `ok()`, checked at each change of the holder's counters (10 s at most)."""
    counters = server.counters
    assert isinstance(counters, Counters)
    with trio.fail_after(10):
        while not ok():
            await counters.changed.wait()
    assert ok(), what


def test_a_getter_takes_each_chunk_in_order_and_what_the_holder_lacks_is_not_sent(
    tmp_path: Path,
) -> None:
    async def test(server: BulkServer, store: ChunkStore, ids: list[bytes]) -> None:
        client = await connect(server)
        got: dict[bytes, bytes] = {}
        lacking = chunk_id(b"nobody holds this")
        asked = [ids[2], lacking, ids[0]]
        taken, bad, suspect = await trio.to_thread.run_sync(client.fetch_and, asked, taker(got))
        assert taken == {ids[2], ids[0]} and bad == 0 and suspect == []
        assert got[ids[0]] == store.path(ids[0]).read_bytes()
        again, _, _ = await trio.to_thread.run_sync(client.fetch_and, [ids[1]], taker(got))
        assert again == {ids[1]}  # one connection serves request after request
        client.close()
        await until(server, "served counted", lambda: server.counters["bulk_chunks_served"] == 3)

    holder(tmp_path, test)


def test_an_answer_keeps_to_the_holders_batch_bytes(tmp_path: Path) -> None:
    async def test(server: BulkServer, store: ChunkStore, ids: list[bytes]) -> None:
        client = await connect(server)
        taken, _, _ = await trio.to_thread.run_sync(client.fetch_and, ids, taker({}))
        assert taken == set(ids[:2])  # the third would pass 2 chunks' bytes
        client.close()

    holder(tmp_path, test, batch_bytes=2 * CHUNK)


def test_a_corrupt_copy_is_sent_unhashed_refused_by_the_getter_and_named_back(
    tmp_path: Path,
) -> None:
    async def test(server: BulkServer, store: ChunkStore, ids: list[bytes]) -> None:
        path = store.path(ids[1])
        path.write_bytes(b"rot" + path.read_bytes()[3:])
        client = await connect(server)
        taken, bad, suspect = await trio.to_thread.run_sync(client.fetch_and, ids, taker({}))
        assert taken == {ids[0], ids[2]} and bad == 1 and suspect == [ids[1]]
        # bytes of another chunk asked for, sent in its place, are refused there too
        os.replace(store.path(ids[0]), path)
        taken, bad, suspect = await trio.to_thread.run_sync(client.fetch_and, [ids[1]], taker({}))
        assert (taken, bad, suspect) == (set(), 1, [ids[1]])
        client.close()

    holder(tmp_path, test)


def test_a_put_stores_chunks_hashed_by_the_holder_and_a_flush_answers_once_durable(
    tmp_path: Path,
) -> None:
    async def test(server: BulkServer, store: ChunkStore, ids: list[bytes]) -> None:
        client = await connect(server)
        datas = [os.urandom(CHUNK), os.urandom(10)]
        chunks = [(chunk_id(d), d) for d in datas]
        kept = await trio.to_thread.run_sync(client.store, chunks)
        assert kept == [c for c, _ in chunks]
        assert [store.path(c).read_bytes() for c in kept] == datas
        await trio.to_thread.run_sync(client.flush)
        used = 3 * CHUNK + CHUNK + 10
        await until(server, "counted", lambda: (store.used_bytes, store.chunks) == (used, 5))
        assert server.counters["bulk_chunks_received"] == 2
        again = await trio.to_thread.run_sync(client.store, chunks[:1])  # held already
        assert again == kept[:1]
        taken, _, _ = await trio.to_thread.run_sync(client.fetch_and, kept, taker({}))
        assert taken == set(kept)  # what a put kept, a get reads, on one connection
        client.close()

    holder(tmp_path, test)


def test_a_full_quota_refuses_a_put_on_the_bulk_path_and_keeps_nothing(tmp_path: Path) -> None:
    async def test(server: BulkServer, store: ChunkStore, ids: list[bytes]) -> None:
        client = await connect(server)
        data = os.urandom(CHUNK)
        with pytest.raises(QuotaExceeded, match="quota"):
            await trio.to_thread.run_sync(client.store, [(chunk_id(data), data)])
        assert not store.has(chunk_id(data)) and store.counters["quota_refused"] == 1
        taken, _, _ = await trio.to_thread.run_sync(client.fetch_and, ids, taker({}))
        assert taken == set(ids)  # the connection serves on

    holder(tmp_path, test, quota_bytes=3 * CHUNK + 100)


def test_a_put_whose_chunks_are_not_the_bytes_it_announced_ends_the_connection(
    tmp_path: Path,
) -> None:
    async def test(server: BulkServer, store: ChunkStore, ids: list[bytes]) -> None:
        port, token, key = server.ticket()

        def lie() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(token + sealed(key, 1, struct.pack(">cIQ", bulk.STORE, 1, 10)))
                sock.sendall(sealed(key, 2, b"x" * 20))  # 20 bytes where it announced 10
                return sock.recv(65536)

        assert await trio.to_thread.run_sync(lie) == b""  # closed, nothing answered
        await until(server, "counted", lambda: server.counters["bulk_bad_requests"] == 1)
        assert not store.has(chunk_id(b"x" * 20))

    holder(tmp_path, test)


def test_a_ticket_opens_one_connection_and_a_stale_or_unknown_token_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refused(server: BulkServer, ticket: tuple[int, bytes, bytes]) -> None:
        client = await connect(server, ticket)  # the token goes; the holder closes on it
        with pytest.raises((StreamClosed, OSError)):
            await trio.to_thread.run_sync(client.fetch_and, [b"\0" * 32], taker({}))
        client.close()

    async def test(server: BulkServer, store: ChunkStore, ids: list[bytes]) -> None:
        ticket = server.ticket()
        first = await connect(server, ticket)
        taken, _, _ = await trio.to_thread.run_sync(first.fetch_and, ids, taker({}))
        assert taken == set(ids)  # served: its token was taken
        first.close()
        await refused(server, ticket)  # used once already
        await refused(server, (ticket[0], os.urandom(16), ticket[2]))  # never given
        monkeypatch.setattr(bulk, "TICKET_S", -1.0)
        await refused(server, server.ticket())  # out of date
        await until(server, "refusals counted", lambda: server.counters["bulk_refused"] == 3)

    holder(tmp_path, test)


def sealed(key: bytes, counter: int, body: bytes) -> bytes:
    frame = ChaCha20Poly1305(key).encrypt(struct.pack(">IQ", bulk.TO_HOLDER, counter), body, None)
    return struct.pack(">I", len(frame)) + frame


@pytest.mark.parametrize(
    "frames",
    [
        lambda key, ask: [sealed(os.urandom(32), 1, ask)],  # another key
        lambda key, ask: [sealed(key, 1, ask), sealed(key, 1, ask)],  # replayed
        lambda key, ask: [sealed(key, 2, ask)],  # out of order
        lambda key, ask: [struct.pack(">I", 1 << 30) + b"x" * 64],  # over the cap
        lambda key, ask: [sealed(key, 1, ask[:32])],  # not a list of ids
        lambda key, ask: [
            ChaCha20Poly1305(key).encrypt(struct.pack(">IQ", bulk.TO_GETTER, 1), ask, None)
        ],  # sent the other way (and no length)
    ],
)
def test_a_frame_changed_replayed_or_malformed_ends_the_connection(
    tmp_path: Path, frames: Callable[[bytes, bytes], list[bytes]]
) -> None:
    async def test(server: BulkServer, store: ChunkStore, ids: list[bytes]) -> None:
        port, token, key = server.ticket()

        def attack() -> bytes:
            received = b""
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                try:
                    sock.sendall(token)
                    for frame in frames(key, bulk.FETCH + ids[0]):
                        sock.sendall(frame)
                    sock.shutdown(socket.SHUT_WR)
                    while chunk := sock.recv(65536):
                        received += chunk
                except OSError:  # the holder ended the connection first
                    pass
            return received

        received = await trio.to_thread.run_sync(attack)
        assert store.path(ids[0]).read_bytes() not in received  # no chunk went out
        assert len(received) <= 4 + CHUNK + 16  # at most the first, honest request's
        await until(server, "counted", lambda: server.counters["bulk_bad_requests"] == 1)

    holder(tmp_path, test)


def test_a_holder_serves_a_bounded_number_of_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "CONNS_MAX", 1)

    async def test(server: BulkServer, store: ChunkStore, ids: list[bytes]) -> None:
        first = await connect(server)
        taken, _, _ = await trio.to_thread.run_sync(first.fetch_and, ids, taker({}))
        assert taken == set(ids) and server._conns == 1  # served: it holds the one slot
        second = await connect(server)
        with pytest.raises((StreamClosed, OSError)):
            await trio.to_thread.run_sync(second.fetch_and, ids, taker({}))
        assert server.counters["bulk_refused"] == 1
        taken, _, _ = await trio.to_thread.run_sync(first.fetch_and, ids, taker({}))
        assert taken == set(ids)  # the first is served all along
        first.close()
        second.close()

    holder(tmp_path, test)


def test_a_getter_refuses_an_answer_that_is_not_its_holders() -> None:
    """The getter's side alone: a 'holder' that answers under another key."""
    listener = socket.create_server(("127.0.0.1", 0))
    key = os.urandom(32)

    def fake() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(1 << 16)
            frame = ChaCha20Poly1305(os.urandom(32)).encrypt(
                struct.pack(">IQ", bulk.TO_GETTER, 1), b"y" * CHUNK, None
            )
            conn.sendall(struct.pack(">I", len(frame)) + frame)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, fake)
            port = listener.getsockname()[1]
            client = await connect(None, (port, os.urandom(16), key))  # type: ignore[arg-type]
            with pytest.raises(DecodeError, match="does not open"):
                await trio.to_thread.run_sync(client.fetch_and, [b"\1" * 32], taker({}))
            client.close()

    trio.run(main)
    listener.close()


def test_a_frame_arrives_whole_through_a_link_too_slow_to_take_it_at_once() -> None:
    """A socket with a timeout sends what its buffer takes; a frame bigger than that goes
    out in pieces (chaos found it: a slowed link, frames that no longer opened)."""
    key, size = os.urandom(32), 512 * 1024
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sender = socket.create_connection(listener.getsockname(), timeout=10)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    receiver, _ = listener.accept()
    receiver.settimeout(10)
    body = os.urandom(size)
    got: list[bytes] = []

    def receive() -> None:
        got.append(bytes(bulk._Frames(receiver, key, bulk.TO_GETTER, size, size).receive()))

    reader = threading.Thread(target=receive)
    reader.start()
    bulk._Frames(sender, key, bulk.TO_HOLDER, size, size).send(body)
    reader.join(timeout=30)
    assert got == [body]
    for s in (sender, receiver, listener):
        s.close()
