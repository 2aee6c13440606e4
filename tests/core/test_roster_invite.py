"""The roster and invite rules of DESIGN.md §3."""

from __future__ import annotations

from dataclasses import replace

import pytest

from colonynode.core.envelope import seal
from colonynode.core.errors import SignatureError, ValidationError
from colonynode.core.identity import Identity
from colonynode.core.invite import InviteError, check_invite, issue_invite, parse_invite
from colonynode.core.roster import (
    ROSTER_DOMAIN,
    Member,
    accept_roster,
    genesis_roster,
    sign_roster,
)

OWNER = Identity(b"\x01" * 32)
B, C, D, E = (Identity(bytes([i]) * 32) for i in range(2, 6))
NOW = 1_800_000_000.0


def three_voters():
    r = genesis_roster(OWNER, "lab", "a")
    for ident, name in ((B, "b"), (C, "c")):
        r = r.with_member(Member(ident.node_id, name, ("executor",)))
    return r.with_voters((OWNER.node_id, B.node_id, C.node_id))


def test_genesis_has_the_owner_as_sole_voter_with_every_role() -> None:
    r = genesis_roster(OWNER, "lab", "a")
    assert r.version == 1 and r.voters == (OWNER.node_id,)
    assert r.has_role(OWNER.node_id, "voter") and r.has_role(OWNER.node_id, "submitter")
    assert r.majority() == 1


def test_changes_bump_the_version_and_keep_rules() -> None:
    r = three_voters()
    assert r.version == 4 and r.majority() == 2
    assert r.has_role(B.node_id, "executor") and not r.has_role(B.node_id, "submitter")
    with pytest.raises(ValidationError, match="is a voter"):
        r.without_member(B.node_id)
    with pytest.raises(ValidationError, match="owner cannot be removed"):
        r.without_member(OWNER.node_id)
    with pytest.raises(ValidationError, match="1, 3 or 5 voters"):
        r.with_voters((OWNER.node_id, B.node_id))
    with pytest.raises(ValidationError, match="not a member"):
        r.with_voters((OWNER.node_id, B.node_id, D.node_id))
    with pytest.raises(ValidationError, match="already named"):
        r.with_member(Member(D.node_id, "b", ()))
    with pytest.raises(ValidationError, match="unknown role"):
        Member(D.node_id, "d", ("admin",))
    r2 = r.with_member(Member(D.node_id, "d", ())).without_member(D.node_id)
    assert not r2.is_member(D.node_id) and r2.version == r.version + 2
    assert r.find("b").node_id == B.node_id
    assert r.find(C.peer_id[-8:]).node_id == C.node_id
    assert r.free_name("b") == "b-2"


def test_a_roster_names_the_version_that_set_its_voters() -> None:
    """Every node addresses the voter set by that version, whichever roster it saw
    first (a joiner sees one that adds it, after the voters were set)."""
    r = genesis_roster(OWNER, "lab", "a")
    assert r.voter_set_version() == 1
    r = r.with_member(Member(B.node_id, "b", ("executor",)))
    assert r.version == 2 and r.voter_set_version() == 1
    r = three_voters()
    assert r.version == 4 and r.voter_set_version() == 4
    r = r.with_member(Member(D.node_id, "d", ())).without_member(D.node_id)
    assert r.version == 6 and r.voter_set_version() == 4
    assert replace(r, voters_since=0).voter_set_version() == 6  # signed before it was kept
    with pytest.raises(ValidationError, match="voters_since"):
        replace(r, voters_since=7)


def test_accept_only_newer_rosters_signed_by_the_owner() -> None:
    r1 = genesis_roster(OWNER, "lab", "a")
    r2 = r1.with_member(Member(B.node_id, "b", ("executor",)))
    assert accept_roster(None, sign_roster(OWNER, r1)) == r1
    assert accept_roster(r1, sign_roster(OWNER, r2)) == r2
    assert accept_roster(r2, sign_roster(OWNER, r1)) is None  # older: ignored
    assert accept_roster(r2, sign_roster(OWNER, r2)) is None  # same: ignored
    # Signed by a member, not the owner.
    with pytest.raises(ValidationError, match="not signed by its colony's owner"):
        accept_roster(r1, seal(B, ROSTER_DOMAIN, replace(r2, version=9)))
    # Tampered payload.
    env = sign_roster(OWNER, r2)
    with pytest.raises(SignatureError):
        accept_roster(r1, replace(env, payload=sign_roster(OWNER, replace(r2, version=7)).payload))
    # Another colony's owner.
    other = genesis_roster(B, "lab", "b")
    with pytest.raises(ValidationError, match="another colony"):
        accept_roster(r1, sign_roster(B, replace(other, version=5)))
    with pytest.raises(ValidationError, match="only the colony owner"):
        sign_roster(B, r1)


def _token(**kw: object) -> str:
    args = dict(token_id=b"\x09" * 16, now_unix_s=NOW, ttl_s=3600.0)
    args.update(kw)
    return issue_invite(OWNER, "lab", ("executor", "submitter"), **args)  # type: ignore[arg-type]


def test_a_good_invite_parses_and_checks() -> None:
    invite, _ = parse_invite(_token())
    assert invite.roles == ("executor", "submitter") and invite.colony == "lab"
    check_invite(invite, colony="lab", owner=OWNER.node_id, now_unix_s=NOW + 10)


def test_expired_invite_is_refused() -> None:
    invite, _ = parse_invite(_token(ttl_s=60.0))
    with pytest.raises(InviteError, match="expired"):
        check_invite(invite, colony="lab", owner=OWNER.node_id, now_unix_s=NOW + 61)


def test_other_colony_invite_is_refused() -> None:
    invite, _ = parse_invite(
        issue_invite(B, "lab", (), token_id=b"\1" * 16, now_unix_s=NOW, ttl_s=9)
    )
    with pytest.raises(InviteError, match="for colony"):
        check_invite(invite, colony="lab", owner=OWNER.node_id, now_unix_s=NOW)


def test_forged_or_damaged_invites_are_refused() -> None:
    token = _token()
    with pytest.raises(InviteError, match=r"start with 'cn1\.'"):
        parse_invite("hello")
    with pytest.raises(InviteError, match="damaged"):
        parse_invite(token[:-10])
    # Flip a byte inside the signed payload: the signature no longer matches.
    import base64

    from colonynode.core.codec import decode, encode

    raw = base64.urlsafe_b64decode(token[4:] + "=" * (-len(token[4:]) % 4))
    wire = decode(raw)
    wire[2] = wire[2][:-1] + bytes([wire[2][-1] ^ 1])
    forged = "cn1." + base64.urlsafe_b64encode(encode(wire)).decode()
    with pytest.raises(InviteError, match=r"forged|damaged"):
        parse_invite(forged)


def test_invite_signed_by_someone_else_in_the_owners_name_is_forged() -> None:
    import base64

    from colonynode.core.codec import decode, encode

    token = issue_invite(B, "lab", (), token_id=b"\1" * 16, now_unix_s=NOW, ttl_s=9)
    raw = base64.urlsafe_b64decode(token[4:] + "=" * (-len(token[4:]) % 4))
    wire = decode(raw)
    payload = decode(wire[2])
    payload[1] = OWNER.node_id  # claim the owner's colony...
    wire[2] = encode(payload)
    wire[0] = OWNER.node_id  # ...and the owner's authorship, with B's signature
    forged = "cn1." + base64.urlsafe_b64encode(encode(wire)).decode()
    with pytest.raises(InviteError, match="forged"):
        parse_invite(forged)
