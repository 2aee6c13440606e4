"""The roster's Colonies keys (issue 16): who may add and approve which ColonyOS
identity, decided by the owner's NodeCore and carried to every member in the roster."""

from __future__ import annotations

import pytest

from colonynode.core.codec import from_wire, to_wire
from colonynode.core.errors import ValidationError
from colonynode.core.roster import APPROVED, PENDING, REJECTED, ColoniesKey, Roster
from colonynode.node.core import NotFound, NotOwner, PermissionDenied
from colonynode.node.core import requests as rq
from tests.node.colony import Colony

COLONY, USER, EXEC, OTHER = ("c" * 64, "a" * 64, "e" * 64, "f" * 64)


def change(op: str, key_id: str = "", name: str = "", **kw: object) -> rq.ColoniesKeyChange:
    return rq.ColoniesKeyChange(op, key_id, name, **kw)  # type: ignore[arg-type]


def with_colony_key(colony: Colony) -> None:
    owner = colony.identities[0].node_id
    colony.result(0, change("add_colony", COLONY, "lab", member=owner))


def key_on(colony: Colony, node: int, key_id: str) -> ColoniesKey | None:
    roster = colony.core(node).membership.roster
    assert roster is not None
    return roster.colonies_key(key_id)


def test_the_colony_key_adds_and_approves_an_executor_and_every_member_holds_it() -> None:
    colony = Colony(4)
    with_colony_key(colony)
    got = colony.result(0, change("add_executor", EXEC, "ex", executortype="py", signer=COLONY))
    assert got["key"].state == PENDING and got["key"].executortype == "py"
    colony.result(0, change("approve", name="ex", signer=COLONY))
    colony.run_until(lambda: all(key_on(colony, i, EXEC) is not None for i in range(4)))
    for i in range(4):
        key = key_on(colony, i, EXEC)
        assert key is not None and (key.role, key.name, key.state) == ("executor", "ex", APPROVED)
    colony.result(0, change("reject", name="ex", signer=COLONY))
    colony.run_until(lambda: all(key_on(colony, i, EXEC).state == REJECTED for i in range(4)))  # type: ignore[union-attr]
    colony.result(0, change("remove", name="ex", signer=COLONY))
    colony.run_until(lambda: all(key_on(colony, i, EXEC) is None for i in range(4)))


def test_only_the_colony_key_manages_executors_and_only_the_owner_s_node_signs() -> None:
    colony = Colony(4)
    with pytest.raises(PermissionDenied):  # no colony key in the roster yet: nobody may
        colony.result(0, change("add_executor", EXEC, "ex", signer=OTHER))
    with_colony_key(colony)
    with pytest.raises(PermissionDenied):  # another key's signature
        colony.result(0, change("add_executor", EXEC, "ex", signer=OTHER))
    with pytest.raises(NotOwner):  # a member that is not the owner changes nothing
        colony.result(1, change("add_executor", EXEC, "ex", signer=COLONY))
    with pytest.raises(PermissionDenied):  # the colony key is set by the owner's node only
        colony.result(0, change("add_colony", OTHER, "lab", member=colony.identities[1].node_id))
    with pytest.raises(NotFound):
        colony.result(0, change("approve", name="nobody", signer=COLONY))
    roster = colony.core(0).membership.roster
    assert roster is not None and [k.role for k in roster.colonies] == ["colony"]


def test_a_submitter_node_adds_its_user_key_and_a_name_is_one_executor_s() -> None:
    colony = Colony(4)  # nodes 0-2 submit; 3 executes and submits too (tests/node/colony)
    with_colony_key(colony)
    member = colony.identities[1].node_id
    got = colony.result(0, change("add_user", USER, "n1-user", member=member))
    assert got["key"].role == "user" and got["key"].state == APPROVED
    again = colony.result(0, change("add_user", USER, "n1-user", member=member))
    assert again["roster_version"] == got["roster_version"]  # the same ask: no new roster
    with pytest.raises(ValidationError):  # one key, one identity
        colony.result(0, change("add_executor", USER, "ex", signer=COLONY))
    colony.result(0, change("add_executor", EXEC, "ex", signer=COLONY))
    with pytest.raises(ValidationError):  # executor names are unique in the colony
        colony.result(0, change("add_executor", OTHER, "ex", signer=COLONY))


def test_a_roster_with_colonies_keys_survives_the_wire_and_refuses_duplicates() -> None:
    colony = Colony(3)
    with_colony_key(colony)
    roster = colony.core(0).membership.roster
    assert roster is not None
    assert from_wire(Roster, to_wire(roster)) == roster
    older = to_wire(roster)[:-3]  # signed before the field (and `former`, `past_voters`)
    assert from_wire(Roster, older).colonies == ()
    key = ColoniesKey(EXEC, "executor", "ex")
    with pytest.raises(ValidationError):
        roster.with_colonies_key(key).with_colonies_key(ColoniesKey(OTHER, "executor", "ex"))
    with pytest.raises(ValidationError):
        ColoniesKey("not-hex", "user", "u")
    with pytest.raises(ValidationError):
        ColoniesKey(USER, "admin", "u")


def test_a_running_step_adds_a_child_that_waits_for_it_and_takes_its_output() -> None:
    """ColonyOS's addchild (the Colonies gateway's addchildmsg): a new step of the
    running process's graph, run after it with its output as input."""
    from tests.node.colony import spec
    from tests.node.test_nodecore import attach

    colony = Colony(5)
    graph = colony.result(0, rq.SubmitWorkflow((spec(nodename="p"),)))
    parent = bytes.fromhex(graph["processes"][0]["processid"])
    gid = bytes.fromhex(graph["processgraphid"])
    executor = attach(colony, 3)
    with pytest.raises(ValidationError):  # not running yet
        colony.result(3, rq.AddChild(gid, parent, spec(nodename="c", args=[1])))
    assert colony.result(3, rq.Assign(executor, timeout_s=5))["processid"] == parent.hex()
    child = colony.result(3, rq.AddChild(gid, parent, spec(nodename="c", args=[1])))
    assert child["parents"] == [parent.hex()] and child["processgraphid"] == gid.hex()
    idle = attach(colony, 4, "idle")
    assert colony.result(4, rq.Assign(idle, timeout_s=2)) is None  # it waits for its parent
    colony.result(3, rq.CloseRun(executor, parent, True, [41]))
    got = colony.result(4, rq.Assign(idle, timeout_s=5))
    assert got["processid"] == child["processid"] and got["input"] == [41]
    with pytest.raises(ValidationError):  # another graph's process is no parent here
        colony.result(4, rq.AddChild(b"\x01" * 16, bytes.fromhex(got["processid"]), spec()))
