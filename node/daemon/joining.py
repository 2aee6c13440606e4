"""Joining a colony: the join protocol (/colony/join/1), served and used (DESIGN.md §3).

A request-and-answer stream, so it stays out of NodeCore's message loop: the owner's
node asks its NodeCore to admit a joiner that presents a valid invite (`Admit`); any
other member forwards the request to the owner's node and relays the answer; the joiner
hands the answer to its NodeCore (`Joined`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from colonynode.core.errors import ColonyError
from colonynode.core.ids import NodeId, peer_id_str, short_id
from colonynode.core.invite import parse_invite
from colonynode.core.limits import FRAME_BYTES_MAX
from colonynode.node.core import JoinFailed
from colonynode.node.core import requests as rq
from colonynode.node.core.messages import (
    JOIN_CODEC,
    JoinAccepted,
    JoinForward,
    JoinRequest,
    KeysChange,
)
from colonynode.node.daemon.colonies.owner import serve_keys_change
from colonynode.node.daemon.links import LinkStream
from colonynode.node.daemon.p2p import DialError
from colonynode.node.daemon.wire import FrameStream, RemoteError, StreamClosed

if TYPE_CHECKING:
    from colonynode.node.daemon.run import Node

__all__ = ["JOIN_PROTOCOL", "JoinFailed", "join", "serve_join"]

log = logging.getLogger("colonynode.node")

JOIN_PROTOCOL = "/colony/join/1"  # the join channel's protocol id on a link
JOIN_S = 20.0


async def serve_join(node: Node, stream: LinkStream) -> None:
    frames = FrameStream(stream, JOIN_CODEC, FRAME_BYTES_MAX)
    membership = node.core.membership
    try:
        sender = stream.peer
        with trio.fail_after(JOIN_S):
            msgs = await frames.read_batch()
            if len(msgs) == 1 and isinstance(msgs[0], KeysChange):
                await _keys_change(node, frames, sender, msgs[0])
                return
            if len(msgs) != 1 or not isinstance(msgs[0], JoinRequest | JoinForward):
                await frames.write_error("bad_request", "expected one JoinRequest")
                return
            msg = msgs[0]
            if isinstance(msg, JoinForward):
                if not membership.is_member(sender):
                    node.transport.counters["refused_streams"] += 1
                    await frames.write_error("not_member", "only members forward joins")
                    return
                joiner, req = msg.joiner, msg.request
            else:
                joiner, req = sender, msg
            if membership.is_owner:
                reply = await _admit(node, joiner, req)
            else:
                reply = await _forward(node, joiner, req)
            if isinstance(reply, RemoteError):
                await frames.write_error(reply.code, str(reply))
                return
            await frames.write_batch([reply])
    except (StreamClosed, RemoteError, trio.TooSlowError):
        pass
    except ColonyError as exc:
        node.transport.counters["bad_frames"] += 1
        log.info("bad join frame: %s", exc)
        await frames.reset()
    except Exception:
        log.exception("join handler failed")
        await frames.reset()
    finally:
        await frames.close()


async def _keys_change(node: Node, frames: FrameStream, sender: NodeId, msg: KeysChange) -> None:
    """A member relays a change to the Colonies keys (node/daemon/colonies/owner.py)."""
    membership = node.core.membership
    if not membership.is_member(sender) or not membership.is_owner:
        node.transport.counters["refused_streams"] += 1
        await frames.write_error("403", "only a member asks, and only the owner's node answers")
        return
    try:
        reply = await serve_keys_change(node, sender, msg)
    except RemoteError as exc:
        await frames.write_error(exc.code, str(exc))
        return
    await frames.write_batch([reply])


async def _admit(node: Node, joiner: NodeId, req: JoinRequest) -> JoinAccepted | RemoteError:
    """The owner's node: NodeCore checks the invite, adds the joiner and persists."""
    try:
        accepted: JoinAccepted = await node.driver.call(rq.Admit(joiner, req))
    except ColonyError as exc:
        return RemoteError("invite", str(exc))
    return accepted


async def _forward(node: Node, joiner: NodeId, req: JoinRequest) -> JoinAccepted | RemoteError:
    """A member that is not the owner relays the request to the owner's node."""
    membership = node.core.membership
    roster = membership.roster
    if roster is None or not membership.is_member(node.core.node_id):
        return RemoteError("not_member", "this node is not a member of any colony")
    owner = roster.owner
    if owner not in node.transport.peers():
        for addr in [a for a in membership.addrs.get(owner, ()) if "/p2p/" in a][:1]:
            try:
                await node.transport.connect(addr)
            except DialError:
                pass
    try:
        frames = await node.transport.open(owner, "join")
        await frames.write_batch([JoinForward(joiner, req)])
        reply = await frames.read_batch()
        await frames.close()
    except RemoteError as exc:
        return exc
    except (StreamClosed, trio.TooSlowError) as exc:
        return RemoteError("owner_unreachable", f"the owner's node cannot be reached: {exc}")
    if len(reply) != 1 or not isinstance(reply[0], JoinAccepted):
        return RemoteError("bad_reply", "the owner's node answered with something else")
    log.info("forwarded the join of %s to the owner", short_id(joiner))
    node.transport.counters["joins_forwarded"] += 1
    return reply[0]


async def join(node: Node, addr: str, token: str) -> None:
    """Present `token` to the node at `addr`; on success we are a member (persisted)."""
    parse_invite(token)  # fail fast, locally, on a damaged or forged token
    transport = node.transport
    owner = await transport.connect(addr)
    try:
        with trio.fail_after(JOIN_S):
            frames = await transport.open(owner, "join")
            req = JoinRequest(token, node.settings.name, tuple(transport.addrs()))
            await frames.write_batch([req])
            reply = await frames.read_batch()
            await frames.close()
    except RemoteError as exc:
        raise JoinFailed(f"join refused: {exc}") from None
    except (StreamClosed, trio.TooSlowError) as exc:
        raise JoinFailed(f"the node at {addr} did not answer the join ({exc})") from None
    if len(reply) != 1 or not isinstance(reply[0], JoinAccepted):
        raise JoinFailed("the node answered the join with something else")
    colony = await node.driver.call(rq.Joined(reply[0]))
    roster = node.core.membership.roster
    assert roster is not None
    node.settings.colony = colony
    node.settings.owner_peer_id = peer_id_str(roster.owner)
    node.settings.bootstrap = [addr]
    node.datadir.save_settings(node.settings)
