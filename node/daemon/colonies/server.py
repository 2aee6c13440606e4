"""The Colonies gateway: ColonyOS's `POST /api`, `GET /health` and `/pubsub` websocket on
`--colonies-port` (docs/colonies-api.md), served by hypercorn in the daemon's nursery.

Each request is checked in ColonyOS's order: the envelope's JSON (400), the signature
(403: the key is recovered from it), the payload type (a msgtype we do not serve: 400
naming it), the payload's base64 JSON and its msgtype (400), then who may call it
(403: a key the roster does not name, an executor not approved), then the RPC
(rpc.py). Every refusal is counted (`colonies` in `GET /v1/status`) and changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections import OrderedDict
from functools import partial
from typing import TYPE_CHECKING, Any

import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from colonynode.core.errors import ColonyError
from colonynode.core.roster import APPROVED, Roster
from colonynode.node.core import NotFound, PermissionDenied
from colonynode.node.daemon.colonies import owner, pubsub, shapes
from colonynode.node.daemon.colonies.executors import GatewayExecutors
from colonynode.node.daemon.colonies.keys import BadSignature, recover_id
from colonynode.node.daemon.colonies.rpc import (
    RPCS,
    Caller,
    Rpc,
    RpcError,
    envelope_of,
    error_body,
)
from colonynode.node.daemon.colonies.schedules import SCHEDULE_RPCS

if TYPE_CHECKING:
    from colonynode.node.daemon.run import Node

__all__ = ["ColoniesGateway"]

log = logging.getLogger("colonynode.colonies")

BODY_BYTES_MAX = 1 << 20
ATTRIBUTES_MAX = 10_000  # attribute ids remembered for getattributemsg
COUNTERS = ("requests", "bad_requests", "denied", "bad_signatures", "unserved", "errors")


class _Attributes:
    """Attribute ids made here, to the process they belong to (bounded, oldest out)."""

    def __init__(self) -> None:
        self._pids: OrderedDict[str, bytes] = OrderedDict()

    def remember(self, aid: str, pid: bytes) -> None:
        self._pids[aid] = pid
        if len(self._pids) > ATTRIBUTES_MAX:
            self._pids.popitem(last=False)

    def get(self, aid: str) -> bytes | None:
        return self._pids.get(aid)


def reply(payloadtype: str, payload: Any) -> Response:
    body = {"payloadtype": payloadtype, "error": False,
            "payload": base64.b64encode(json.dumps(payload).encode()).decode()}  # fmt: skip
    return Response(json.dumps(body), media_type="text/plain; charset=utf-8")


def error(status: int, message: str) -> Response:
    return Response(error_body(status, message), status_code=status,
                    media_type="text/plain; charset=utf-8")  # fmt: skip


async def _body(request: Request) -> bytes | None:
    """The request's body, read no further than BODY_BYTES_MAX (None: longer)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > BODY_BYTES_MAX:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > BODY_BYTES_MAX:
            return None
    return bytes(body)


class ColoniesGateway:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.executors = GatewayExecutors(node)
        self.attributes = _Attributes()
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.subscriptions = 0  # open /pubsub waits

    # -- what the RPCs read ------------------------------------------------------------

    @property
    def colony(self) -> str:
        return self.roster().colony

    def roster(self) -> Roster:
        roster = self.node.core.membership.roster
        if roster is None:
            raise RpcError(500, "this node is not a member of any colony")
        return roster

    def colony_id(self) -> str:
        return self.roster().colony_key_id() or ""

    def executor_id_of(self, name: str | None) -> str:
        key = self.roster().colonies_executor(name) if name else None
        return key.key_id if key is not None else ""

    # -- requests ------------------------------------------------------------------------

    def caller(self, payload: str, signature: str) -> Caller:
        try:
            key_id = recover_id(payload, signature)
        except BadSignature as exc:
            self.counters["bad_signatures"] += 1
            raise RpcError(403, str(exc)) from None
        return Caller(key_id, self.roster().colonies_key(key_id), payload, signature)

    def message(self, rpc: Rpc, payloadtype: str, payload: str) -> dict[str, Any]:
        try:
            msg = json.loads(base64.b64decode(payload, validate=True))
        except (ValueError, binascii.Error):
            raise RpcError(400, f"Failed to {rpc.verb}, invalid JSON") from None
        if not isinstance(msg, dict):
            raise RpcError(400, f"Failed to {rpc.verb}, invalid JSON")
        if msg.get("msgtype") != payloadtype:
            raise RpcError(400, f"Failed to {rpc.verb}, msg.MsgType does not match payloadType")
        return msg

    def authorize(self, rpc: Rpc, caller: Caller) -> None:
        key = caller.key
        if not rpc.roles:
            return
        if (
            key is None
            or key.role not in rpc.roles
            or (key.role == "executor" and key.state != APPROVED)
        ):
            if rpc.roles == ("colony",):
                raise RpcError(403, "Access denied, not colony owner")
            raise RpcError(403, f"Access denied, not a member of Colony with name {self.colony}")

    async def answer(self, raw: bytes) -> Response:
        self.counters["requests"] += 1
        try:
            payloadtype, payload = await self._answer(raw)
        except RpcError as exc:
            self.count_refusal(exc.status)
            return error(exc.status, exc.message)
        except ColonyError as exc:
            status = 403 if isinstance(exc, PermissionDenied) else 404 if isinstance(
                exc, NotFound) else 400  # fmt: skip
            self.count_refusal(status)
            return error(status, str(exc))
        except Exception:
            self.counters["errors"] += 1
            log.exception("Colonies gateway: the request failed")
            return error(500, "the node failed this request (see its log)")
        return reply(payloadtype, payload)

    def count_refusal(self, status: int) -> None:
        key = {400: "bad_requests", 403: "denied"}.get(status)
        if key:
            self.counters[key] += 1

    async def _answer(self, raw: bytes) -> tuple[str, Any]:
        if len(raw) > BODY_BYTES_MAX:
            raise RpcError(400, f"request body over {BODY_BYTES_MAX} bytes")
        envelope = envelope_of(raw)
        fields = [envelope.get(f) for f in ("payloadtype", "payload", "signature")]
        if not all(isinstance(f, str) for f in fields[:2]):
            raise RpcError(400, "payloadtype and payload are strings")
        payloadtype, payload = str(fields[0]), str(fields[1])
        rpc = RPCS.get(payloadtype) or SCHEDULE_RPCS.get(payloadtype)
        if rpc is None:
            self.counters["unserved"] += 1
            raise RpcError(
                400, f"colonynode does not serve {payloadtype or 'an empty payloadtype'}"
            )
        if rpc.roles:
            caller = self.caller(payload, str(fields[2] or ""))
        else:
            caller = Caller("", None, payload, "")
        msg = self.message(rpc, payloadtype, payload)
        self.authorize(rpc, caller)
        if rpc.handler is None:
            return payloadtype, await self._key_rpc(caller, msg)
        return payloadtype, await rpc.handler(self, caller, msg)

    async def _key_rpc(self, caller: Caller, msg: dict[str, Any]) -> Any:
        """A change to the executors, made by the owner's node from the signed request;
        answered with the executor as it then stands ({} once removed)."""
        key = await owner.change_key(self.node, caller.payload, caller.signature)
        if key is None:
            self.executors.forget_name(str(msg.get("executorname", "")))
            return {}
        return shapes.executor_json(key, self.colony)

    # -- serving --------------------------------------------------------------------------

    def app(self) -> Starlette:
        async def api(request: Request) -> Response:
            body = await _body(request)
            if body is None:
                self.counters["requests"] += 1
                self.count_refusal(400)
                return error(400, f"request body over {BODY_BYTES_MAX} bytes")
            return await self.answer(body)

        async def health(_: Request) -> Response:
            return Response("", media_type="text/plain; charset=utf-8")

        async def ws(websocket: WebSocket) -> None:
            await websocket.accept()
            try:
                await pubsub.serve(self, websocket)
            except WebSocketDisconnect:
                pass

        return Starlette(routes=[
            Route("/api", api, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            WebSocketRoute("/pubsub", ws),
        ])  # fmt: skip

    async def serve(self, bind: str, stop: trio.Event,
                    task_status: Any = trio.TASK_STATUS_IGNORED) -> None:  # fmt: skip
        from hypercorn.config import Config

        config = Config()
        config.bind = [bind]
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")
        config.graceful_timeout = 1.0
        config.websocket_max_message_size = pubsub.FRAME_BYTES_MAX
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.executors.keep_alive)
            url = await nursery.start(self._serve_http, config, stop)
            task_status.started(url)
            await stop.wait()
            nursery.cancel_scope.cancel()

    async def _serve_http(self, config: Any, stop: trio.Event,
                          task_status: Any = trio.TASK_STATUS_IGNORED) -> None:  # fmt: skip
        """hypercorn, served again on the same address if it fails: a client can make
        its websocket code raise out of its task group (a close racing a send), and
        that must end neither the node nor the gateway."""
        from hypercorn.trio import serve

        started = False
        while not stop.is_set():
            try:
                async with trio.open_nursery() as inner:
                    binds = await inner.start(
                        partial(serve, self.app(), config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
                    )
                    if not started:
                        url = str(binds[0])
                        config.bind = [url.split("://", 1)[-1]]  # port 0: keep the one it got
                        task_status.started(url)
                        started = True
                return
            except Exception as exc:  # (an ExceptionGroup of hypercorn's; never Cancelled)
                if not started:
                    raise
                self.counters["errors"] += 1
                log.warning("Colonies API: the HTTP server failed (%s); serving again",
                            type(exc).__name__)  # fmt: skip
