"""A small synchronous client of the daemon's local API, for the CLI and the SDK.

It imports httpx only: no libp2p, no trio (commands that only talk to the API start fast).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

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


class ApiClient:
    def __init__(self, url: str, token: str, *, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
        )

    @classmethod
    def for_data_dir(cls, data_dir: str | Path | None, **kw: Any) -> ApiClient:
        dd = DataDir(resolve_data_dir(data_dir))
        handle = dd.read_api_handle()
        if handle is None or not _alive(handle.get("pid")):
            raise DaemonNotRunning(
                f"no colonynode daemon is running on {dd.path}: "
                f"start it with `colonynode start --data-dir {dd.path}`"
            )
        return cls(str(handle["url"]), str(handle["token"]), **kw)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise DaemonNotRunning(f"the daemon at {self.url} does not answer ({exc})") from None
        if resp.status_code >= 400:
            try:
                err = resp.json()["error"]
                raise ApiError(resp.status_code, str(err["code"]), str(err["message"]))
            except (ValueError, KeyError, TypeError):
                raise ApiError(resp.status_code, "http", resp.text.strip()[:200]) from None
        return resp.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def get_text(self, path: str) -> str:
        """A plain-text endpoint (`/metrics`)."""
        try:
            resp = self._http.get(path)
        except httpx.TransportError as exc:
            raise DaemonNotRunning(f"the daemon at {self.url} does not answer ({exc})") from None
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, "http", resp.text.strip()[:200])
        return resp.text

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body if body is not None else {})


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
