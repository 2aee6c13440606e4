"""The bulk path: a get's chunks over a TCP connection of their own, served and read in
threads, off the Trio thread (docs/colonyfs.md, "The bulk path").

A link carries every channel's frames as Noise messages of at most 64 KiB, each sealed,
framed and read on the Trio thread that also runs the node; a get over it moved about
210 MB/s. Here a chunk is one sealed frame, and the reads, hashing, sealing and writes of
a transfer run in worker threads, which release the GIL for each of them.

How a getter comes by a connection:

1. It asks the holder, on its link's ColonyFS stream (Noise: the holder is who the link
   says), for a ticket: the holder's bulk port, a fresh token and a fresh 32-byte key.
   The holder keeps at most TICKETS_MAX tickets, each for TICKET_S and one use.
2. It connects to that port at the holder's address and sends the token; an unknown or
   stale token closes the connection (counted `bulk_refused`).
3. Every request and answer after is one frame, `length (u32) | ChaCha20-Poly1305
   ciphertext` under the ticket's key, its nonce a direction and a counter, so a frame
   that was changed, replayed, reordered or sent the other way does not open and ends the
   connection. Only the two ends of the link know the key: what the bulk connection says
   is as authenticated and private as the link.

The bulk path only ever speeds a transfer up: a getter or writer whose bulk connection to
a holder cannot be made, or ends other than by a timeout (a port full of strangers'
connections, say), goes on with that holder on the link (peers.py).

Requests, each a frame whose first byte says which (a connection's buffers are a chunk's
size, whatever the batch):

    F ids                  a frame for each id (at most IDS_MAX), in order: the chunk's
                           bytes, or none when the holder sends none (it lacks it, or the
                           request's chunks passed the holder's batch bytes,
                           GET_BATCH_BYTES; no chunk is empty)
    S n bytes, n frames    keep these n chunks (a put's; at most IDS_MAX, and the batch
                           bytes): answered 0 ids (the holder's own hashes), or 1 reason
                           (its quota is full; nothing kept)
    L                      make every chunk kept so far durable (syncfs): answered 0

The getter verifies every chunk against its id; the holder sends its copies as they are,
unhashed (hashing on both ends cost a sixth of the throughput). A chunk whose bytes do not
match is refused and counted by the getter, fetched from another holder, and named to the
holder in a Verify request on the link, which reads it again and deletes a corrupt copy
(transfer.py): so a corrupt copy is found by the first get that meets it, as before.
A connection serves one request at a time and ends after IDLE_S without one; a holder
serves CONNS_MAX at a time and refuses more.
"""

from __future__ import annotations

import logging
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import trio
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from colonynode.core.errors import DecodeError
from colonynode.node.core.fs import HASH_BYTES
from colonynode.node.daemon.fs.chunks import ChunkStore, QuotaExceeded, chunk_id
from colonynode.node.daemon.wire import StreamClosed

__all__ = ["BulkClient", "BulkServer"]

log = logging.getLogger("colonynode.fs")

TOKEN_BYTES = 16
KEY_BYTES = 32
TICKETS_MAX = 256  # tickets a holder keeps at a time
TICKET_S = 30.0  # a ticket is good this long after it is given
CONNS_MAX = 16  # connections a holder serves at a time
IDLE_S = 60.0  # a connection with no request (or answer) this long ends
TOKEN_S = 5.0  # ... and one without its token this long (a slot is held only so long)
CONNECT_S = 3.0
IDS_MAX = 4096  # ids in one request
_U32 = struct.Struct(">I")
_STORE = struct.Struct(">cIQ")  # S, chunks, their bytes
FETCH, STORE, FLUSH = b"F", b"S", b"L"
DONE, REFUSED = b"\0", b"\1"
FLUSH_S = 600.0  # a flush's answer at most this late (gigabytes, on an SD card, take minutes)
_NONCE = struct.Struct(">IQ")  # direction, counter
_TAG = 16
TO_HOLDER, TO_GETTER = 1, 2


class _Frames:
    """One end of a connection: frames sealed and opened in order under the ticket's key,
    through buffers made once (a frame costs no allocation)."""

    def __init__(
        self, sock: socket.socket, key: bytes, sends: int, receive_max: int, send_max: int
    ) -> None:
        self.sock = sock
        self._aead = ChaCha20Poly1305(key)
        self._sends, self._receives = sends, TO_GETTER if sends == TO_HOLDER else TO_HOLDER
        self._sent = self._received = 0  # the nonces' counters
        self._receive_max = receive_max
        self._sealed_in = memoryview(bytearray(receive_max + _TAG))
        self._plain_in = memoryview(bytearray(receive_max))
        self._sealed_out = memoryview(bytearray(send_max + _TAG))

    def send(self, body: bytes | memoryview) -> None:
        self._sent += 1
        n = len(body) + _TAG
        sealed = self._sealed_out[:n]
        self._aead.encrypt_into(_NONCE.pack(self._sends, self._sent), body, None, sealed)
        _send_all(self.sock, [memoryview(_U32.pack(n)), sealed])

    def receive(self) -> memoryview:
        """The next frame's body: valid until the next `receive`."""
        (n,) = _U32.unpack(_exactly(self.sock, self._sealed_in[:4]))
        if n < _TAG or n > self._receive_max + _TAG:
            raise DecodeError(f"a bulk frame of {n} bytes")
        sealed = _exactly(self.sock, self._sealed_in[:n])
        self._received += 1
        body = self._plain_in[: n - _TAG]
        try:
            nonce = _NONCE.pack(self._receives, self._received)
            self._aead.decrypt_into(nonce, sealed, None, body)
        except InvalidTag:
            raise DecodeError("a bulk frame that does not open under its key") from None
        return body


def _send_all(sock: socket.socket, parts: list[memoryview]) -> None:
    """Every byte of `parts`, in one system call when the socket takes them (sendmsg, like
    send, may take only some: through a slow link, a full buffer)."""
    while parts:
        sent = sock.sendmsg(parts)
        while parts and sent >= len(parts[0]):
            sent -= len(parts[0])
            parts = parts[1:]
        if parts:
            parts[0] = parts[0][sent:]


def _exactly(sock: socket.socket, view: memoryview) -> memoryview:
    got = 0
    while got < len(view):
        k = sock.recv_into(view[got:])
        if k == 0:
            raise StreamClosed("the bulk connection ended")
        got += k
    return view


def frame_bytes_max(chunk_bytes: int) -> int:
    """A frame's body at most, either way: a chunk, or a request or answer naming ids."""
    return max(chunk_bytes, 1 + IDS_MAX * HASH_BYTES)


class BulkServer:
    """A holder's bulk port: tickets given on the link, connections served in threads."""

    def __init__(
        self, store: ChunkStore, counters: dict[str, int], chunk_bytes: int, batch_bytes: int
    ) -> None:
        self.store = store
        self.counters = counters
        self.chunk_bytes = chunk_bytes  # a chunk's bytes at most
        self.batch_bytes = batch_bytes  # the chunk bytes of one answer at most
        self.port = 0  # 0 until listening (a ticket then says "no bulk path")
        self._tickets: dict[bytes, tuple[bytes, float]] = {}  # token -> (key, good until)
        self._lock = threading.Lock()  # the tickets, taken in the serving threads
        self._conns = 0  # connections being served
        self._limiter = trio.CapacityLimiter(CONNS_MAX)  # their threads: not the default pool
        self._trio: trio.lowlevel.TrioToken | None = None

    def ticket(self) -> tuple[int, bytes, bytes]:
        """(port, token, key) for one connection; port 0 when there is no bulk path."""
        if not self.port:
            return 0, b"", b""
        token, key = secrets.token_bytes(TOKEN_BYTES), secrets.token_bytes(KEY_BYTES)
        now = time.monotonic()
        with self._lock:
            for old in [t for t, (_, until) in self._tickets.items() if until < now]:
                del self._tickets[old]
            while len(self._tickets) >= TICKETS_MAX:
                del self._tickets[next(iter(self._tickets))]
            self._tickets[token] = (key, now + TICKET_S)
        return self.port, token, key

    def _take(self, token: bytes) -> bytes | None:
        with self._lock:
            key, until = self._tickets.pop(token, (b"", 0.0))
        return key if until >= time.monotonic() else None

    async def run(
        self, host: str, port: int = 0, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        self._trio = trio.lowlevel.current_trio_token()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = trio.socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            await listener.bind((host, port))
            listener.listen(CONNS_MAX)
            self.port = listener.getsockname()[1]
            task_status.started()
            async with trio.open_nursery() as nursery:
                while True:
                    conn, _ = await listener.accept()
                    if self._conns >= CONNS_MAX:
                        self.counters["bulk_refused"] += 1
                        conn.close()
                        continue
                    self._conns += 1
                    nursery.start_soon(self._serve, socket.socket(fileno=conn.detach()))
        finally:
            self.port = 0
            listener.close()

    async def _serve(self, raw: socket.socket) -> None:
        raw.setblocking(True)
        raw.settimeout(TOKEN_S)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            # trio_typing's stubs predate abandon_on_cancel (trio >= 0.23)
            await trio.to_thread.run_sync(  # type: ignore[call-arg]
                self._connection, raw, abandon_on_cancel=True, limiter=self._limiter
            )
        except Exception:  # a bug: this connection ends, the node serves on
            self.counters["bulk_errors"] += 1
            log.exception("serving a bulk connection failed")
        finally:
            self._conns -= 1
            _close(raw)

    def _connection(self, raw: socket.socket) -> None:
        """One getter's requests until it goes (in a worker thread)."""
        try:
            key = self._take(bytes(_exactly(raw, memoryview(bytearray(TOKEN_BYTES)))))
            raw.settimeout(IDLE_S)
            if key is None:
                self._tell(self._count, "bulk_refused", 1)
                return
            cap = frame_bytes_max(self.chunk_bytes)
            frames = _Frames(raw, key, TO_GETTER, cap, cap)
            chunk = memoryview(bytearray(self.chunk_bytes))
            while True:
                try:
                    body = frames.receive()
                except StreamClosed:
                    return
                kind = bytes(body[:1])
                if kind == FETCH and len(body) % HASH_BYTES == 1:
                    ids = [bytes(body[i : i + HASH_BYTES]) for i in range(1, len(body), HASH_BYTES)]
                    self._tell(self._served, self._answer(ids, frames, chunk))
                elif kind == STORE and len(body) == _STORE.size:
                    _, n, size = _STORE.unpack(body)
                    self._keep(frames, n, size)
                elif kind == FLUSH and len(body) == 1:
                    self.store.sync()
                    frames.send(DONE)
                else:
                    raise DecodeError("a bulk request of no known kind")
        except (DecodeError, OSError, StreamClosed) as exc:  # a bad, broken or gone getter
            self._tell(self._count, "bulk_bad_requests", 1)
            log.info("a bulk connection ended: %s", exc)

    def _tell(self, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn(*args)` on the Trio thread soon; the serving thread does not wait."""
        assert self._trio is not None
        try:
            self._trio.run_sync_soon(fn, *args)
        except trio.RunFinishedError:  # the node stopped: nobody to tell
            pass

    def _answer(self, ids: list[bytes], frames: _Frames, chunk: memoryview) -> int:
        """A frame for each of `ids`, read into `chunk`: the chunks sent."""
        size = served = 0
        for cid in ids:
            n = self.store.read_into(cid, chunk) if size < self.batch_bytes else None
            if n is not None and size + n > self.batch_bytes:
                n = None
            frames.send(chunk[: n or 0])
            if n:
                size += n
                served += 1
        return served

    def _keep(self, frames: _Frames, n: int, size: int) -> None:
        """Keep the `n` chunks of `size` bytes that come next, hashed here."""
        if not 0 < n <= IDS_MAX or size > self.batch_bytes:
            raise DecodeError(f"a store of {n} chunks, {size} bytes")
        full = trio.from_thread.run_sync(self.store.room, size, trio_token=self._trio)
        ids: list[bytes] = []
        got = new = added = 0
        for _ in range(n):
            data = frames.receive()
            got += len(data)
            if not data or got > size:
                raise DecodeError("a store's chunks are not the bytes it announced")
            if not full:
                cid = chunk_id(data)
                if self.store.write(cid, data):
                    new += 1
                    added += len(data)
                ids.append(cid)
        if full:
            frames.send(REFUSED + full.encode())
            return
        self._tell(self._kept, n, new, added)
        frames.send(DONE + b"".join(ids))

    def _kept(self, n: int, new: int, added: int) -> None:
        self.store.added(new, added)
        self.counters["chunks_received"] += n
        self.counters["bulk_chunks_received"] += n

    def _count(self, name: str, n: int) -> None:
        self.counters[name] += n

    def _served(self, served: int) -> None:
        self.counters["chunks_served"] += served
        self.counters["bulk_chunks_served"] += served


class BulkClient:
    """A getter's connection to one holder's bulk port. Blocking: use it in a thread."""

    def __init__(
        self, sock: socket.socket, key: bytes, chunk_bytes: int, timeout_s: float = IDLE_S
    ) -> None:
        self.sock = sock
        self.timeout_s = timeout_s  # an answer at most this late (a hung holder)
        cap = frame_bytes_max(chunk_bytes)
        self._frames = _Frames(sock, key, TO_HOLDER, cap, cap)

    @classmethod
    def connect(
        cls, hosts: list[str], port: int, token: bytes, key: bytes, chunk_bytes: int,
        timeout_s: float = IDLE_S,
    ) -> BulkClient:  # fmt: skip
        """Connected to the first of `hosts` that answers on `port` (OSError if none)."""
        error: OSError = OSError("no address to reach the holder's bulk port at")
        for host in hosts:
            try:
                sock = socket.create_connection((host, port), timeout=CONNECT_S)
            except OSError as exc:
                error = exc
                continue
            sock.settimeout(timeout_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                sock.sendall(token)
            except OSError:
                _close(sock)
                raise
            return cls(sock, key, chunk_bytes, timeout_s)
        raise error

    def fetch_and(
        self,
        ids: list[bytes],
        take: Callable[[tuple[Any, ...], frozenset[bytes]], tuple[set[bytes], int]],
    ) -> tuple[set[bytes], int, list[bytes]]:
        """Ask for `ids` and hand each chunk that comes to `take` as it comes (it must use
        the bytes before it returns): (the ids it took, how many chunks it refused, the
        ids whose bytes it refused: the holder's copies of them are corrupt)."""
        if not 0 < len(ids) <= IDS_MAX:
            raise ValueError(f"{len(ids)} ids in one bulk request")
        self._frames.send(FETCH + b"".join(ids))
        wanted = frozenset(ids)
        taken: set[bytes] = set()
        bad = 0
        suspect: list[bytes] = []
        for cid in ids:
            chunk = self._frames.receive()
            if not chunk:
                continue  # not sent
            if cid in take((chunk,), wanted)[0]:  # judged by place: the bytes of `cid`
                taken.add(cid)
            else:
                bad += 1
                suspect.append(cid)
        return taken, bad, suspect

    def store(self, chunks: list[tuple[bytes, bytes]]) -> list[bytes]:
        """Have the holder keep `chunks` ((id, bytes)): the ids it kept, its own hashes.
        QuotaExceeded when its quota is full (it kept none)."""
        if not 0 < len(chunks) <= IDS_MAX:
            raise ValueError(f"{len(chunks)} chunks in one bulk store")
        self._frames.send(_STORE.pack(STORE, len(chunks), sum(len(d) for _, d in chunks)))
        for _, data in chunks:
            self._frames.send(data)
        answer = self._frames.receive()
        if bytes(answer[:1]) == REFUSED:
            raise QuotaExceeded(bytes(answer[1:]).decode(errors="replace"))
        if bytes(answer[:1]) != DONE or len(answer) != 1 + HASH_BYTES * len(chunks):
            raise DecodeError("a store's answer does not name its chunks")
        return [bytes(answer[i : i + HASH_BYTES]) for i in range(1, len(answer), HASH_BYTES)]

    def flush(self) -> None:
        """Every chunk the holder kept for this connection is durable when this returns."""
        self.sock.settimeout(FLUSH_S)
        try:
            self._frames.send(FLUSH)
            if bytes(self._frames.receive()) != DONE:
                raise DecodeError("a flush's answer is not done")
        finally:
            self.sock.settimeout(self.timeout_s)

    def close(self) -> None:
        _close(self.sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in a read of it
    except OSError:
        pass
    sock.close()
