"""Changes to the roster's Colonies keys, which only the owner's node signs
(docs/colonies-api.md). A gateway on the owner's node asks its NodeCore; any other
relays the request to the owner's node over the join channel (`KeysChange`, as a join
is relayed) and takes the roster the owner answers with, so the key is known here by
the time the RPC is answered. The owner checks the colony key's signature on a relayed
request itself: a member cannot change executors without the colony key.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import TYPE_CHECKING, Any

import trio

from colonynode.core.errors import ColonyError
from colonynode.core.ids import NodeId
from colonynode.core.roster import ColoniesKey
from colonynode.node.core import NotFound, PermissionDenied
from colonynode.node.core import requests as rq
from colonynode.node.core.messages import KeysChange, KeysChanged
from colonynode.node.daemon.colonies.keys import BadSignature, recover_id
from colonynode.node.daemon.colonies.rpc import RpcError
from colonynode.node.daemon.p2p import DialError
from colonynode.node.daemon.wire import RemoteError, StreamClosed

if TYPE_CHECKING:
    from colonynode.node.daemon.run import Node

__all__ = ["change_key", "change_of", "serve_keys_change"]

log = logging.getLogger("colonynode.colonies")

OWNER_S = 20.0
_OPS = {"addexecutormsg": "add_executor", "approveexecutormsg": "approve",
        "rejectexecutormsg": "reject", "removeexecutormsg": "remove"}  # fmt: skip


def _status(exc: ColonyError) -> int:
    if isinstance(exc, PermissionDenied):
        return 403
    if isinstance(exc, NotFound):
        return 500  # ColonyOS: "Failed to approve executor, executor is nil"
    return 400


def change_of(payload: str, signature: str, colony: str) -> rq.ColoniesKeyChange:
    """The key change a signed ColonyOS request asks for (RpcError if it asks none)."""
    try:
        signer = recover_id(payload, signature)
    except BadSignature as exc:
        raise RpcError(403, str(exc)) from None
    try:
        msg = json.loads(base64.b64decode(payload, validate=True))
    except (ValueError, binascii.Error):
        raise RpcError(400, "invalid JSON") from None
    op = _OPS.get(str(msg.get("msgtype"))) if isinstance(msg, dict) else None
    if op is None:
        raise RpcError(400, "not a request to change an executor")
    body: Any = msg.get("executor") if op == "add_executor" else msg
    if not isinstance(body, dict):
        raise RpcError(400, "Failed to add executor, executor is nil")
    if body.get("colonyname") != colony:
        raise RpcError(403, f"Colony with name {body.get('colonyname')} does not exists")
    fields = [body.get(f, "") for f in ("executorid", "executorname", "executortype")]
    if not all(isinstance(f, str) for f in fields):
        raise RpcError(400, "executorid, executorname and executortype are strings")
    if op != "add_executor":
        fields[0] = fields[2] = ""
    return rq.ColoniesKeyChange(op, fields[0], fields[1], fields[2], signer=signer)


async def change_key(
    node: Node, payload: str, signature: str, *, key_id: str = "", name: str = ""
) -> ColoniesKey | None:
    """Make a key change at the owner's node; the entry as it stands after it.
    `payload`/`signature`: a signed executor change; else this node's own user key."""
    m = node.core.membership
    if m.is_owner:
        try:
            return await _apply(node, node.identity.node_id, payload, signature, key_id, name)
        except ColonyError as exc:
            raise RpcError(_status(exc), str(exc)) from None
    roster = m.roster
    if roster is None:
        raise RpcError(500, "this node is not a member of any colony")
    reply = await _relay(node, roster.owner, KeysChange(payload, signature, key_id, name))
    await node.call(rq.OfferRoster(reply.roster))
    roster = m.roster
    assert roster is not None
    if payload:
        change = change_of(payload, signature, roster.colony)
        if change.op == "remove":
            return None
        return roster.colonies_executor(change.name)
    return roster.colonies_key(key_id)


async def _apply(node: Node, member: NodeId, payload: str, signature: str, key_id: str,
                 name: str) -> ColoniesKey | None:  # fmt: skip
    colony = node.core.colony()
    if payload:
        req = change_of(payload, signature, colony)
    else:
        req = rq.ColoniesKeyChange("add_user", key_id, name, member=member)
    answer = await node.call(req)
    key: ColoniesKey | None = answer["key"]
    return key


async def _relay(node: Node, owner: NodeId, msg: KeysChange) -> KeysChanged:
    transport = node.transport
    if owner not in transport.peers():
        for addr in [a for a in node.core.membership.addrs.get(owner, ()) if "/p2p/" in a][:1]:
            try:
                await transport.connect(addr)
            except DialError:
                pass
    try:
        with trio.fail_after(OWNER_S):
            frames = await transport.open(owner, "join")
            await frames.write_batch([msg])
            reply = await frames.read_batch()
            await frames.close()
    except RemoteError as exc:
        status = int(exc.code) if exc.code.isdigit() else 400
        raise RpcError(status, str(exc)) from None
    except (StreamClosed, trio.TooSlowError, DialError) as exc:
        raise RpcError(500, f"the colony owner's node cannot be reached: {exc}") from None
    if len(reply) != 1 or not isinstance(reply[0], KeysChanged):
        raise RpcError(500, "the colony owner's node answered with something else")
    return reply[0]


async def serve_keys_change(node: Node, sender: NodeId, msg: KeysChange) -> KeysChanged:
    """The owner's node: a member's relayed key change (RemoteError with the status)."""
    try:
        await _apply(node, sender, msg.payload, msg.signature, msg.key_id, msg.name)
    except RpcError as exc:
        raise RemoteError(str(exc.status), exc.message) from None
    except ColonyError as exc:
        raise RemoteError(str(_status(exc)), str(exc)) from None
    env = node.core.membership.envelope
    assert env is not None
    return KeysChanged(env)
