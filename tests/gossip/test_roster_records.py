"""Roster updates travel as gossip records: the owner's node publishes the owner-signed
roster envelope as its own record; every node opens and checks it on acceptance."""

from __future__ import annotations

import pytest

from colonynode.core.errors import DecodeError
from colonynode.core.roster import Member, accept_roster, genesis_roster, sign_roster
from colonynode.gossip import ENVELOPE_KIND, envelope_from_body, envelope_to_body
from tests.gossip.harness import Colony


def test_a_roster_update_reaches_every_node_and_verifies_there() -> None:
    colony = Colony(5)
    owner = colony.ids[0]
    v1 = genesis_roster(owner, "lab", "a")
    v2 = v1.with_member(Member(colony.node_id(1), "b", ("executor",)))
    colony.publish(0, envelope_to_body(sign_roster(owner, v2)), kind=ENVELOPE_KIND)
    for i in range(1, 5):
        (event,) = colony.accepted(i)
        assert event.kind == ENVELOPE_KIND and event.author == owner.node_id
        roster = accept_roster(v1, envelope_from_body(event.body))
        assert roster is not None and roster.version == 2


def test_a_malformed_envelope_body_is_refused() -> None:
    for body in ([b"x", "roster", b"", b""], "not a list", [bytes(32), 7, b"", b""]):
        with pytest.raises(DecodeError):
            envelope_from_body(body)
