"""Roster state of one node: load, accept, persist, and the owner's changes (DESIGN.md §3).

Synchronous and free of I/O (part of NodeCore): it returns the writes to persist, which
NodeCore puts in its effects (persisted before anything of the step is sent). Member
and role checks go through an index rebuilt on every roster change: gossip asks
`is_member` for every message and record, and a roster may name thousands of nodes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from colonynode.core.codec import from_wire, to_wire
from colonynode.core.envelope import Envelope
from colonynode.core.errors import ColonyError, ValidationError
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId, peer_id_str, short_id
from colonynode.core.invite import InviteError, check_invite, parse_invite
from colonynode.core.roster import Member, Roster, accept_roster, sign_roster
from colonynode.node.core.errors import NotOwner
from colonynode.storage.api import Store, Write

__all__ = ["Membership", "NotOwner"]

log = logging.getLogger(__name__)
ADDRS_KEPT_MAX = 16  # addresses kept a member

T_MEMBERSHIP = "membership"
T_SPENT = "invites_spent"
T_PEERS = "peers"
K_ROSTER = b"roster"
KNOWN_PEERS_MAX = 4096


@dataclass
class Membership:
    identity: Identity
    store: Store
    roster: Roster | None = None
    envelope: Envelope | None = None
    addrs: dict[NodeId, tuple[str, ...]] = field(default_factory=dict)
    _members: dict[NodeId, Member] = field(default_factory=dict, repr=False)
    _voters: frozenset[NodeId] = field(default=frozenset(), repr=False)

    def _set(self, roster: Roster, env: Envelope) -> None:
        self.roster, self.envelope = roster, env
        self._members = {m.node_id: m for m in roster.members}
        self._voters = frozenset(roster.voters)

    @classmethod
    def load(cls, identity: Identity, store: Store) -> Membership:
        m = cls(identity, store)
        raw = store.get(T_MEMBERSHIP, K_ROSTER)
        if raw is not None:
            env = from_wire(Envelope, raw)
            roster = accept_roster(None, env)
            assert roster is not None
            m._set(roster, env)
        for key, value in store.scan(T_PEERS, limit=KNOWN_PEERS_MAX):
            m.addrs[NodeId(key)] = tuple(value["addrs"])
        return m

    @property
    def is_owner(self) -> bool:
        return self.roster is not None and self.roster.owner == self.identity.node_id

    def is_member(self, nid: NodeId) -> bool:
        return nid in self._members

    def member(self, nid: NodeId) -> Member | None:
        return self._members.get(nid)

    def has_role(self, nid: NodeId, role: str) -> bool:
        """The roster's role check; `owner` and `voter` are roles too."""
        if role == "voter":
            return nid in self._voters
        if role == "owner":
            return self.roster is not None and self.roster.owner == nid
        m = self._members.get(nid)
        return m is not None and role in m.roles

    # -- receiving ----------------------------------------------------------------------

    def offer(self, env: Envelope) -> list[Write] | None:
        """Take `env` if it is a newer valid roster; the writes to persist, else None."""
        try:
            roster = accept_roster(self.roster, env)
        except ColonyError as exc:
            log.info("ignored roster from %s: %s", short_id(env.author), exc)
            return None
        if roster is None:
            return None
        self._set(roster, env)
        log.info("roster v%d: %d members", roster.version, len(roster.members))
        return [(T_MEMBERSHIP, K_ROSTER, to_wire(env))]

    def learn_addrs(self, nid: NodeId, addrs: tuple[str, ...], *, own: bool = True) -> list[Write]:
        """A member's addresses: its `own` word (its Hello, its join) replaces what we
        knew; a hint or a DHT record (either may be stale) goes first and keeps what we
        knew after it, up to ADDRS_KEPT_MAX, so both are dialled."""
        if not own:
            old = self.addrs.get(nid, ())
            addrs = (*addrs, *(a for a in old if a not in addrs))[:ADDRS_KEPT_MAX]
        if nid == self.identity.node_id or not addrs or self.addrs.get(nid) == addrs:
            return []
        if nid not in self.addrs and len(self.addrs) >= KNOWN_PEERS_MAX:
            return []
        self.addrs[nid] = addrs
        return [(T_PEERS, bytes(nid), {"addrs": list(addrs)})]

    # -- the owner's changes ------------------------------------------------------------

    def _require_owner(self) -> Roster:
        if self.roster is None or not self.is_owner:
            raise NotOwner("only the colony owner's node can change the roster")
        return self.roster

    def _publish(self, roster: Roster) -> list[Write]:
        env = sign_roster(self.identity, roster)
        self._set(roster, env)
        log.info("published roster v%d: %d members", roster.version, len(roster.members))
        return [(T_MEMBERSHIP, K_ROSTER, to_wire(env))]

    def admit(
        self, joiner: NodeId, token: str, name: str, now_unix_s: float
    ) -> tuple[Member, list[Write]]:
        """Check an invite presented by `joiner` and add it; the writes to persist."""
        roster = self._require_owner()
        invite, _ = parse_invite(token)
        check_invite(invite, colony=roster.colony, owner=roster.owner, now_unix_s=now_unix_s)
        spent = self.store.get(T_SPENT, invite.token_id)
        existing = roster.member(joiner)
        if spent is not None:
            if existing is not None and spent.get("node") == bytes(joiner):
                return existing, []  # the same node asking again: idempotent
            raise InviteError("the invite was already used: ask the owner for a new one")
        if existing is not None:
            raise InviteError(f"this node is already a member, named {existing.name}")
        member = Member(joiner, roster.free_name(name), invite.roles)
        writes = self._publish(roster.with_member(member))
        writes.append((T_SPENT, invite.token_id, {"node": bytes(joiner), "at": int(now_unix_s)}))
        return member, writes

    def remove(self, name_or_id: str) -> tuple[Member, list[Write]]:
        roster = self._require_owner()
        member = roster.find(name_or_id)
        return member, self._publish(roster.without_member(member.node_id))

    def set_voters(self, names: list[str]) -> list[Write]:
        roster = self._require_owner()
        ids = tuple(roster.find(n).node_id for n in names)
        if set(ids) == set(roster.voters) and len(ids) == len(roster.voters):
            raise ValidationError("those are the voters already")
        return self._publish(roster.with_voters(ids))

    def describe(self) -> list[dict[str, Any]]:
        if self.roster is None:
            return []
        return [
            {
                "peer_id": peer_id_str(m.node_id),
                "name": m.name,
                "roles": list(m.roles),
                "voter": m.node_id in self.roster.voters,
                "owner": m.node_id == self.roster.owner,
            }
            for m in self.roster.members
        ]
