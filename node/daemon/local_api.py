"""The local API over a Unix socket in the data dir (`api.sock`, mode 0600): the same
endpoints, arguments, answers and errors as the HTTP API (http.py: `api_routes`,
`answer`), without HTTP. The CLI, the SDK and executors use it when the daemon's handle
names it (node/apiclient.py); hypercorn, starlette's middleware and h11 cost ~1 ms of a
daemon's CPU a request, this path ~0.1 ms (docs/decisions.md, "the local socket").

Wire: frames of a 4-byte big-endian length and a msgpack array.

- The client's first frame is `["hello", token]` (the token of the daemon's handle, as
  for HTTP); the answer is `[200, "json", b"{}"]`, or `[401, ...]` and the connection
  closes.
- Then each request is `[method, target, body]` (`target` a path with its query string,
  `body` the JSON body as bytes, or None), answered in order by `[status, media, body]`
  (`media` "json" or "text"). One request at a time a connection: a client keeps one
  connection a thread, and a long-poll (`assign`, `wait`) holds only its own.

A frame over `FRAME_BYTES_MAX` or that is not msgpack closes its connection, a request
of the wrong shape is answered 400; both are counted (`colonynode status`, `local_api`),
and the node serves on. A connection holds one of `CONNECTIONS_MAX` slots: one that has
not said hello within `FRAME_S`, or that began a frame and did not finish it within
`FRAME_S`, is closed (`timeouts`), so stalled clients cannot take them all. Between
requests a connection may idle as long as it likes (an executor's stays open).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import msgpack
import trio
from starlette.datastructures import Headers, QueryParams
from starlette.responses import Response
from starlette.routing import Match, Route

from colonynode.node.daemon.http import API_BODY_BYTES_MAX, ApiRoute, Endpoint, answer

__all__ = ["FRAME_BYTES_MAX", "SOCKET_NAME", "SOCKET_PATH_MAX", "LocalApi"]

log = logging.getLogger(__name__)

SOCKET_NAME = "api.sock"
SOCKET_PATH_MAX = 100  # a Unix socket's path is at most 107 bytes (Linux), 103 (macOS)
FRAME_BYTES_MAX = API_BODY_BYTES_MAX + 64 * 1024  # a request: its body and its target
CONNECTIONS_MAX = 1024
FRAME_S = 10.0  # to say hello, and to finish a frame once begun
RECEIVE_BYTES = 256 * 1024
COUNTERS = ("connections", "refused", "requests", "bad_requests", "bad_frames", "unauthorized",
            "errors", "timeouts")  # fmt: skip


class BadFrame(Exception):
    pass


class FrameTimeout(BadFrame):
    """A frame begun and not finished within FRAME_S."""


class LocalRequest:
    """What an endpoint reads of a request (the part of starlette's Request it uses)."""

    __slots__ = ("_body", "headers", "path_params", "query_params")

    def __init__(self, path_params: dict[str, Any], query: str, body: bytes) -> None:
        self.path_params = path_params
        self.query_params = QueryParams(query)
        self.headers = Headers()
        self._body = body

    async def body(self) -> bytes:
        return self._body


def _json(value: Any) -> bytes:  # as starlette's JSONResponse renders it
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _error(status: int, code: str, message: str) -> tuple[int, str, bytes]:
    return status, "json", _json({"error": {"code": code, "message": message}})


class LocalApi:
    def __init__(self, routes: list[ApiRoute], token: str) -> None:
        self._routes: list[tuple[Route, Endpoint]] = [
            (Route(path, fn, methods=methods), fn) for path, fn, methods in routes
        ]
        self._token = token.encode()
        self.counters = dict.fromkeys(COUNTERS, 0)
        self._open = 0

    async def serve(
        self, path: Path, stop: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on `path` until `stop` is set (the file is removed then)."""
        _remove(path)
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            await sock.bind(str(path))
            os.chmod(path, 0o600)
            sock.listen(128)
            listener = trio.SocketListener(sock)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.serve_listeners, self._connection, [listener])
                task_status.started()
                await stop.wait()
                nursery.cancel_scope.cancel()
        finally:
            sock.close()
            _remove(path)

    async def _connection(self, stream: trio.SocketStream) -> None:
        counters = self.counters
        if self._open >= CONNECTIONS_MAX:
            counters["refused"] += 1
            await stream.aclose()
            return
        self._open += 1
        counters["connections"] += 1
        frames = _Frames(stream)
        try:
            hello = None
            with trio.move_on_after(FRAME_S) as scope:
                hello = await frames.read()
            if scope.cancelled_caught:
                counters["timeouts"] += 1
                return
            token = hello[1] if isinstance(hello, list) and len(hello) == 2 else None
            if (
                not isinstance(token, str)
                or hello[0] != "hello"
                or not hmac.compare_digest(token.encode(), self._token)
            ):
                counters["unauthorized"] += 1
                await stream.send_all(_frame(_error(401, "unauthorized", "wrong API token")))
                return
            await stream.send_all(_frame((200, "json", b"{}")))
            while (request := await frames.read()) is not None:
                counters["requests"] += 1
                await stream.send_all(_frame(await self._answer(request)))
        except FrameTimeout:
            counters["timeouts"] += 1
        except BadFrame as exc:
            counters["bad_frames"] += 1
            log.info("local API: a bad frame closes its connection (%s)", exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away
        finally:
            self._open -= 1
            await stream.aclose()

    async def _answer(self, request: Any) -> tuple[int, str, bytes]:
        """The request's answer; a bug in an endpoint fails its request (500, logged,
        counted), not the socket: the node serves on (as hypercorn does for HTTP)."""
        try:
            return await self._request(request)
        except Exception:
            self.counters["errors"] += 1
            log.exception("local API: the request failed")
            return _error(500, "internal", "the node failed this request (see its log)")

    async def _request(self, request: Any) -> tuple[int, str, bytes]:
        if not (
            isinstance(request, list)
            and len(request) == 3
            and isinstance(request[0], str)
            and isinstance(request[1], str)
            and isinstance(request[2], bytes | None)
        ):
            self.counters["bad_requests"] += 1
            return _error(400, "bad_request", "a request is [method, target, body bytes or nil]")
        method, target, body = request
        raw, _, query = target.partition("?")
        path = unquote(raw)  # as an HTTP server does: a name may hold %20 and the like
        scope = {"type": "http", "path": path, "method": method, "root_path": ""}
        allowed = False
        for route, fn in self._routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                local = LocalRequest(child["path_params"], query, body or b"")
                status, result = await answer(fn, local)  # type: ignore[arg-type]
                if isinstance(result, Response):
                    return status, "text", bytes(result.body)
                return status, "json", _json(result)
            allowed = allowed or match is Match.PARTIAL
        if allowed:
            return _error(405, "method_not_allowed", f"{method} is not allowed on {path}")
        return _error(404, "not_found", f"no endpoint {path}")


def _remove(path: Path) -> None:
    """A socket file left by a daemon that died, or this one's (a local, instant call)."""
    path.unlink(missing_ok=True)


def _frame(answer: tuple[int, str, bytes]) -> bytes:
    payload: bytes = msgpack.packb(list(answer), use_bin_type=True)
    return len(payload).to_bytes(4, "big") + payload


class _Frames:
    """Length-prefixed msgpack frames from a stream."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def _fill(self, n: int) -> bool:
        while len(self.buf) < n:
            chunk = await self.stream.receive_some(RECEIVE_BYTES)
            if not chunk:
                if self.buf:
                    raise BadFrame("the connection closed inside a frame")
                return False
            self.buf += chunk
        return True

    async def read(self) -> Any:
        """The next frame's value; None at the end of the stream. Waits as long as it
        takes for a frame to begin; FrameTimeout if it does not end within FRAME_S."""
        if not await self._fill(1):
            return None
        with trio.move_on_after(FRAME_S) as scope:
            if not await self._fill(4):
                return None
            n = int.from_bytes(self.buf[:4], "big")
            if n > FRAME_BYTES_MAX:
                raise BadFrame(f"a frame of {n} bytes, over {FRAME_BYTES_MAX}")
            if not await self._fill(4 + n):
                return None
        if scope.cancelled_caught:
            raise FrameTimeout(f"a frame not finished in {FRAME_S:g} s")
        payload = bytes(self.buf[4 : 4 + n])
        del self.buf[: 4 + n]
        try:
            return msgpack.unpackb(payload, raw=False)
        except Exception as exc:  # msgpack raises several types for bad input
            raise BadFrame(f"not msgpack: {type(exc).__name__}") from None
