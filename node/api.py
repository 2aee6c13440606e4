"""The local HTTP/JSON API (DESIGN.md §10): 127.0.0.1 only, bearer token from the data dir.

Errors are JSON ``{"error": {"code": ..., "message": ...}}`` with a 4xx status; the CLI
prints the message as one line. Documented in docs/api.md.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from colonynode.core.errors import ColonyError, ValidationError

__all__ = ["API_BODY_BYTES_MAX", "NodeApi", "NotFound", "PermissionDenied", "build_app"]

API_BODY_BYTES_MAX = 1 << 20
RECORDS_LIST_MAX = 10_000


class PermissionDenied(ColonyError):
    """The caller may not do that (not the owner, not a member)."""


class NotFound(ColonyError):
    """No such process (or other named thing) is known here."""


class NodeApi(Protocol):
    """What the daemon offers its API (node.daemon.Node implements it)."""

    def status(self) -> dict[str, Any]: ...
    def members(self) -> list[dict[str, Any]]: ...
    def peers(self) -> list[dict[str, Any]]: ...
    async def create_invite(self, roles: list[str], ttl_s: float) -> str: ...
    async def remove_member(self, name_or_id: str) -> dict[str, Any]: ...
    async def set_voters(self, names: list[str]) -> dict[str, Any]: ...
    def metrics_text(self) -> str: ...
    async def publish_record(self, kind: str, body: Any) -> dict[str, Any]: ...
    def records(self, kind: str | None, limit: int) -> list[dict[str, Any]]: ...
    async def lease_submit(self, body: dict[str, Any]) -> dict[str, Any]: ...
    async def lease_claim(self, body: dict[str, Any]) -> dict[str, Any]: ...
    async def lease_close(self, body: dict[str, Any]) -> dict[str, Any]: ...
    async def lease_read(self, pid: str) -> dict[str, Any]: ...
    async def fs_add_revision(self, body: dict[str, Any]) -> dict[str, Any]: ...
    async def fs_record(self, label: str, name: str) -> dict[str, Any]: ...
    async def find_peer(self, peer_id: str) -> dict[str, Any]: ...
    async def submit_process(self, body: dict[str, Any]) -> dict[str, Any]: ...
    async def get_process(self, pid_hex: str, consistent: bool) -> dict[str, Any]: ...
    def list_processes(
        self, state: str | None, limit: int, offset: int = 0, filters: dict[str, str] | None = None
    ) -> list[dict[str, Any]]: ...
    async def submit_workflow(self, body: dict[str, Any]) -> dict[str, Any]: ...
    async def wait_process(self, pid_hex: str, timeout_s: float) -> dict[str, Any]: ...
    async def process_logs(self, pid_hex: str, after: int, wait_s: float) -> dict[str, Any]: ...
    async def cancel_process(self, pid_hex: str) -> dict[str, Any]: ...
    async def executor_heartbeat(self, executor_id: str) -> dict[str, Any]: ...
    async def executor_detach(self, executor_id: str) -> dict[str, Any]: ...
    async def executor_log(self, executor_id: str, body: dict[str, Any]) -> dict[str, Any]: ...
    async def executor_attribute(
        self, executor_id: str, body: dict[str, Any]
    ) -> dict[str, Any]: ...
    async def executor_register(self, body: dict[str, Any]) -> dict[str, Any]: ...
    async def executor_assign(self, executor_id: str, body: dict[str, Any]) -> dict[str, Any]: ...
    async def executor_close(
        self, executor_id: str, body: dict[str, Any], success: bool
    ) -> dict[str, Any]: ...


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > API_BODY_BYTES_MAX:
        raise ValidationError(f"request body over {API_BODY_BYTES_MAX} bytes")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValidationError("request body is not JSON") from None
    if not isinstance(data, dict):
        raise ValidationError("request body must be a JSON object")
    return data


def _number(params: Any, name: str, default: float) -> float:
    """A numeric query parameter, or a ValidationError naming it."""
    text = params.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValidationError(f"{name} must be a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValidationError(f"{name} must be a finite number")
    return value


Handler = Callable[[Request], Awaitable[Response]]


def build_app(node: NodeApi, token: str) -> Starlette:
    expected = f"Bearer {token}".encode()

    def guarded(fn: Callable[[Request], Awaitable[Any]]) -> Handler:
        async def endpoint(request: Request) -> Response:
            got = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(got, expected):
                return _error(401, "unauthorized", "missing or wrong API token")
            try:
                result = await fn(request)
            except PermissionDenied as exc:
                return _error(403, "forbidden", str(exc))
            except NotFound as exc:
                return _error(404, "not_found", str(exc))
            except ColonyError as exc:
                return _error(400, type(exc).__name__, str(exc))
            except (ValueError, TypeError) as exc:  # a field of the wrong type or range
                return _error(400, "bad_request", f"bad request: {exc}")
            if isinstance(result, Response):
                return result
            return JSONResponse(result)

        return endpoint

    async def status(_: Request) -> Any:
        return node.status()

    async def members(_: Request) -> Any:
        return node.members()

    async def peers(_: Request) -> Any:
        return node.peers()

    async def invite(request: Request) -> Any:
        body = await _body(request)
        roles = body.get("roles", ["executor", "submitter"])
        ttl_s = body.get("ttl_s", 3600)
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise ValidationError("roles must be a list of strings")
        if not isinstance(ttl_s, int | float) or isinstance(ttl_s, bool):
            raise ValidationError("ttl_s must be a number of seconds")
        return {"token": await node.create_invite(roles, float(ttl_s))}

    async def remove_member(request: Request) -> Any:
        body = await _body(request)
        who = body.get("member")
        if not isinstance(who, str) or not who:
            raise ValidationError("member must name a member (name or peer id)")
        return await node.remove_member(who)

    async def voters(request: Request) -> Any:
        body = await _body(request)
        names = body.get("voters")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValidationError("voters must be a list of member names or peer ids")
        return await node.set_voters(names)

    async def publish(request: Request) -> Any:
        body = await _body(request)
        kind = body.get("kind")
        if not isinstance(kind, str) or not 0 < len(kind) <= 64:
            raise ValidationError("kind must be a string of 1..64 characters")
        return await node.publish_record(kind, body.get("body"))

    async def records(request: Request) -> Any:
        kind = request.query_params.get("kind") or None
        try:
            limit = int(request.query_params.get("limit", "1000"))
        except ValueError:
            raise ValidationError("limit must be an integer") from None
        return node.records(kind, max(0, min(limit, RECORDS_LIST_MAX)))

    async def lease_submit(request: Request) -> Any:
        return await node.lease_submit(await _body(request))

    async def lease_claim(request: Request) -> Any:
        return await node.lease_claim(await _body(request))

    async def lease_close(request: Request) -> Any:
        return await node.lease_close(await _body(request))

    async def lease_read(request: Request) -> Any:
        return await node.lease_read(request.path_params["pid"])

    async def fs_add(request: Request) -> Any:
        return await node.fs_add_revision(await _body(request))

    async def fs_get(request: Request) -> Any:
        return await node.fs_record(request.path_params["label"], request.path_params["name"])

    async def find_peer(request: Request) -> Any:
        return await node.find_peer(request.path_params["peer_id"])

    async def submit_process(request: Request) -> Any:
        return await node.submit_process(await _body(request))

    async def get_process(request: Request) -> Any:
        consistent = request.query_params.get("consistent", "") in ("1", "true", "yes")
        return await node.get_process(request.path_params["pid"], consistent)

    async def list_processes(request: Request) -> Any:
        q = request.query_params
        limit = _number(q, "limit", 100)
        offset = _number(q, "offset", 0)
        filters = {k: v for k, v in q.items() if k not in ("state", "limit", "offset")}
        return node.list_processes(
            q.get("state") or None,
            int(max(0, min(limit, RECORDS_LIST_MAX))),
            int(max(0, offset)),
            filters,
        )

    async def submit_workflow(request: Request) -> Any:
        return await node.submit_workflow(await _body(request))

    async def wait_process(request: Request) -> Any:
        timeout_s = _number(request.query_params, "timeout_s", 30)
        return await node.wait_process(request.path_params["pid"], timeout_s)

    async def process_logs(request: Request) -> Any:
        q = request.query_params
        return await node.process_logs(
            request.path_params["pid"], int(_number(q, "after", 0)), _number(q, "wait_s", 0)
        )

    async def cancel_process(request: Request) -> Any:
        return await node.cancel_process(request.path_params["pid"])

    async def executor_heartbeat(request: Request) -> Any:
        return await node.executor_heartbeat(request.path_params["eid"])

    async def executor_detach(request: Request) -> Any:
        return await node.executor_detach(request.path_params["eid"])

    async def executor_log(request: Request) -> Any:
        return await node.executor_log(request.path_params["eid"], await _body(request))

    async def executor_attribute(request: Request) -> Any:
        return await node.executor_attribute(request.path_params["eid"], await _body(request))

    async def executor_register(request: Request) -> Any:
        return await node.executor_register(await _body(request))

    async def executor_assign(request: Request) -> Any:
        return await node.executor_assign(request.path_params["eid"], await _body(request))

    async def executor_close(request: Request) -> Any:
        return await node.executor_close(request.path_params["eid"], await _body(request), True)

    async def executor_fail(request: Request) -> Any:
        return await node.executor_close(request.path_params["eid"], await _body(request), False)

    async def metrics(_: Request) -> Any:
        return Response(node.metrics_text(), media_type="text/plain; version=0.0.4")

    routes = [
        Route("/v1/status", guarded(status), methods=["GET"]),
        Route("/v1/members", guarded(members), methods=["GET"]),
        Route("/v1/peers", guarded(peers), methods=["GET"]),
        Route("/v1/invites", guarded(invite), methods=["POST"]),
        Route("/v1/members/remove", guarded(remove_member), methods=["POST"]),
        Route("/v1/voters", guarded(voters), methods=["POST"]),
        Route("/v1/records", guarded(publish), methods=["POST"]),
        Route("/v1/records", guarded(records), methods=["GET"]),
        Route("/v1/leases/submit", guarded(lease_submit), methods=["POST"]),
        Route("/v1/leases/claim", guarded(lease_claim), methods=["POST"]),
        Route("/v1/leases/close", guarded(lease_close), methods=["POST"]),
        Route("/v1/leases/{pid}", guarded(lease_read), methods=["GET"]),
        Route("/v1/fs/revisions", guarded(fs_add), methods=["POST"]),
        Route("/v1/fs/{label}/{name}", guarded(fs_get), methods=["GET"]),
        Route("/v1/dht/peers/{peer_id}", guarded(find_peer), methods=["GET"]),
        Route("/v1/processes", guarded(submit_process), methods=["POST"]),
        Route("/v1/processes", guarded(list_processes), methods=["GET"]),
        Route("/v1/processes/{pid}", guarded(get_process), methods=["GET"]),
        Route("/v1/processes/{pid}/wait", guarded(wait_process), methods=["GET"]),
        Route("/v1/processes/{pid}/logs", guarded(process_logs), methods=["GET"]),
        Route("/v1/processes/{pid}/cancel", guarded(cancel_process), methods=["POST"]),
        Route("/v1/workflows", guarded(submit_workflow), methods=["POST"]),
        Route("/v1/executors", guarded(executor_register), methods=["POST"]),
        Route("/v1/executors/{eid}/assign", guarded(executor_assign), methods=["POST"]),
        Route("/v1/executors/{eid}/close", guarded(executor_close), methods=["POST"]),
        Route("/v1/executors/{eid}/fail", guarded(executor_fail), methods=["POST"]),
        Route("/v1/executors/{eid}/heartbeat", guarded(executor_heartbeat), methods=["POST"]),
        Route("/v1/executors/{eid}/log", guarded(executor_log), methods=["POST"]),
        Route("/v1/executors/{eid}/detach", guarded(executor_detach), methods=["POST"]),
        Route("/v1/executors/{eid}/attributes", guarded(executor_attribute), methods=["POST"]),
        Route("/metrics", guarded(metrics), methods=["GET"]),
    ]
    return Starlette(routes=routes)
