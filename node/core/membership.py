"""Roster state of one node: load, accept, persist, and the owner's changes (DESIGN.md §3).

Synchronous and free of I/O (part of NodeCore): it returns the writes to persist, which
NodeCore puts in its effects (persisted before anything of the step is sent). Member
and role checks go through an index rebuilt on every roster change: gossip asks
`is_member` for every message and record, and a roster may name thousands of nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from colonynode.core.codec import from_wire, to_wire
from colonynode.core.envelope import Envelope
from colonynode.core.errors import ColonyError, ValidationError
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId, peer_id_str, short_id
from colonynode.core.invite import InviteError, check_invite, parse_invite
from colonynode.core.roster import (
    APPROVED,
    PENDING,
    REJECTED,
    SEQ_LIMIT,
    ColoniesKey,
    Member,
    Roster,
    accept_roster,
    sign_roster,
)
from colonynode.node.core.errors import NotFound, NotOwner, PermissionDenied
from colonynode.node.core.requests import ColoniesKeyChange
from colonynode.storage.api import Store, Write

__all__ = ["Membership", "NotOwner"]

VOTERS_MODE_KEY = "voters"  # the roster setting node/core/voters_auto.py reads

log = logging.getLogger(__name__)
ADDRS_KEPT_MAX = 16  # addresses kept a member

T_MEMBERSHIP = "membership"
T_SPENT = "invites_spent"
T_PEERS = "peers"
K_ROSTER = b"roster"
KNOWN_PEERS_MAX = 4096
_ADDS = {"add_colony": "colony", "add_user": "user", "add_executor": "executor"}
_STATES = {"approve": APPROVED, "reject": REJECTED}


@dataclass
class Membership:
    identity: Identity
    store: Store
    roster: Roster | None = None
    envelope: Envelope | None = None
    addrs: dict[NodeId, tuple[str, ...]] = field(default_factory=dict)
    _members: dict[NodeId, Member] = field(default_factory=dict, repr=False)
    _voters: frozenset[NodeId] = field(default=frozenset(), repr=False)
    _former: dict[NodeId, int] = field(default_factory=dict, repr=False)

    def _set(self, roster: Roster, env: Envelope) -> None:
        self.roster, self.envelope = roster, env
        self._members = {m.node_id: m for m in roster.members}
        self._voters = frozenset(roster.voters)
        self._former = {f.node_id: f.last_seq for f in roster.former}

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
        held = self.roster
        if held is not None and roster.voters_since == 0 and roster.voters == held.voters:
            # a roster from before `voters_since` was kept: a change that leaves the
            # voters alone must not give their set a new version (a needless handover)
            roster = replace(roster, voters_since=held.voter_set_version())
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

    def remove(
        self, name_or_id: str, last_seq: Callable[[NodeId], int]
    ) -> tuple[Member, list[Write]]:
        """Remove a member; `last_seq(id)`: the highest sequence number of its gossip
        records held here (those stay valid: core/roster.py `Former`)."""
        roster = self._require_owner()
        member = roster.find(name_or_id)
        former = roster.without_member(member.node_id, last_seq(member.node_id))
        return member, self._publish(former)

    def author_seq_max(self, nid: NodeId) -> int | None:
        """The highest gossip sequence number `nid` may sign (None: it may sign none)."""
        if nid in self._members:
            return SEQ_LIMIT - 1
        return self._former.get(nid)

    def voter_ids(self, names: Sequence[str]) -> tuple[NodeId, ...]:
        """The members `names` name (NotOwner off the owner's node, an error naming an
        unknown one)."""
        roster = self._require_owner()
        return tuple(roster.find(n).node_id for n in names)

    def set_voters(self, names: list[str]) -> list[Write]:
        """`voters set`: these voters, pinned (auto mode ends: voters_auto.py)."""
        ids = self.voter_ids(names)
        roster = self.roster
        assert roster is not None  # (voter_ids checked it)
        settings = {k: v for k, v in roster.settings.items() if k != VOTERS_MODE_KEY}
        if set(ids) == set(roster.voters) and len(ids) == len(roster.voters):
            if settings == roster.settings:
                raise ValidationError("those are the voters already")
            return self._publish(replace(roster, version=roster.version + 1, settings=settings))
        return self._publish(replace(roster.with_voters(ids), settings=settings))

    def set_voter_ids(self, ids: tuple[NodeId, ...]) -> list[Write]:
        """Auto mode's new voters (node/core/voters_auto.py), its settings kept."""
        roster = self._require_owner()
        if set(ids) == set(roster.voters) and len(ids) == len(roster.voters):
            raise ValidationError("those are the voters already")
        return self._publish(roster.with_voters(ids))

    def set_voters_auto(self, settings: dict[str, Any]) -> list[Write]:
        """`voters auto`: the roster's settings with auto mode's (voters_auto.py)."""
        roster = self._require_owner()
        merged = {**roster.settings, **settings}
        for name in merged.get("never_vote", ()):
            roster.find(name)  # a member's name, or NotFound-like ValidationError
        return self._publish(replace(roster, version=roster.version + 1, settings=merged))

    def change_colonies_key(
        self, req: ColoniesKeyChange, now_unix_s: float
    ) -> tuple[ColoniesKey | None, list[Write]]:
        """The owner's change to the Colonies keys (docs/colonies-api.md): the colony's
        own key by the owner's node, a member's user key by that member (with the
        submitter role) or the colony key, executors by the colony key alone (the
        request's `signer`), as in ColonyOS. Returns the entry as it stands (None:
        removed) and the writes (none: nothing changed)."""
        roster = self._require_owner()
        colony_key = roster.colony_key_id()
        if req.op == "add_colony":
            if req.member != self.identity.node_id:
                raise PermissionDenied("only the owner's node sets the colony's Colonies key")
            if colony_key not in (None, req.key_id):
                raise ValidationError("the colony has a Colonies colony key already")
        elif req.op == "add_user":
            submitter = req.member is not None and roster.has_role(req.member, "submitter")
            if not submitter and (colony_key is None or req.signer != colony_key):
                raise PermissionDenied("a user is added by the colony key or a submitter node")
        elif colony_key is None or req.signer != colony_key:
            raise PermissionDenied("Access denied: only the colony's key manages executors")
        role = _ADDS.get(req.op)
        if role is not None:
            key = ColoniesKey(req.key_id, role, req.name, req.executortype,
                              PENDING if role == "executor" else APPROVED,
                              int(now_unix_s))  # fmt: skip
            return self._add_colonies_key(roster, key)
        found = roster.colonies_executor(req.name)
        if found is None:
            raise NotFound(f"no executor named {req.name!r} in colony {roster.colony}")
        if req.op == "remove":
            return None, self._publish(roster.without_colonies_key(found.key_id))
        state = _STATES.get(req.op)
        if state is None:
            raise ValidationError(f"unknown Colonies key change {req.op!r}")
        if found.state == state:
            return found, []
        changed = replace(found, state=state)
        return changed, self._publish(roster.with_colonies_key(changed))

    def _add_colonies_key(
        self, roster: Roster, key: ColoniesKey
    ) -> tuple[ColoniesKey | None, list[Write]]:
        held = roster.colonies_key(key.key_id)
        if held is not None:
            if (held.role, held.name) == (key.role, key.name):
                return held, []  # the same key asked again: idempotent
            raise ValidationError(f"that key is already the Colonies {held.role} {held.name!r}")
        if key.role == "executor" and roster.colonies_executor(key.name) is not None:
            raise ValidationError(f"an executor named {key.name!r} exists already")
        return key, self._publish(roster.with_colonies_key(key))

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
