"""A small synchronous client of the daemon's local API, for the CLI and the SDK.

Where the daemon's handle names its Unix socket (`api.sock` in the data dir:
node/daemon/local_api.py), requests go over it: the same endpoints and JSON, without
HTTP. Otherwise, and for a client made from a URL, the standard library's `http.client`
(HTTP/1.1 keep-alive on 127.0.0.1). No libp2p, no trio, no httpx: httpx and httpcore
(which imports trio when it is installed) cost ~0.25 s of every command's start-up
(docs/decisions.md). One connection per thread, so an executor's slots may share a client.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import msgpack

from colonynode.core.errors import ColonyError
from colonynode.node.datadir import DataDir, resolve_data_dir

__all__ = ["ApiClient", "ApiError", "DaemonNotRunning"]


class DaemonNotRunning(ColonyError):
    pass


class ApiError(ColonyError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


ANSWER_BYTES_MAX = 1 << 30  # an answer over the socket (a long record list is large)


class _SocketConnection:
    """One connection to the daemon's Unix socket: length-prefixed msgpack frames."""

    def __init__(self, path: str, token: str, timeout_s: float) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout_s)
            self.sock.connect(path)
            status, _, _ = self.call(["hello", token])
        except BaseException:
            self.sock.close()
            raise
        if status != 200:
            self.sock.close()
            raise ApiError(status, "unauthorized", "the daemon refused this API token")

    def call(self, request: list[Any]) -> tuple[int, str, bytes]:
        payload = msgpack.packb(request, use_bin_type=True)
        self.sock.sendall(len(payload).to_bytes(4, "big") + payload)
        n = int.from_bytes(self._exactly(4), "big")
        if n > ANSWER_BYTES_MAX:
            raise OSError(f"an answer of {n} bytes from the daemon")
        status, media, data = msgpack.unpackb(self._exactly(n), raw=False)
        return int(status), str(media), bytes(data)

    def _exactly(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise OSError("the daemon closed the connection")
            buf += chunk
        return bytes(buf)

    def close(self) -> None:
        self.sock.close()


class ApiClient:
    def __init__(
        self, url: str, token: str, *, timeout_s: float = 30.0, socket_path: str | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.socket_path = socket_path
        self._token = token
        parts = urlsplit(self.url)
        if parts.scheme != "http" or not parts.hostname:
            raise ColonyError(f"the local API is plain http on this machine, not {url!r}")
        self._host, self._port = parts.hostname, parts.port or 80
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection | _SocketConnection] = []
        self._lock = threading.Lock()

    @property
    def token(self) -> str:
        """The API token (`colonynode dashboard` puts it in the page's URL fragment)."""
        return self._token

    @classmethod
    def for_data_dir(cls, data_dir: str | Path | None, **kw: Any) -> ApiClient:
        dd = DataDir(resolve_data_dir(data_dir))
        handle = dd.read_api_handle()
        if handle is None or not _alive(handle.get("pid")):
            raise DaemonNotRunning(
                f"no colonynode daemon is running on {dd.path}: "
                f"start it with `colonynode start --data-dir {dd.path}`"
            )
        path = handle.get("socket")
        if not isinstance(path, str) or not hasattr(socket, "AF_UNIX"):
            path = None
        return cls(str(handle["url"]), str(handle["token"]), socket_path=path, **kw)

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    def _socket(self) -> _SocketConnection:
        """This thread's socket connection; a new one if the daemon closed the old."""
        conn: _SocketConnection | None = getattr(self._local, "sock", None)
        if conn is not None and conn.sock.fileno() >= 0:  # (-1: `close` closed it)
            readable, _, _ = select.select([conn.sock], [], [], 0)
            if not readable:
                return conn
            conn.close()
        assert self.socket_path is not None
        conn = _SocketConnection(self.socket_path, self._token, self.timeout_s)
        self._local.sock = conn
        with self._lock:
            self._all.append(conn)
        return conn

    def _send_socket(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        where = f"the daemon at {self.socket_path}"
        try:
            conn = self._socket()
        except OSError as exc:
            raise DaemonNotRunning(f"{where} does not answer ({exc})") from None
        try:
            status, _, data = conn.call([method, path, body])
        except (OSError, ValueError) as exc:  # ValueError: msgpack's, for a cut answer
            conn.close()
            self._local.sock = None
            raise DaemonNotRunning(f"{where} does not answer ({exc})") from None
        return status, data

    def _connection(self) -> http.client.HTTPConnection:
        """This thread's connection; a new one if the daemon closed the old (an idle
        keep-alive connection the server dropped reads as readable: EOF)."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None:
            readable, _, _ = select.select([conn.sock], [], [], 0)
            if not readable:
                return conn
        if conn is not None:
            conn.close()
        conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout_s)
        self._local.conn = conn
        with self._lock:
            self._all = [c for c in self._all if c.sock is not None] + [conn]
        return conn

    def _send(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        if self.socket_path is not None:
            return self._send_socket(method, path, body)
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn = self._connection()
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            self._local.conn = None
            raise DaemonNotRunning(f"the daemon at {self.url} does not answer ({exc})") from None
        if resp.will_close:
            conn.close()
        return resp.status, data

    def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json_body: Any = None
    ) -> Any:
        if params:
            path = f"{path}?{urlencode(params)}"
        body = None if json_body is None else json.dumps(json_body).encode()
        status, data = self._send(method, path, body)
        if status >= 400:
            try:
                err = json.loads(data)["error"]
                raise ApiError(status, str(err["code"]), str(err["message"]))
            except (ValueError, KeyError, TypeError):
                text = data.decode(errors="replace").strip()[:200]
                raise ApiError(status, "http", text) from None
        return json.loads(data)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def get_text(self, path: str) -> str:
        """A plain-text endpoint (`/metrics`)."""
        status, data = self._send("GET", path, None)
        text = data.decode(errors="replace")
        if status >= 400:
            raise ApiError(status, "http", text.strip()[:200])
        return text

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json_body=body if body is not None else {})


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
