"""The node's data directory: identity seed, node config, API handle, LMDB store.

    <data-dir>/identity.key   32-byte Ed25519 seed, mode 0600
    <data-dir>/node.json      name, colony, owner, listen and API addresses, bootstrap peers
    <data-dir>/api.json       written by a running daemon: API url, bearer token, pid (0600)
    <data-dir>/store/         LMDB environment (roster, spent invites, peers, ...)
    <data-dir>/colonies-*.key the node's ColonyOS keys (secp256k1, hex, mode 0600): the
                              colony's (owner's node) and this node's user's

`COLONYNODE_HOME` stands in for `--data-dir`; the default is the platform's user data dir.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from colonynode.core.errors import ColonyError
from colonynode.core.identity import SEED_BYTES, Identity

__all__ = [
    "DataDir",
    "NodeSettings",
    "NotInitialised",
    "resolve_data_dir",
]


class NotInitialised(ColonyError):
    pass


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    if data_dir:
        return Path(data_dir).expanduser()
    env = os.environ.get("COLONYNODE_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("colonynode"))


def _write_private(path: Path, data: bytes) -> None:
    """Write a file readable only by its owner, atomically (write, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


@dataclass
class NodeSettings:
    """What `init` or `join` decided, kept in node.json."""

    name: str
    colony: str | None = None
    owner_peer_id: str | None = None
    listen: list[str] = field(default_factory=lambda: ["/ip4/0.0.0.0/tcp/0"])
    api: str = "127.0.0.1:0"
    bootstrap: list[str] = field(default_factory=list)
    bound_ports: dict[str, int] = field(default_factory=dict)  # tcp/0 entry -> its last port
    colonies: str | None = None  # HOST:PORT of the Colonies-compatible API (None: off)
    mdns: bool = False  # advertise and find members on the LAN (node/daemon/lan.py)
    fs_quota_bytes: int = 64 << 30  # ColonyFS chunk bytes this node holds at most
    fs_repair_s: float = 30.0  # how often ColonyFS checks its chunks' copies (repair.py)
    fs_grace_s: float = 300.0  # a member away longer no longer counts as a chunk's holder
    fs_gc_grace_s: float = 600.0  # an unreferenced chunk is kept at least this long
    fs_bulk: bool = True  # serve gets on a port of their own (node/daemon/fs/bulk.py)
    fs_bulk_port: int = 0  # that port (0: any free one)
    fs_request_s: float = 60.0  # a peer that answers no ColonyFS request this fast hangs
    retention_s: float = 600.0  # a voter keeps a closed process's register this long
    view_retention_s: float = 3600.0  # the view keeps a closed process whole this long

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeSettings:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class DataDir:
    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def identity_file(self) -> Path:
        return self.path / "identity.key"

    @property
    def settings_file(self) -> Path:
        return self.path / "node.json"

    @property
    def api_file(self) -> Path:
        return self.path / "api.json"

    @property
    def store_path(self) -> Path:
        return self.path / "store"

    def ensure(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)

    def has_identity(self) -> bool:
        return self.identity_file.exists()

    def load_identity(self) -> Identity:
        try:
            seed = self.identity_file.read_bytes()
        except FileNotFoundError:
            raise NotInitialised(
                f"{self.path} has no node identity: run `colonynode init --colony NAME` to "
                "create a colony, or `colonynode join ADDR --invite TOKEN` to join one"
            ) from None
        if len(seed) != SEED_BYTES:
            raise ColonyError(f"{self.identity_file} is damaged ({len(seed)} bytes, not 32)")
        return Identity(seed)

    def create_identity(self) -> Identity:
        self.ensure()
        ident = Identity.generate()
        _write_private(self.identity_file, ident.seed)
        return ident

    def load_or_create_identity(self) -> Identity:
        return self.load_identity() if self.has_identity() else self.create_identity()

    def load_settings(self) -> NodeSettings | None:
        try:
            return NodeSettings.from_json(json.loads(self.settings_file.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise ColonyError(f"{self.settings_file} is damaged: {exc}") from None

    def save_settings(self, settings: NodeSettings) -> None:
        self.ensure()
        _write_private(self.settings_file, json.dumps(asdict(settings), indent=2).encode())

    def write_api_handle(self, url: str, token: str, socket: str | None = None) -> None:
        body: dict[str, Any] = {"url": url, "token": token, "pid": os.getpid()}
        if socket is not None:
            body["socket"] = socket
        _write_private(self.api_file, json.dumps(body).encode())

    def read_api_handle(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.api_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def remove_api_handle(self) -> None:
        self.api_file.unlink(missing_ok=True)
