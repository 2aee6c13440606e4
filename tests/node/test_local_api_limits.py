"""The local socket's slots are not held by stalled clients (node/daemon/local_api.py):
a connection that never says hello, or that begins a frame and never finishes it, is
closed after FRAME_S; one that idles between requests is kept. On trio's mock clock
with real Unix sockets: the waits cost no time."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import msgpack
import trio
import trio.testing

from colonynode.node.daemon.local_api import FRAME_S, LocalApi


async def status(request: Any) -> Any:
    return {"ok": True}


def frame(value: Any) -> bytes:
    payload: bytes = msgpack.packb(value, use_bin_type=True)
    return len(payload).to_bytes(4, "big") + payload


async def read_frame(stream: trio.SocketStream) -> Any:
    buf = b""
    while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:4], "big"):
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None  # closed by the node
        buf += chunk
    return msgpack.unpackb(buf[4:], raw=False)


async def connect(path: Path) -> trio.SocketStream:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.connect(str(path))
    return trio.SocketStream(sock)


async def test_stalled_connections_are_closed_and_idle_ones_kept(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    api = LocalApi([("/v1/status", status, ["GET"])], "token")
    path = tmp_path / "api.sock"
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(api.serve, path, stop)
        silent = await connect(path)  # never says hello
        partial = await connect(path)
        await partial.send_all(frame(["hello", "token"]))
        assert await read_frame(partial) == [200, "json", b"{}"]
        await partial.send_all(frame(["GET", "/v1/status", None])[:7])  # half a frame
        idle = await connect(path)
        await idle.send_all(frame(["hello", "token"]))
        assert await read_frame(idle) == [200, "json", b"{}"]

        start = trio.current_time()
        assert await read_frame(silent) is None
        assert await read_frame(partial) is None
        assert FRAME_S <= trio.current_time() - start <= FRAME_S + 1
        assert api.counters["timeouts"] == 2

        with trio.move_on_after(10 * FRAME_S) as quiet:  # idle between requests, long
            assert await idle.receive_some(1) != b""  # (the node closing it fails here)
        assert quiet.cancelled_caught  # it was kept open all along
        await idle.send_all(frame(["GET", "/v1/status", None]))
        status_code, _, body = await read_frame(idle)
        assert status_code == 200 and body == b'{"ok":true}'
        assert api.counters["timeouts"] == 2
        stop.set()
