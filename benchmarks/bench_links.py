"""What one frame costs on the daemon's transport, beside a py-libp2p stream.

Both ends run in this process on 127.0.0.1, so the CPU time is a frame's whole cost
(encrypt, write, read, decrypt, both sides). Three ways: a link (node/daemon/links.py:
libp2p's Noise handshake, then our framing), a py-libp2p stream (Noise + Yamux, the
transport before links), and a plain Trio socket (no Noise) as the floor.

    .venv/bin/python benchmarks/bench_links.py [--frames 5000] [--bytes 300]
"""

from __future__ import annotations

import argparse
import json
import struct
import time
from collections.abc import Awaitable, Callable

import trio

from colonynode.core.identity import Identity
from colonynode.node.daemon.host import keypair_of
from colonynode.node.daemon.links import DATA, Noise, frame

_LEN = struct.Struct(">I")
Exchange = Callable[[], Awaitable[None]]


async def _timed(name: str, frames: int, round_trip: Exchange) -> dict[str, float]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(frames):
        await round_trip()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"cpu_us_a_round_trip": 1e6 * cpu / frames, "wall_us_a_round_trip": 1e6 * wall / frames}


def _echoed(
    write: Callable[[bytes], Awaitable[object]], read: Callable[[], Awaitable[bytes]], size: int
) -> Exchange:
    """One length-prefixed payload out, and as many bytes back (an echoing peer)."""
    payload = _LEN.pack(size) + b"x" * size

    async def once() -> None:
        await write(payload)
        got = 0
        while got < len(payload):
            got += len(await read())

    return once


async def bench_links(frames: int, size: int) -> dict[str, float]:
    a, b = Identity.generate(), Identity.generate()
    ready: trio.Event = trio.Event()
    box: dict[str, object] = {}

    async def serve(sock: trio.SocketStream) -> None:
        link = await Noise(b).secure(sock, None)
        await link.hello([])
        await link.read_hello()
        ready.set()
        while True:
            channel, kind, sid, body = await link.read_frame()
            await link.write(frame(channel, kind, sid, body))

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, serve, 0)
        port = listeners[0].socket.getsockname()[1]
        sock = await trio.open_tcp_stream("127.0.0.1", port)
        link = await Noise(a).secure(sock, b.node_id)
        await link.hello([])
        await link.read_hello()
        await ready.wait()
        payload = frame(1, DATA, 0, b"x" * size)

        async def once() -> None:
            await link.write(payload)
            await link.read_frame()

        box["out"] = await _timed("links", frames, once)
        nursery.cancel_scope.cancel()
    return box["out"]  # type: ignore[return-value]


async def bench_libp2p(frames: int, size: int) -> dict[str, float]:
    import multiaddr
    from libp2p import new_host
    from libp2p.crypto.x25519 import create_new_key_pair
    from libp2p.network.config import ConnectionConfig
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE
    from libp2p.security.noise.transport import Transport as NoiseTransport
    from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX
    from libp2p.stream_muxer.yamux.yamux import Yamux

    def host(identity: Identity):  # type: ignore[no-untyped-def]
        kp = keypair_of(identity)
        noise = NoiseTransport(kp, noise_privkey=create_new_key_pair().private_key)
        return new_host(key_pair=kp, sec_opt={NOISE: noise}, muxer_opt={YAMUX: Yamux},
                        connection_config=ConnectionConfig(max_connections_per_peer=1))  # fmt: skip

    a, b = host(Identity.generate()), host(Identity.generate())
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]

    async def echo(stream):  # type: ignore[no-untyped-def]
        while True:
            data = await stream.read(65536)
            if not data:
                return
            await stream.write(data)

    async with a.run(listen_addrs=listen), b.run(listen_addrs=listen):
        b.set_stream_handler("/bench/1", echo)
        addr = str(b.get_addrs()[0])
        await a.connect(info_from_p2p_addr(multiaddr.Multiaddr(addr)))
        stream = await a.new_stream(b.get_id(), ["/bench/1"])
        once = _echoed(stream.write, lambda: stream.read(65536), size)
        out = await _timed("libp2p", frames, once)
        await a.close()
        await b.close()
    return out


async def bench_plain(frames: int, size: int) -> dict[str, float]:
    async def serve(sock: trio.SocketStream) -> None:
        while data := await sock.receive_some(65536):
            await sock.send_all(data)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, serve, 0)
        sock = await trio.open_tcp_stream("127.0.0.1", listeners[0].socket.getsockname()[1])
        once = _echoed(sock.send_all, lambda: sock.receive_some(65536), size)
        out = await _timed("plain", frames, once)
        nursery.cancel_scope.cancel()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=5000)
    ap.add_argument("--bytes", type=int, default=300)
    args = ap.parse_args()
    rows = {}
    for name, fn in (("links", bench_links), ("py-libp2p stream", bench_libp2p),
                     ("plain socket", bench_plain)):  # fmt: skip
        rows[name] = trio.run(fn, args.frames, args.bytes)
    print(f"{'':18} {'CPU µs/round trip':>18} {'wall µs/round trip':>19}")
    for name, r in rows.items():
        print(f"{name:18} {r['cpu_us_a_round_trip']:18.0f} {r['wall_us_a_round_trip']:19.0f}")
    ratio = rows["py-libp2p stream"]["cpu_us_a_round_trip"] / rows["links"]["cpu_us_a_round_trip"]
    print(f"py-libp2p / links CPU: {ratio:.2f}x")
    print(json.dumps({"frames": args.frames, "bytes": args.bytes, **rows}))


if __name__ == "__main__":
    main()
