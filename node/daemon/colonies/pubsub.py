"""ColonyOS's `/pubsub` websocket: `subscribeprocessmsg` (docs/colonies-api.md).

The client sends a signed RPC message `{processid, state, timeout, ...}`; the server
sends the process (`{"payloadtype": "subscribeprocessmsg", "payload": base64(Process),
"error": false}`) at once if it is in that state, else when it gets there, and closes
the socket at the timeout. Unlike ColonyOS, a process that closes in another state ends
the wait at once too (pycolonies' `wait` reads the process after any message): a
subscriber to SUCCESS hears of a FAILED process now, not at its timeout. Only keys the
roster names may subscribe.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import trio
from starlette.websockets import WebSocket, WebSocketDisconnect

from colonynode.node.core import NotFound
from colonynode.node.core import requests as rq
from colonynode.node.daemon.colonies import shapes
from colonynode.node.daemon.colonies.rpc import Rpc, RpcError, envelope_of, error_body

if TYPE_CHECKING:
    from colonynode.node.daemon.colonies.server import ColoniesGateway

__all__ = ["serve"]

SUBSCRIPTIONS_MAX = 1024  # open /pubsub waits a node serves at once
FIRST_FRAME_S = 10.0  # to send the subscription once connected
SUBSCRIBE = Rpc("subscribe to process", ("colony", "user", "executor"), None)
TIMEOUT_S_MAX = 3600.0
POLL_S = 0.25  # a wait for WAITING or RUNNING polls the view (closes are waited for)
FRAME_BYTES_MAX = 1 << 16
CLOSED = ("SUCCESS", "FAILED", "CANCELLED")


async def serve(gw: ColoniesGateway, ws: WebSocket) -> None:
    """One subscription a socket (pycolonies opens one a wait)."""
    text = None
    with trio.move_on_after(FIRST_FRAME_S):
        text = await ws.receive_text()
    if text is None:  # a socket that says nothing holds no slot
        gw.count_refusal(400)
        await _close(ws)
        return
    gw.counters["requests"] += 1
    try:
        if gw.subscriptions >= SUBSCRIPTIONS_MAX:
            raise RpcError(503, f"this node serves {SUBSCRIPTIONS_MAX} waits already: try again")
        pid, state, timeout_s = _subscription(gw, text)
    except RpcError as exc:
        gw.count_refusal(exc.status)
        await ws.send_text(error_body(exc.status, exc.message))
        await _until_closed(ws, FIRST_FRAME_S)  # the client closes (a close from both
        return  # ends at once can break hypercorn's send: serve() serves again then)
    gw.subscriptions += 1
    try:
        await _wait(gw, ws, pid, state, timeout_s)
    finally:
        gw.subscriptions -= 1
    await _close(ws)


async def _wait(gw: ColoniesGateway, ws: WebSocket, pid: bytes, state: str,
                timeout_s: float) -> None:  # fmt: skip
    with trio.move_on_after(timeout_s):
        view = await _until(gw, pid, state)
        process = shapes.process_json(view, gw.colony, gw.executor_id_of)
        body = {"payloadtype": "subscribeprocessmsg", "error": False, "payload": _b64(process)}
        await ws.send_text(json.dumps(body))
        while True:  # ColonyOS keeps the socket open: the client closes it (pycolonies does)
            await ws.receive_text()


async def _until_closed(ws: WebSocket, timeout_s: float) -> None:
    """Let the client close the socket; close it ourselves after `timeout_s`."""
    with trio.move_on_after(timeout_s):
        try:
            while True:
                await ws.receive_text()
        except (WebSocketDisconnect, RuntimeError):
            return
    await _close(ws)


async def _close(ws: WebSocket) -> None:
    """Close at the timeout; a client that closes at the same moment is no error."""
    try:
        await ws.close()
    except (RuntimeError, trio.BusyResourceError, trio.BrokenResourceError,
            trio.ClosedResourceError):  # fmt: skip
        pass


def _b64(value: Any) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def _subscription(gw: ColoniesGateway, text: str) -> tuple[bytes, str, float]:
    if len(text) > FRAME_BYTES_MAX:
        raise RpcError(400, f"a subscription is at most {FRAME_BYTES_MAX} bytes")
    envelope = envelope_of(text)
    if envelope.get("payloadtype") != "subscribeprocessmsg":
        raise RpcError(400, "expected a subscribeprocessmsg")
    payload, signature = envelope.get("payload"), envelope.get("signature")
    if not isinstance(payload, str) or not isinstance(signature, str):
        raise RpcError(400, "payload and signature are strings")
    caller = gw.caller(payload, signature)
    msg = gw.message(SUBSCRIBE, "subscribeprocessmsg", payload)
    gw.authorize(SUBSCRIBE, caller)
    state = shapes.STATE_NAMES.get(msg.get("state"))  # type: ignore[arg-type]
    timeout = msg.get("timeout")
    if state is None or type(timeout) is not int:
        raise RpcError(400, "state is 0..4 and timeout an integer (seconds)")
    try:
        pid = bytes.fromhex(str(msg.get("processid")))
    except ValueError:
        raise RpcError(403, f"Invalid process with Id {msg.get('processid')}") from None
    return pid, state, min(max(float(timeout), 0.0), TIMEOUT_S_MAX)


async def _until(gw: ColoniesGateway, pid: bytes, state: str) -> dict[str, Any]:
    """The process's view once it is in `state` (or closed in another)."""
    while True:
        try:
            view: dict[str, Any] = await gw.node.call(rq.GetProcess(pid))
        except NotFound:
            view = {}
        now = view.get("state")
        if now == state or now in CLOSED:
            return view
        if state in CLOSED and now is not None:
            await gw.node.call(rq.WaitProcess(pid, 60.0))  # returns once it closes
        else:
            await trio.sleep(POLL_S)  # WAITING, RUNNING or not heard of yet: look again
