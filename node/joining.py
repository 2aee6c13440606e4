"""Joining a colony: the join protocol (/colony/join/1), served and used (DESIGN.md §3).

The owner's node admits a joiner that presents a valid invite; any other member forwards
the request to the owner's node and relays the answer.
"""

from __future__ import annotations

import logging
import time

import trio
from libp2p.abc import INetStream

from colonynode.core.errors import ColonyError
from colonynode.core.ids import NodeId, peer_id_str, short_id
from colonynode.core.invite import parse_invite
from colonynode.core.limits import FRAME_BYTES_MAX
from colonynode.node._base import NodeBase
from colonynode.node.messages import (
    JOIN_CODEC,
    JoinAccepted,
    JoinForward,
    JoinRequest,
    PeerAddrs,
)
from colonynode.node.p2p import DialError, node_id_of
from colonynode.node.wire import FrameStream, RemoteError, StreamClosed

__all__ = ["JOIN_PROTOCOL", "JoinFailed", "Joining"]

log = logging.getLogger("colonynode.node")

JOIN_PROTOCOL = "/colony/join/1"
JOIN_S = 20.0


class JoinFailed(ColonyError):
    pass


class Joining(NodeBase):
    # -- the join protocol --------------------------------------------------------------

    async def _serve_join(self, stream: INetStream) -> None:
        frames = FrameStream(stream, JOIN_CODEC, FRAME_BYTES_MAX)
        try:
            sender = node_id_of(stream.muxed_conn.peer_id)
            with trio.fail_after(JOIN_S):
                msgs = await frames.read_batch()
                if len(msgs) != 1 or not isinstance(msgs[0], JoinRequest | JoinForward):
                    await frames.write_error("bad_request", "expected one JoinRequest")
                    return
                msg = msgs[0]
                if isinstance(msg, JoinForward):
                    if not self.membership.is_member(sender):
                        self.transport.counters["refused_streams"] += 1
                        await frames.write_error("not_member", "only members forward joins")
                        return
                    joiner, req = msg.joiner, msg.request
                else:
                    joiner, req = sender, msg
                if not self.membership.is_owner:
                    reply = await self._forward_join(joiner, req)
                else:
                    reply = self._admit(joiner, req)
                if isinstance(reply, RemoteError):
                    await frames.write_error(reply.code, str(reply))
                    return
                await frames.write_batch([reply])
                if self.membership.is_owner:
                    self._broadcast_roster(skip=joiner)
        except (StreamClosed, RemoteError, trio.TooSlowError):
            pass
        except ColonyError as exc:
            self.transport.counters["bad_frames"] += 1
            log.info("bad join frame: %s", exc)
            await frames.reset()
        except Exception:
            log.exception("join handler failed")
            await frames.reset()
        finally:
            await frames.close()

    def _admit(self, joiner: NodeId, req: JoinRequest) -> JoinAccepted | RemoteError:
        """The owner's node: check the invite, add the joiner, persist, then answer."""
        try:
            member, writes = self.membership.admit(joiner, req.invite, req.name, time.time())
        except ColonyError as exc:
            self.transport.counters["joins_refused"] += 1
            log.info("refused join by %s: %s", short_id(joiner), exc)
            return RemoteError("invite", str(exc))
        writes += self.membership.learn_addrs(joiner, tuple(req.addrs))
        self._persist(writes)  # durable before anyone hears of it
        self._gossip_roster()
        env = self.membership.envelope
        assert env is not None
        own = PeerAddrs(self.identity.node_id, tuple(self.transport.addrs()))
        log.info("admitted %s as %s (roles %s)", short_id(joiner), member.name, member.roles)
        return JoinAccepted(env, (own,))

    async def _forward_join(self, joiner: NodeId, req: JoinRequest) -> JoinAccepted | RemoteError:
        """A member that is not the owner relays the request to the owner's node."""
        roster = self.membership.roster
        if roster is None or not self.membership.is_member(self.identity.node_id):
            return RemoteError("not_member", "this node is not a member of any colony")
        owner = roster.owner
        if owner not in self.transport.peers():
            addrs = [a for a in self.membership.addrs.get(owner, ()) if "/p2p/" in a]
            for addr in addrs[:1]:
                try:
                    await self.transport.connect(addr)
                except DialError:
                    pass
        try:
            frames = await self.transport.open(owner, "join")
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
        self.transport.counters["joins_forwarded"] += 1
        return reply[0]

    async def join(self, addr: str, token: str) -> None:
        """Present `token` to the node at `addr`; on success we are a member (persisted)."""
        parse_invite(token)  # fail fast, locally, on a damaged or forged token
        owner = await self.transport.connect(addr)
        try:
            with trio.fail_after(JOIN_S):
                frames = await self.transport.open(owner, "join")
                req = JoinRequest(token, self.settings.name, tuple(self.transport.addrs()))
                await frames.write_batch([req])
                reply = await frames.read_batch()
                await frames.close()
        except RemoteError as exc:
            raise JoinFailed(f"join refused: {exc}") from None
        except (StreamClosed, trio.TooSlowError) as exc:
            raise JoinFailed(f"the node at {addr} did not answer the join ({exc})") from None
        if len(reply) != 1 or not isinstance(reply[0], JoinAccepted):
            raise JoinFailed("the node answered the join with something else")
        accepted = reply[0]
        # A RosterUpdate naming us may have arrived first: then this offer is not newer.
        writes = self.membership.offer(accepted.roster) or []
        if not self.membership.is_member(self.identity.node_id):
            raise JoinFailed("the roster we were sent does not name this node")
        for p in accepted.peers:
            writes += self.membership.learn_addrs(p.node_id, p.addrs)
        self._persist(writes)
        self._was_member = True
        roster = self.membership.roster
        assert roster is not None
        self.settings.colony = roster.colony
        self.settings.owner_peer_id = peer_id_str(roster.owner)
        self.settings.bootstrap = [addr]
        self.datadir.save_settings(self.settings)
        self._roster_changed()
        self._on_connect(owner)
