"""NodeCore's answers to requests about the colony's members and roster: invites,
removals, voters, joins, the Colonies keys and LAN hints (service.py's table calls
them; Membership decides, node/core/membership.py)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from colonynode.core.errors import ColonyError, ValidationError
from colonynode.core.ids import peer_id_str, short_id
from colonynode.core.invite import issue_invite
from colonynode.node.core import requests as rq
from colonynode.node.core.errors import JoinFailed, PermissionDenied
from colonynode.node.core.messages import JoinAccepted, PeerAddrs
from colonynode.node.core.voters_auto import (
    AUTO,
    GRACE_KEY,
    GRACE_S_MAX,
    GRACE_S_MIN,
    MODE_KEY,
    NEVER_KEY,
    settings_of,
    when_served,
)

if TYPE_CHECKING:
    from colonynode.node.core.nodecore import NodeCore

log = logging.getLogger("colonynode.node")

LAN_ADDRS_MAX = 8  # addresses taken from one LAN advert


def create_invite(core: NodeCore, rid: int, req: rq.CreateInvite) -> None:
    roster = core.membership.roster
    if roster is None or not core.membership.is_owner:
        raise PermissionDenied("only the colony owner's node issues invites")
    token = issue_invite(
        core.identity,
        roster.colony,
        req.roles,
        token_id=core.rng.randbytes(16),
        now_unix_s=core.unix_ns() / 1e9,
        ttl_s=req.ttl_s,
    )
    core.answer(rid, token)


def remove_member(core: NodeCore, rid: int, req: rq.RemoveMember) -> None:
    member, writes = core.membership.remove(req.member, core.gossip.highest_seq)
    core.links.publish_change(writes)
    roster = core.membership.roster
    assert roster is not None
    core.answer(rid, {"removed": member.name, "roster_version": roster.version})


def set_voters(core: NodeCore, rid: int, req: rq.SetVoters) -> None:
    """`voters set`: once a majority of the current voters serves their set (a change
    on top of an unfinished handover could lose what that set committed), up to
    SERVED_WAIT_S; a bad name or a non-owner is refused at once."""
    core.membership.voter_ids(req.names)  # refused at once, without waiting

    def go() -> None:
        try:
            writes = core.membership.set_voters(list(req.names))
        except ColonyError as exc:
            core.answer(rid, error=exc)
            return
        core.links.publish_change(writes)
        now = core.membership.roster
        assert now is not None
        core.answer(rid, {"voters": list(req.names), "roster_version": now.version})

    def timed_out() -> None:
        core.answer(rid, error=ColonyError(
            "the last voter change is not yet served by a majority of its voters (its "
            "handover waits for them): bring them up, then try again"))  # fmt: skip

    when_served(core, go, timed_out)


def auto_voters(core: NodeCore, rid: int, req: rq.AutoVoters) -> None:
    settings: dict[str, Any] = {MODE_KEY: AUTO}
    if req.never is not None:
        settings[NEVER_KEY] = sorted(set(req.never))
    if req.grace_s is not None:
        if not GRACE_S_MIN <= req.grace_s <= GRACE_S_MAX:
            raise ValidationError(f"grace_s is {GRACE_S_MIN:g}..{GRACE_S_MAX:g} seconds")
        settings[GRACE_KEY] = float(req.grace_s)
    writes = core.membership.set_voters_auto(settings)
    core.links.publish_change(writes)
    roster = core.membership.roster
    assert roster is not None
    _, never, grace_s = settings_of(roster)
    core.answer(rid, {"voters": AUTO, "never_vote": sorted(never), "grace_s": grace_s,
                      "roster_version": roster.version})  # fmt: skip


def colonies_key_change(core: NodeCore, rid: int, req: rq.ColoniesKeyChange) -> None:
    entry, writes = core.membership.change_colonies_key(req, core.unix_ns() / 1e9)
    if writes:
        core.links.publish_change(writes)
    roster = core.membership.roster
    assert roster is not None
    core.answer(rid, {"key": entry, "roster_version": roster.version})


def lan_peer(core: NodeCore, rid: int, req: rq.LanPeer) -> None:
    m = core.membership
    suffix = f"/p2p/{peer_id_str(req.node)}"
    addrs = tuple(a for a in req.addrs[:LAN_ADDRS_MAX] if a.endswith(suffix))
    if req.node == core.node_id or not m.is_member(req.node) or not addrs:
        core.answer(rid, False)
        return
    core.write(m.learn_addrs(req.node, addrs, own=False))
    core.links.dial_soon(core.now_s)
    core.answer(rid, True)


def offer_roster(core: NodeCore, rid: int, req: rq.OfferRoster) -> None:
    core.answer(rid, core.links.take_roster(req.roster, via=None))


def admit(core: NodeCore, rid: int, req: rq.Admit) -> None:
    """The owner's node: check the invite, add the joiner, persist, then answer."""
    m = core.membership
    try:
        member, writes = m.admit(req.joiner, req.join.invite, req.join.name, core.unix_ns() / 1e9)
    except ColonyError as exc:
        core.counters["joins_refused"] += 1
        log.info("refused join by %s: %s", short_id(req.joiner), exc)
        raise
    writes += m.learn_addrs(req.joiner, tuple(req.join.addrs))
    core.write(writes)  # durable before anyone hears of it
    core.links.roster_changed()
    core.links.gossip_roster()
    core.links.broadcast(skip=req.joiner)
    env = m.envelope
    assert env is not None
    own = PeerAddrs(core.node_id, core.links.addrs)
    log.info("admitted %s as %s (roles %s)", short_id(req.joiner), member.name, member.roles)
    core.answer(rid, JoinAccepted(env, (own,), core.gossip.highest_seq(req.joiner)))


def joined(core: NodeCore, rid: int, req: rq.Joined) -> None:
    """This node's join was accepted: take the roster it brought."""
    m = core.membership
    accepted = req.accepted
    # A RosterUpdate naming us may have arrived first: then this offer is not newer.
    writes = m.offer(accepted.roster) or []
    if not m.is_member(core.node_id):
        raise JoinFailed("the roster we were sent does not name this node")
    for p in accepted.peers:
        writes += m.learn_addrs(p.node_id, tuple(p.addrs))
    core.write(writes)
    core.gossip.resume_after(accepted.seen_seq)  # (its writes go with the gossip effects)
    core.touch("gossip")
    core.links.was_member = True
    core.links.roster_changed()
    core.links.hello_all()  # the peers we connected to before we were a member
    roster = m.roster
    assert roster is not None
    core.answer(rid, roster.colony)
