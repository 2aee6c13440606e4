"""The colony roster: an owner-signed, versioned member list (DESIGN.md §3).

Highest version wins. Every change is made by the owner's node, which signs version v+1;
every member keeps the highest valid version it has seen and refuses anything not signed
by the owner or not newer than what it holds.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

from colonynode.core.envelope import Envelope, seal
from colonynode.core.errors import ValidationError
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId, peer_id_str, short_id

__all__ = [
    "COLONIES_ROLES",
    "ROLES",
    "ROSTER_DOMAIN",
    "VOTER_COUNTS",
    "ColoniesKey",
    "Former",
    "Member",
    "Roster",
    "accept_roster",
    "genesis_roster",
    "sign_roster",
]

ROSTER_DOMAIN = "roster"
ROLES = ("executor", "reader", "submitter")  # sorted
VOTER_COUNTS = (1, 3, 5)
MEMBERS_MAX = 4096
FORMER_MAX = 1024  # removed members whose records stay valid (the oldest drop off)
PAST_VOTERS_MAX = 64  # voter sets a roster names before its own (certificates of theirs hold)
SEQ_LIMIT = 2**63  # gossip sequence numbers are below this
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
COLONIES_ROLES = ("colony", "executor", "user")  # who a Colonies key is (ColoniesKey)
COLONIES_KEYS_MAX = 1024
COLONIES_ID_RE = re.compile(r"^[0-9a-f]{64}$")
COLONIES_NAME_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
PENDING, APPROVED, REJECTED = 0, 1, 2  # a Colonies executor's state (ColonyOS's numbers)


def check_name(kind: str, name: str) -> str:
    if not NAME_RE.match(name):
        raise ValidationError(
            f"{kind} name {name!r} must be 1-63 letters, digits, '.', '_' or '-' "
            "and start with a letter or digit"
        )
    return name


def check_roles(roles: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ValidationError(f"unknown role {unknown[0]!r}: roles are {', '.join(ROLES)}")
    return tuple(sorted(set(roles)))


@dataclass(frozen=True, slots=True)
class Member:
    node_id: NodeId
    name: str
    roles: tuple[str, ...]

    def __post_init__(self) -> None:
        check_name("member", self.name)
        if self.roles != check_roles(self.roles):
            raise ValidationError(f"roles of {self.name} must be sorted and unique")


@dataclass(frozen=True, slots=True)
class Former:
    """A removed member: the gossip records it signed as a member (sequence numbers up
    to `last_seq`, the highest the owner's node held when it removed it) stay valid,
    so a node that joins or comes back later still learns what it did; anything it
    signs after is refused."""

    node_id: NodeId
    last_seq: int

    def __post_init__(self) -> None:
        if not 0 <= self.last_seq < SEQ_LIMIT:
            raise ValidationError("a former member's last sequence number is out of range")


@dataclass(frozen=True, slots=True)
class ColoniesKey:
    """A ColonyOS identity (a secp256k1 key) that every node's Colonies gateway accepts
    (docs/colonies-api.md): `key_id` is ColonyOS's id of the key (SHA3-256 hex of its
    uncompressed public key's hex). Role `colony`: the colony's own key (its owner's),
    `user`: a submitter, `executor`: added by the colony key, and served only once
    approved (`state`, ColonyOS's PENDING 0, APPROVED 1, REJECTED 2)."""

    key_id: str
    role: str
    name: str
    executortype: str = ""
    state: int = APPROVED
    added_unix_s: int = 0

    def __post_init__(self) -> None:
        if not COLONIES_ID_RE.match(self.key_id):
            raise ValidationError("a Colonies key id is 64 lowercase hex digits")
        if self.role not in COLONIES_ROLES:
            raise ValidationError(f"unknown Colonies role {self.role!r}")
        if not COLONIES_NAME_RE.match(self.name):
            raise ValidationError("a Colonies name is 1-128 characters, no control ones")
        if len(self.executortype) > 128:
            raise ValidationError("an executor type is at most 128 characters")
        if self.state not in (PENDING, APPROVED, REJECTED):
            raise ValidationError(f"unknown executor state {self.state}")


@dataclass(frozen=True, slots=True)
class Roster:
    colony: str
    owner: NodeId
    version: int
    members: tuple[Member, ...]
    voters: tuple[NodeId, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    # the version that set `voters` (0 in rosters signed before it was kept: then this
    # version). The lease core's voter-set version: a joiner must use the same number
    # the voters serve, whatever roster it sees first.
    voters_since: int = 0
    # the ColonyOS identities the colony's gateways accept (appended: a roster signed
    # before it decodes with none)
    colonies: tuple[ColoniesKey, ...] = ()
    # removed members, oldest first (appended: a roster signed before decodes with none)
    former: tuple[Former, ...] = ()
    # the voter sets before this one, oldest first, each (the version that set it, its
    # voters): whose signatures a result's certificate may carry (node/core/certs.py)
    past_voters: tuple[tuple[int, tuple[NodeId, ...]], ...] = ()

    def __post_init__(self) -> None:
        check_name("colony", self.colony)
        self._check_colonies()
        self._check_former()
        if self.version < 1:
            raise ValidationError("roster versions start at 1")
        if not 0 <= self.voters_since <= self.version:
            raise ValidationError("voters_since is not a version up to this one")
        if len(self.members) > MEMBERS_MAX:
            raise ValidationError(f"more than {MEMBERS_MAX} members")
        ids = [m.node_id for m in self.members]
        names = [m.name for m in self.members]
        if len(set(ids)) != len(ids):
            raise ValidationError("a node is listed twice")
        if len(set(names)) != len(names):
            raise ValidationError("two members share a name")
        if self.owner not in ids:
            raise ValidationError("the owner must be a member")
        if len(self.past_voters) > PAST_VOTERS_MAX or any(
                len(v) not in VOTER_COUNTS for _, v in self.past_voters):  # fmt: skip
            raise ValidationError(f"at most {PAST_VOTERS_MAX} past voter sets of 1, 3 or 5")
        if len(self.voters) not in VOTER_COUNTS:
            raise ValidationError(f"a colony has 1, 3 or 5 voters, not {len(self.voters)}")
        if len(set(self.voters)) != len(self.voters):
            raise ValidationError("a voter is listed twice")
        for v in self.voters:
            if v not in ids:
                raise ValidationError(f"voter {short_id(v)} is not a member")

    def _check_colonies(self) -> None:
        keys = self.colonies
        if len(keys) > COLONIES_KEYS_MAX:
            raise ValidationError(f"more than {COLONIES_KEYS_MAX} Colonies keys")
        if len({k.key_id for k in keys}) != len(keys):
            raise ValidationError("a Colonies key is listed twice")
        executors = [k.name for k in keys if k.role == "executor"]
        if len(set(executors)) != len(executors):
            raise ValidationError("two Colonies executors share a name")
        if sum(1 for k in keys if k.role == "colony") > 1:
            raise ValidationError("a colony has one Colonies colony key")

    def _check_former(self) -> None:
        if len(self.former) > FORMER_MAX:
            raise ValidationError(f"more than {FORMER_MAX} former members")
        gone = {f.node_id for f in self.former}
        if len(gone) != len(self.former):
            raise ValidationError("a former member is listed twice")
        if any(m.node_id in gone for m in self.members):
            raise ValidationError("a member is also listed as a former member")

    # -- reads ---------------------------------------------------------------------------

    def colonies_key(self, key_id: str) -> ColoniesKey | None:
        for k in self.colonies:
            if k.key_id == key_id:
                return k
        return None

    def colonies_executor(self, name: str) -> ColoniesKey | None:
        for k in self.colonies:
            if k.role == "executor" and k.name == name:
                return k
        return None

    def colony_key_id(self) -> str | None:
        for k in self.colonies:
            if k.role == "colony":
                return k.key_id
        return None

    def member(self, nid: NodeId) -> Member | None:
        for m in self.members:
            if m.node_id == nid:
                return m
        return None

    def is_member(self, nid: NodeId) -> bool:
        return self.member(nid) is not None

    def has_role(self, nid: NodeId, role: str) -> bool:
        if role == "voter":
            return nid in self.voters
        m = self.member(nid)
        return m is not None and role in m.roles

    def find(self, name_or_id: str) -> Member:
        """A member by name, peer id, or a unique tail of its peer id."""
        by_name = [m for m in self.members if m.name == name_or_id]
        if by_name:
            return by_name[0]
        tail = [m for m in self.members if peer_id_str(m.node_id).endswith(name_or_id)]
        if len(tail) == 1:
            return tail[0]
        if len(tail) > 1:
            raise ValidationError(f"{name_or_id!r} names more than one member")
        raise ValidationError(f"no member named {name_or_id!r} in colony {self.colony}")

    def voter_set_version(self) -> int:
        """The version of the voter set this roster names (see `voters_since`)."""
        return self.voters_since or self.version

    def majority(self) -> int:
        return len(self.voters) // 2 + 1

    # -- changes (the owner's node signs the result) -----------------------------------

    def with_member(self, member: Member) -> Roster:
        if self.is_member(member.node_id):
            raise ValidationError(f"{short_id(member.node_id)} is already a member")
        if any(m.name == member.name for m in self.members):
            raise ValidationError(f"a member is already named {member.name!r}")
        former = tuple(f for f in self.former if f.node_id != member.node_id)  # back again
        return replace(self, version=self.version + 1, members=(*self.members, member),
                       former=former)  # fmt: skip

    def without_member(self, nid: NodeId, last_seq: int = 0) -> Roster:
        """`nid` removed; its records up to `last_seq` stay valid (`Former`)."""
        m = self.member(nid)
        if m is None:
            raise ValidationError(f"{short_id(nid)} is not a member")
        if nid == self.owner:
            raise ValidationError("the owner cannot be removed from its colony")
        if nid in self.voters:
            raise ValidationError(
                f"{m.name} is a voter: choose other voters first (colonynode voters set ...)"
            )
        members = tuple(x for x in self.members if x.node_id != nid)
        former = (*self.former, Former(nid, last_seq))[-FORMER_MAX:]
        return replace(self, version=self.version + 1, members=members, former=former)

    def with_voters(self, voters: tuple[NodeId, ...]) -> Roster:
        past = (*self.past_voters, (self.voters_since or self.version, self.voters))
        return replace(self, version=self.version + 1, voters=voters,
                       voters_since=self.version + 1,
                       past_voters=past[-PAST_VOTERS_MAX:])  # fmt: skip

    def voter_sets(self) -> list[tuple[NodeId, ...]]:
        """This roster's voter set and the ones before it that it names, newest first."""
        return [self.voters, *(voters for _, voters in reversed(self.past_voters))]

    def with_colonies_key(self, key: ColoniesKey) -> Roster:
        """`key` added, or in place of the entry with its id."""
        keys = [k for k in self.colonies if k.key_id != key.key_id]
        return replace(self, version=self.version + 1, colonies=(*keys, key))

    def without_colonies_key(self, key_id: str) -> Roster:
        keys = tuple(k for k in self.colonies if k.key_id != key_id)
        return replace(self, version=self.version + 1, colonies=keys)

    def free_name(self, wanted: str) -> str:
        """`wanted`, or `wanted-2`, `wanted-3`, ... if a member already has it."""
        taken = {m.name for m in self.members}
        name, n = wanted, 1
        while name in taken:
            n += 1
            name = f"{wanted[:56]}-{n}"
        return name


def genesis_roster(
    owner: Identity, colony: str, name: str, settings: dict[str, Any] | None = None
) -> Roster:
    """Version 1: the owner alone, with every role, as the only voter."""
    return Roster(
        colony=colony,
        owner=owner.node_id,
        version=1,
        members=(Member(owner.node_id, name, ROLES),),
        voters=(owner.node_id,),
        settings=dict(settings or {}),
        voters_since=1,
    )


def sign_roster(owner: Identity, roster: Roster) -> Envelope:
    if owner.node_id != roster.owner:
        raise ValidationError("only the colony owner signs its roster")
    return seal(owner, ROSTER_DOMAIN, roster)


_OPENED: OrderedDict[tuple[bytes, str, bytes, bytes], Roster] = OrderedDict()
OPENED_MAX = 64  # verified rosters remembered by their exact signed bytes


def open_roster(envelope: Envelope) -> Roster:
    """Verify and decode a roster envelope. A roster is opened again on every Hello a
    node gets, and a colony's roster may name thousands of members: what was verified
    once is remembered by its exact signed bytes (a pure function of them)."""
    key = (bytes(envelope.author), envelope.domain, envelope.payload, envelope.signature)
    roster = _OPENED.get(key)
    if roster is None:
        roster = envelope.open(ROSTER_DOMAIN, Roster)
        _OPENED[key] = roster
        if len(_OPENED) > OPENED_MAX:
            _OPENED.popitem(last=False)
    return roster


def accept_roster(held: Roster | None, envelope: Envelope) -> Roster | None:
    """The roster in `envelope` if it should replace `held`, else None.

    Refused (SignatureError, DecodeError, ValidationError): not signed by the owner it
    names, or for another colony/owner than `held`. Ignored (None): not newer.
    """
    roster = open_roster(envelope)
    if envelope.author != roster.owner:
        raise ValidationError("roster not signed by its colony's owner")
    if held is not None:
        if (roster.colony, roster.owner) != (held.colony, held.owner):
            raise ValidationError(f"roster of another colony ({roster.colony})")
        if roster.version <= held.version:
            return None
    return roster
