"""The local API's ColonyFS routes (docs/api.md, "ColonyFS"): paths are the caller's,
absolute (the CLI and SDK resolve them), on this machine; `detach: true` answers with a
transfer at once, to be polled at /v1/fs/transfers/{id}."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from colonynode.core.errors import ValidationError
from colonynode.node.daemon._http_args import _body

if TYPE_CHECKING:
    from colonynode.node.daemon.fs.service import FsService

__all__ = ["fs_routes"]


def _str(body: dict[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or (default is None and not value):
        raise ValidationError(f"{key} must be a non-empty string")
    return value


def _flag(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise ValidationError(f"{key} must be true or false")
    return value


def _query(request: Request, key: str) -> str:
    value = request.query_params.get(key)
    if not value:
        raise ValidationError(f"give {key}=")
    return value


def fs_routes(fs: FsService) -> list[tuple[str, Any, list[str]]]:
    async def put(request: Request) -> Any:
        b = await _body(request)
        return await fs.put(_str(b, "path"), _str(b, "label"), _str(b, "name", ""),
                            detach=_flag(b, "detach", False))  # fmt: skip

    async def get_file(request: Request) -> Any:
        b = await _body(request)
        return await fs.get(_str(b, "label"), _str(b, "name"), _str(b, "dir"),
                            _str(b, "revision", ""), detach=_flag(b, "detach", False))  # fmt: skip

    async def sync(request: Request) -> Any:
        b = await _body(request)
        keeplocal, dry = _flag(b, "keeplocal", True), _flag(b, "dry", False)
        return await fs.sync(_str(b, "label"), _str(b, "dir"), keeplocal=keeplocal, dry=dry,
                             detach=_flag(b, "detach", False))  # fmt: skip

    async def ls(request: Request) -> Any:
        return fs.ls(_query(request, "label"))

    async def info(request: Request) -> Any:
        return fs.info(_query(request, "label"), _query(request, "name"))

    async def remove(request: Request) -> Any:
        b = await _body(request)
        return await fs.remove(_str(b, "label"), _str(b, "name"))

    async def labels(_: Request) -> Any:
        return fs.labels()

    async def remove_label(request: Request) -> Any:
        return await fs.remove_label(_str(await _body(request), "label"))

    async def snapshot_create(request: Request) -> Any:
        b = await _body(request)
        return await fs.snapshot_create(_str(b, "label"), _str(b, "name"))

    async def snapshots(_: Request) -> Any:
        return fs.snapshots()

    async def snapshot(request: Request) -> Any:
        return fs.snapshot(request.path_params["name"])

    async def snapshot_download(request: Request) -> Any:
        b = await _body(request)
        return await fs.snapshot_download(request.path_params["name"], _str(b, "dir"),
                                          detach=_flag(b, "detach", False))  # fmt: skip

    async def snapshot_remove(request: Request) -> Any:
        return await fs.snapshot_remove(request.path_params["name"])

    async def transfer(request: Request) -> Any:
        try:
            wait_s = float(request.query_params.get("wait_s", "0"))
        except ValueError:
            raise ValidationError("wait_s is a number of seconds") from None
        return await fs.transfer(request.path_params["tid"], wait_s)

    post, get = ["POST"], ["GET"]
    return [
        ("/v1/fs/put", put, post),
        ("/v1/fs/get", get_file, post),
        ("/v1/fs/sync", sync, post),
        ("/v1/fs/files", ls, get),
        ("/v1/fs/info", info, get),
        ("/v1/fs/remove", remove, post),
        ("/v1/fs/labels", labels, get),
        ("/v1/fs/labels/remove", remove_label, post),
        ("/v1/fs/snapshots", snapshot_create, post),
        ("/v1/fs/snapshots", snapshots, get),
        ("/v1/fs/snapshots/{name}", snapshot, get),
        ("/v1/fs/snapshots/{name}/download", snapshot_download, post),
        ("/v1/fs/snapshots/{name}/remove", snapshot_remove, post),
        ("/v1/fs/transfers/{tid}", transfer, get),
    ]
