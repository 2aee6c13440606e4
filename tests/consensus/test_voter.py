"""The voter core (consensus/voter.py) stepped by hand: its one dispatch table covers
every request of the lease protocol, and its invariant assertions (closed is terminal,
epochs never decrease, a lease runs the full Timing rule from now) fire on hand-made
bad transitions, while the planted bugs still get through to the simulator's checkers."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from colonynode.consensus import register as rg
from colonynode.consensus import voter as vt
from colonynode.consensus.claimer import ClaimerCore
from colonynode.consensus.handover import VoterSet
from colonynode.consensus.messages import (
    CODEC,
    LEASE_S_MAX,
    Cancel,
    Claim,
    ClaimItem,
    Close,
    Compact,
    CompactAnswer,
    Expire,
    Handover,
    HandoverRequest,
    Merge,
    Outcome,
    ProcessTerms,
    Push,
    Read,
    Reason,
    RegisterCopy,
    Release,
    Renew,
    Reply,
    State,
    Submit,
    Tag,
    Verdict,
)
from colonynode.consensus.register import Register, Timing
from colonynode.consensus.voter import VoterCore
from colonynode.consensus.voter_invariants import Change
from colonynode.core.ids import NodeId
from colonynode.storage.memory import MemoryStore

ME = NodeId(b"V" * 32)
EXE = NodeId(b"E" * 32)
SUB = NodeId(b"S" * 32)
PID = b"pid-1"
TERMS = ProcessTerms(PID, SUB)
T = Timing(drift=0.001, margin_s=0.05)
LEASE_S = 2.0
NOW_S = 10.0
STEP = Change.STEP
MERGE = Change.MERGE
SETTLE = Change.SETTLE

# one message of every type of the lease protocol (version 1, the version a voter serves)
SAMPLES: dict[type, Any] = {
    Submit: Submit(TERMS, 1),
    Claim: Claim((ClaimItem(PID, 1), ClaimItem(b"pid-2", 1)), LEASE_S, "", 1, 7),
    Renew: Renew((ClaimItem(PID, 1),), 1, 8),
    Close: Close(PID, 1, Outcome.SUCCESS, "out", (), 1),
    Release: Release(PID, 1, 1),
    Expire: Expire(PID, 1, 1),
    Cancel: Cancel(PID, State.CANCELLED, ("why",), 1),
    Read: Read(PID, 9),
    Push: Push(PID, (EXE,)),
    Merge: Merge(RegisterCopy(TERMS, State.SUCCESS, 1, EXE, LEASE_S, 0, "o", ()), 1),
    HandoverRequest: HandoverRequest(2, b""),
    Handover: Handover(2, b"", (), True),
    Compact: Compact(1, (PID,), 5, (b"12345678",)),
    CompactAnswer: CompactAnswer(1, (PID,)),
    Reply: Reply(Tag.READ, ()),
}
REPLIES = (Reply,)  # voter -> claimer: the claimer's to handle


def voter(planted_bug: str = "") -> VoterCore:
    v = VoterCore(
        ME, MemoryStore(), timing=T, voter_set=VoterSet(1, (ME,)), planted_bug=planted_bug
    )
    v.on_tick(0.0)
    v.take_effects()
    return v


def step(v: VoterCore, sender: NodeId, msg: Any, now_s: float = NOW_S) -> list[Any]:
    v.on_message(now_s, sender, msg)
    return [m for _, m in v.take_effects().sends]


def with_register(v: VoterCore, reg: Register) -> Register:
    v.registers[reg.pid] = reg
    return reg


def running(epoch: int = 3, now_s: float = NOW_S) -> Register:
    reg = Register(TERMS, waiting_since_s=0.0, epoch=epoch - 1)
    granted, reason = rg.claim(reg, epoch, EXE, LEASE_S, "", now_s, T)
    assert reason is Reason.OK
    return granted


def closed(epoch: int = 3) -> Register:
    return replace(running(epoch), state=State.SUCCESS, output="out", expiry_s=0.0)


# -- the dispatch table ----------------------------------------------------------------


def test_the_samples_hold_every_message_type_of_the_codec() -> None:
    assert set(SAMPLES) == set(CODEC.message_types())


def test_the_table_covers_every_request_type_of_the_codec_under_its_own_tag() -> None:
    requests = {t for t in CODEC.message_types() if t not in REPLIES}
    assert set(vt._ROUTES) == requests
    for cls, route in vt._ROUTES.items():
        assert route.tag == CODEC.tag_of(SAMPLES[cls]), cls.__name__
        ways = [route.handle, route.transition, route.decide]
        assert sum(w is not None for w in ways) == 1, f"{cls.__name__}: one way to handle it"


def test_a_voter_handles_every_request_and_a_claimer_every_reply() -> None:
    v = voter()
    claimer = ClaimerCore(ME, lambda: (ME,), random.Random(1))
    for cls, msg in SAMPLES.items():
        assert v.handles(msg) is (cls not in REPLIES), cls.__name__
        assert claimer.handles(msg) is (cls in REPLIES), cls.__name__


DECIDED = [cls for cls, route in vt._ROUTES.items() if route.handle is None]


@pytest.mark.parametrize("cls", DECIDED, ids=lambda c: c.__name__)
def test_every_decided_request_is_answered_under_its_tag_one_verdict_per_item(cls: type) -> None:
    v = voter()
    route = vt._ROUTES[cls]
    msg = SAMPLES[cls]
    (reply,) = step(v, SUB if cls in (Submit, Cancel) else EXE, msg)
    assert isinstance(reply, Reply)
    assert reply.request is route.tag and reply.version == 1
    assert [(d.pid, d.epoch) for d in reply.verdicts] == route.items(msg)
    assert reply.nonce == (msg.nonce if route.nonce else 0)
    expected = Reason.OK if cls in (Submit, Read) else Reason.UNKNOWN_PID
    assert {d.reason for d in reply.verdicts} == {expected}


@pytest.mark.parametrize("cls", [c for c in DECIDED if vt._ROUTES[c].versioned])
def test_a_request_for_another_version_is_refused_item_by_item(cls: type) -> None:
    v = voter()
    msg = replace(SAMPLES[cls], version=2)
    (reply,) = step(v, SUB, msg)
    assert reply == Reply(
        vt._ROUTES[cls].tag,
        tuple(Verdict(p, e, Reason.WRONG_VERSION, None) for p, e in vt._ROUTES[cls].items(msg)),
        msg.nonce if vt._ROUTES[cls].nonce else 0,
        2,
    )
    assert v.registers == {}


def test_a_claim_past_the_items_max_is_cut_at_claim_items_max() -> None:
    items = tuple(ClaimItem(bytes([i]), 1) for i in range(vt.CLAIM_ITEMS_MAX + 5))
    (reply,) = step(voter(), EXE, Claim(items, LEASE_S, "", 1, 1))
    assert len(reply.verdicts) == vt.CLAIM_ITEMS_MAX


@pytest.mark.parametrize("lease_s", [0.0, -1.0, LEASE_S_MAX + 1, float("nan"), float("inf")])
def test_a_claim_for_no_lease_or_a_longer_one_than_the_voters_grant_is_refused(
    lease_s: float,
) -> None:
    v = voter()
    step(v, SUB, Submit(TERMS, 1))
    (reply,) = step(v, EXE, Claim((ClaimItem(PID, 1),), lease_s, "", 1, 5))
    assert [d.reason for d in reply.verdicts] == [Reason.NOT_ALLOWED]
    reg = v.register(PID)
    assert reg is not None and reg.state is State.WAITING


def test_a_claim_without_the_executor_role_is_refused_for_every_item() -> None:
    v = VoterCore(ME, MemoryStore(), timing=T, has_role=lambda node, role: role != "executor")
    (reply,) = step(v, EXE, SAMPLES[Claim])
    assert [d.reason for d in reply.verdicts] == [Reason.NOT_ALLOWED, Reason.NOT_ALLOWED]


def test_a_granted_claim_goes_through_the_table_and_is_durable_with_its_reply() -> None:
    v = voter()
    step(v, SUB, Submit(TERMS, 1))
    v.on_message(NOW_S, EXE, Claim((ClaimItem(PID, 1),), LEASE_S, "", 1, 5))
    effects = v.take_effects()
    (reply,) = [m for _, m in effects.sends]
    assert reply.verdicts[0].reason is Reason.OK and reply.nonce == 5
    assert [k for _, k, _ in effects.writes] == [PID]
    reg = v.register(PID)
    assert reg is not None and reg.expiry_s == T.voter_expiry_s(NOW_S, LEASE_S)


# -- closed is terminal ----------------------------------------------------------------


@pytest.mark.parametrize("change", [STEP, MERGE])
def test_a_closed_register_replaced_by_another_result_fires(change: Change) -> None:
    v = voter()
    reg = with_register(v, closed())
    cancelled = replace(reg, state=State.CANCELLED, holder=None, output=None)
    with pytest.raises(AssertionError, match="closed is terminal"):
        v._put(cancelled, NOW_S, change)
    with pytest.raises(AssertionError, match="closed is terminal"):
        v._put(replace(reg, state=State.WAITING, holder=None), NOW_S, change)
    assert v.register(PID) == reg


def test_a_closed_register_rewritten_with_the_same_result_is_allowed() -> None:
    v = voter()
    reg = with_register(v, closed())
    v._put(replace(reg, errors=("noted",)), NOW_S, STEP)  # same commit key
    assert v.register(PID) == replace(reg, errors=("noted",))


def test_a_handover_settles_a_contested_result_to_another_closed_one_never_reopens() -> None:
    v = voter()
    reg = with_register(v, closed(epoch=1))
    v._put(replace(reg, epoch=2), NOW_S, SETTLE)  # the previous set's majority result
    with pytest.raises(AssertionError, match=r"closed is terminal.*reopened"):
        v._put(replace(reg, state=State.WAITING, holder=None), NOW_S, SETTLE)


def test_the_planted_abort_closed_gets_past_the_assertion_to_the_checkers() -> None:
    v = voter(planted_bug="abort_closed")
    reg = with_register(v, closed())
    (reply,) = step(v, SUB, Cancel(PID, State.CANCELLED, ("late",), 1))
    assert reply.verdicts[0].reason is Reason.OK
    assert v.registers[PID].state is State.CANCELLED  # SUCCESS overwritten: the checkers' job
    merged = replace(reg, state=State.FAILED, holder=None)
    with pytest.raises(AssertionError, match="closed is terminal"):
        v._put(merged, NOW_S, MERGE)  # the bug is in the abort, not in merges


# -- epochs never decrease -------------------------------------------------------------


@pytest.mark.parametrize("change", [STEP, MERGE, SETTLE])
def test_a_regressed_epoch_fires(change: Change) -> None:
    v = voter()
    reg = with_register(v, replace(running(epoch=3), state=State.WAITING, holder=None))
    with pytest.raises(AssertionError, match=r"epochs never decrease.*from epoch 3 to 2"):
        v._put(replace(reg, epoch=2), NOW_S, change)
    assert v.register(PID) == reg


def test_a_close_that_regresses_the_epoch_fires() -> None:
    v = voter()
    with_register(v, running(epoch=3))
    with pytest.raises(AssertionError, match="epochs never decrease"):
        v._put(replace(closed(epoch=2), holder=EXE), NOW_S, STEP)


def test_a_merged_closed_result_keeps_the_epoch_it_closed_at() -> None:
    # A committed close at epoch 2 reaches a voter that granted epoch 3 since (docs:
    # Repair): its epoch is part of the result (commit_key), and nothing is granted on a
    # closed register, so the fence retires with the close.
    v = voter()
    with_register(v, replace(running(epoch=3), state=State.WAITING, holder=None))
    incoming = rg.to_copy(closed(epoch=2))
    step(v, ME, Merge(incoming, 1))
    reg = v.register(PID)
    assert reg is not None and (reg.state, reg.epoch) == (State.SUCCESS, 2)


def test_the_planted_ignore_epochs_gets_past_the_assertion_to_the_checkers() -> None:
    v = voter(planted_bug="ignore_epochs")
    with_register(v, running(epoch=3))
    (reply,) = step(v, EXE, Close(PID, 1, Outcome.SUCCESS, "stale", (), 1))
    assert reply.verdicts[0].reason is Reason.OK
    assert v.registers[PID].epoch == 1  # what the checkers must catch
    reg = with_register(v, replace(running(epoch=3), state=State.WAITING, holder=None))
    with pytest.raises(AssertionError, match="epochs never decrease"):
        v._put(replace(reg, epoch=2), NOW_S, MERGE)  # the bug is in the close only


# -- a lease runs the full Timing rule from now ------------------------------------------


def short(reg: Register, now_s: float) -> Register:
    return replace(reg, expiry_s=now_s + reg.lease_s)  # no drift, no margin: too short


def test_a_claim_granted_with_a_short_expiry_fires(monkeypatch: pytest.MonkeyPatch) -> None:
    real = rg.claim

    def bad_claim(reg: Register, *args: Any, **kw: Any) -> tuple[Register, Reason]:
        new, reason = real(reg, *args, **kw)
        return short(new, NOW_S), reason

    monkeypatch.setattr(rg, "claim", bad_claim)
    v = voter()
    step(v, SUB, Submit(TERMS, 1))
    with pytest.raises(AssertionError, match=r"lease runs at least now \+ lease"):
        step(v, EXE, Claim((ClaimItem(PID, 1),), LEASE_S, "", 1, 5))


def test_a_renewal_with_a_short_expiry_fires(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rg, "renew", lambda reg, *a: (short(reg, NOW_S + 1.0), Reason.OK))
    v = voter()
    with_register(v, running(epoch=1, now_s=NOW_S))
    with pytest.raises(AssertionError, match="a renewal of"):
        step(v, EXE, Renew((ClaimItem(PID, 1),), 1, 8), now_s=NOW_S + 1.0)


def test_a_merged_running_lease_with_a_short_expiry_fires() -> None:
    v = voter()
    with pytest.raises(AssertionError, match="a merge of another voter's register of"):
        v._put(short(running(epoch=1, now_s=NOW_S - 1.0), NOW_S - 1.0), NOW_S, MERGE)
    v._put(running(epoch=1, now_s=NOW_S), NOW_S, MERGE)  # a full lease from now: fine


def test_a_refused_transition_that_changes_the_register_fires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rg, "release", lambda reg, *a: (replace(reg, epoch=9), Reason.STALE_EPOCH))
    v = voter()
    with_register(v, running(epoch=1))
    with pytest.raises(AssertionError, match="a refusal changes nothing"):
        step(v, EXE, Release(PID, 1, 1))
