"""The register transition table (consensus/register.py), rule by rule, and Hypothesis
properties of random request sequences against the rules it must keep."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from colonynode.consensus import register as rg
from colonynode.consensus.messages import Outcome, ProcessTerms, Reason, State
from colonynode.consensus.register import Register, Timing
from colonynode.core.ids import NodeId

T = Timing(drift=0.001, margin_s=0.05)
A = NodeId(b"A" * 32)
B = NodeId(b"B" * 32)
SUB = NodeId(b"S" * 32)
LEASE_S = 2.0


def terms(**kw: object) -> ProcessTerms:
    return ProcessTerms(pid=b"p1", submitter=SUB, **kw)  # type: ignore[arg-type]


def waiting(**kw: object) -> Register:
    reg, reason = rg.submit(None, terms(**kw), 0.0)
    assert reason is Reason.OK
    return reg


def granted(reg: Register, epoch: int, holder: NodeId, now_s: float) -> Register:
    new, reason = rg.claim(reg, epoch, holder, LEASE_S, "", now_s, T)
    assert reason is Reason.OK, reason
    return new


def test_submit_is_idempotent_and_refuses_other_terms_for_a_known_pid() -> None:
    reg = waiting()
    assert rg.submit(reg, terms(), 5.0) == (reg, Reason.OK)
    assert rg.submit(reg, terms(priority=3), 5.0)[1] is Reason.CONFLICT


def test_a_cron_tick_submitted_by_another_member_is_the_same_process_and_changes_nothing() -> None:
    reg = waiting(tick=b"t1", record=b"from S")
    other = ProcessTerms(pid=b"p1", submitter=A, tick=b"t1", record=b"from A")
    assert rg.submit(reg, other, 5.0) == (reg, Reason.OK)
    assert rg.submit(reg, replace(other, tick=b"t2"), 5.0)[1] is Reason.CONFLICT
    assert rg.submit(waiting(), replace(other, tick=b""), 5.0)[1] is Reason.CONFLICT
    # a closed copy from a voter that took the other member's submission repairs this one
    closed = rg.from_record(rg.to_record(replace(granted(waiting(tick=b"t1"), 1, B, 0.0))))
    closed = replace(closed, terms=other, state=State.SUCCESS, output=[1])
    merged, reason = rg.merge(reg, closed, 1.0, T)
    assert reason is Reason.OK and merged.state is State.SUCCESS and merged.output == [1]


def test_a_register_keeps_its_tick_on_disk() -> None:
    reg = waiting(tick=b"t1", record=b"r")
    assert rg.from_record(rg.to_record(reg)).terms == reg.terms
    old = rg.to_record(waiting())
    old["terms"] = old["terms"][:9]  # written before crons
    assert rg.from_record(old).terms.tick == b""


def test_claim_grants_a_waiting_process_with_the_voter_expiry_lengthened_by_drift() -> None:
    reg = granted(waiting(), 1, A, 10.0)
    assert (reg.state, reg.epoch, reg.holder) == (State.RUNNING, 1, A)
    assert reg.expiry_s == 10.0 + LEASE_S * 1.001 + 0.05


def test_claim_needs_an_epoch_above_the_highest_granted() -> None:
    reg = granted(waiting(), 5, A, 0.0)
    reg = rg.release(reg, 5, A, 1.0)[0]
    for epoch in (3, 5):
        assert rg.claim(reg, epoch, B, LEASE_S, "", 1.0, T)[1] is Reason.STALE_EPOCH
    assert rg.claim(reg, 6, B, LEASE_S, "", 1.0, T)[1] is Reason.OK


def test_claim_is_refused_while_another_lease_is_unexpired_here() -> None:
    reg = granted(waiting(maxretries=1), 1, A, 0.0)
    assert rg.claim(reg, 2, B, LEASE_S, "", reg.expiry_s - 1e-6, T)[1] is Reason.LEASE_HELD
    assert rg.claim(reg, 2, B, LEASE_S, "", reg.expiry_s, T)[1] is Reason.OK


def test_a_retransmitted_claim_is_accepted_and_only_extends_the_expiry() -> None:
    reg = granted(waiting(), 1, A, 0.0)
    again, reason = rg.claim(reg, 1, A, LEASE_S, "", 1.0, T)
    assert reason is Reason.OK
    assert again.epoch == 1 and again.retries == 0 and again.expiry_s > reg.expiry_s


def test_the_same_epoch_from_a_new_claim_request_is_stale() -> None:
    """Found by the soak (chaos seed 1361): a restarted claimer asked for the epoch its
    previous incarnation held; taking it as a retransmission let that claimer's release
    of the old grant free the new one."""
    reg, reason = rg.claim(waiting(), 1, A, LEASE_S, "", 0.0, T, nonce=11)
    assert reason is Reason.OK and reg.claim_nonce == 11
    assert rg.claim(reg, 1, A, LEASE_S, "", 0.5, T, nonce=11)[1] is Reason.OK
    assert rg.claim(reg, 1, A, LEASE_S, "", 0.5, T, nonce=12)[1] is Reason.STALE_EPOCH


def test_claim_of_another_executor_type_is_refused() -> None:
    reg = waiting(executortype="gpu")
    assert rg.claim(reg, 1, A, LEASE_S, "cpu", 0.0, T)[1] is Reason.NO_MATCH
    assert rg.claim(reg, 1, A, LEASE_S, "gpu", 0.0, T)[1] is Reason.OK


def test_epoch_fencing_close_needs_the_current_epoch_and_holder() -> None:
    reg = granted(waiting(maxretries=1), 1, A, 0.0)
    reg = granted(reg, 2, B, reg.expiry_s + 1.0)  # A's lease ran out, B re-claimed
    assert rg.close(reg, 1, A, Outcome.SUCCESS, "late", ())[1] is Reason.STALE_EPOCH
    assert rg.close(reg, 2, A, Outcome.SUCCESS, "x", ())[1] is Reason.NOT_HOLDER
    closed, reason = rg.close(reg, 2, B, Outcome.SUCCESS, "out", ())
    assert reason is Reason.OK and closed.state is State.SUCCESS and closed.output == "out"


def test_a_close_after_the_lease_ran_out_here_is_refused() -> None:
    reg = granted(waiting(), 1, A, 0.0)
    late = reg.expiry_s
    assert rg.close(reg, 1, A, Outcome.SUCCESS, "o", (), now_s=late)[1] is Reason.LEASE_EXPIRED
    assert rg.close(reg, 1, A, Outcome.SUCCESS, "o", (), now_s=late - 0.01)[1] is Reason.OK


def test_close_is_terminal_and_a_retransmitted_close_is_accepted() -> None:
    reg = granted(waiting(), 1, A, 0.0)
    closed = rg.close(reg, 1, A, Outcome.SUCCESS, "out", ())[0]
    assert rg.close(closed, 1, A, Outcome.SUCCESS, "out", ()) == (closed, Reason.OK)
    assert rg.close(closed, 1, A, Outcome.FAILED, None, ())[1] is Reason.CLOSED
    assert rg.claim(closed, 2, B, LEASE_S, "", 100.0, T)[1] is Reason.CLOSED


def test_renew_extends_the_expiry_from_receipt() -> None:
    reg = granted(waiting(), 1, A, 0.0)
    renewed, reason = rg.renew(reg, 1, A, 1.5, T)
    assert reason is Reason.OK and renewed.expiry_s == T.voter_expiry_s(1.5, LEASE_S)
    assert rg.renew(reg, 2, A, 1.5, T)[1] is Reason.STALE_EPOCH
    assert rg.renew(reg, 1, B, 1.5, T)[1] is Reason.NOT_HOLDER


def test_renew_is_refused_past_maxexectime() -> None:
    reg = granted(waiting(maxexectime_s=3.0), 1, A, 0.0)
    assert rg.renew(reg, 1, A, 3.0, T)[1] is Reason.OK
    assert rg.renew(reg, 1, A, 3.1, T)[1] is Reason.EXEC_TIME_SPENT


def test_release_returns_the_process_to_waiting_without_a_retry() -> None:
    reg = granted(waiting(maxretries=0), 1, A, 0.0)
    released, reason = rg.release(reg, 1, A, 1.0)
    assert reason is Reason.OK and released.state is State.WAITING and released.retries == 0
    assert rg.release(released, 1, A, 1.5) == (released, Reason.OK)  # a retransmission
    assert rg.claim(released, 2, B, LEASE_S, "", 1.5, T)[1] is Reason.OK


def test_expire_with_retries_left_a_reclaim_counts_a_retry() -> None:
    reg = granted(waiting(maxretries=2), 1, A, 0.0)
    later = reg.expiry_s + 0.1
    assert rg.expire(reg, later)[1] is Reason.NOT_EXPIRABLE  # retries left: re-claim it
    reg = granted(reg, 2, B, later)
    assert reg.retries == 1
    reg = granted(reg, 3, A, reg.expiry_s + 0.1)
    assert reg.retries == 2
    last = reg.expiry_s + 0.1
    assert rg.claim(reg, 4, B, LEASE_S, "", last, T)[1] is Reason.RETRIES_SPENT
    failed, reason = rg.expire(reg, last)
    assert reason is Reason.OK and failed.state is State.FAILED
    assert failed.errors[-1] == rg.REASON_EXPIRED


def test_expire_is_refused_while_the_lease_is_unexpired() -> None:
    reg = granted(waiting(maxretries=0), 1, A, 0.0)
    assert rg.expire(reg, reg.expiry_s - 0.01)[1] is Reason.NOT_EXPIRABLE
    assert rg.expire(reg, reg.expiry_s)[1] is Reason.OK


def test_maxretries_minus_one_retries_forever() -> None:
    reg = waiting(maxretries=-1)
    now_s = 0.0
    for epoch in range(1, 50):
        reg = granted(reg, epoch, A if epoch % 2 else B, now_s)
        now_s = reg.expiry_s + 0.1
        assert not rg.expirable(reg, now_s)
    assert reg.retries == 48


def test_explicit_fail_is_closed_and_never_retried() -> None:
    reg = granted(waiting(maxretries=-1), 1, A, 0.0)
    failed, reason = rg.close(reg, 1, A, Outcome.FAILED, None, ("boom",))
    assert reason is Reason.OK and failed.state is State.FAILED and failed.errors == ("boom",)
    assert rg.claim(failed, 2, B, LEASE_S, "", 1e6, T)[1] is Reason.CLOSED


def test_maxwaittime_a_waiting_process_past_it_can_only_expire() -> None:
    reg = waiting(maxwaittime_s=10.0)
    assert rg.claim(reg, 1, A, LEASE_S, "", 10.5, T)[1] is Reason.WAIT_TIME_SPENT
    assert rg.expire(reg, 9.0)[1] is Reason.NOT_EXPIRABLE
    failed, reason = rg.expire(reg, 10.5)
    assert reason is Reason.OK and failed.errors[-1] == rg.REASON_WAITED


def test_restart_rule_a_running_lease_is_a_full_lease_from_the_restart() -> None:
    reg = granted(waiting(maxexectime_s=5.0), 1, A, 0.0)
    # a restarted voter's clock starts anywhere (here: far below the grant's reading)
    back = rg.restarted(rg.from_record(rg.to_record(reg)), -100.0, T)
    assert back.state is State.RUNNING and back.holder == A and back.epoch == 1
    assert back.expiry_s == T.voter_expiry_s(-100.0, LEASE_S)
    assert rg.claim(back, 2, B, LEASE_S, "", -100.0 + LEASE_S, T)[1] is Reason.LEASE_HELD
    assert rg.renew(back, 1, A, -100.0 + 4.9, T)[1] is Reason.OK  # maxexectime from restart


def test_durable_record_round_trips_everything_but_local_times() -> None:
    reg = granted(waiting(priority=7, maxretries=-1), 3, A, 1.0)
    reg = rg.close(reg, 3, A, Outcome.SUCCESS, {"k": [1, 2]}, ("e",))[0]
    back = rg.from_record(rg.to_record(reg))
    assert back == replace(reg, expiry_s=0.0, started_s=0.0, waiting_since_s=0.0)


def test_merge_adopts_a_missing_register_and_a_closed_one_but_never_an_open_one() -> None:
    open_a = granted(waiting(), 1, A, 0.0)
    adopted, reason = rg.merge(None, open_a, 50.0, T)
    assert reason is Reason.OK and adopted.expiry_s == T.voter_expiry_s(50.0, LEASE_S)
    closed = rg.close(open_a, 1, A, Outcome.SUCCESS, "o", ())[0]
    assert rg.merge(waiting(), closed, 1.0, T)[0].state is State.SUCCESS
    assert rg.merge(open_a, waiting(), 1.0, T)[0] == open_a
    other = rg.close(granted(waiting(), 2, B, 0.0), 2, B, Outcome.FAILED, None, ())[0]
    assert rg.merge(closed, other, 1.0, T)[0] == closed


def test_abort_cancels_a_waiting_process_and_a_claim_is_then_refused_closed() -> None:
    cancelled, reason = rg.abort(waiting(), State.CANCELLED, ())
    assert reason is Reason.OK and cancelled.closed
    assert (cancelled.state, cancelled.holder, cancelled.errors) == (State.CANCELLED, None, ())
    assert rg.claim(cancelled, 1, A, LEASE_S, "", 1.0, T)[1] is Reason.CLOSED


def test_abort_of_a_running_process_revokes_the_lease_whatever_its_expiry() -> None:
    reg = granted(waiting(), 3, A, 0.0)
    cancelled, reason = rg.abort(reg, State.CANCELLED, ("cancelled by the user",))
    assert reason is Reason.OK
    assert (cancelled.state, cancelled.epoch, cancelled.holder) == (State.CANCELLED, 3, None)
    assert rg.renew(cancelled, 3, A, 0.5, T)[1] is Reason.CLOSED
    assert rg.close(cancelled, 3, A, Outcome.SUCCESS, "late", (), now_s=0.5)[1] is Reason.CLOSED
    assert rg.release(cancelled, 3, A, 0.5)[1] is Reason.CLOSED
    assert rg.expire(cancelled, 1e6)[1] is Reason.CLOSED


def test_abort_of_a_closed_process_is_refused_and_the_result_stays() -> None:
    done = rg.close(granted(waiting(), 1, A, 0.0), 1, A, Outcome.SUCCESS, "out", ())[0]
    assert rg.abort(done, State.CANCELLED, ()) == (done, Reason.CLOSED)
    assert rg.abort(done, State.FAILED, ("parent failed",)) == (done, Reason.CLOSED)


def test_a_failed_abort_keeps_its_error_messages_after_the_earlier_ones() -> None:
    reg = replace(waiting(), errors=("an earlier error",))
    failed, reason = rg.abort(reg, State.FAILED, ("parent p0 failed",))
    assert reason is Reason.OK and failed.state is State.FAILED
    assert failed.errors == ("an earlier error", "parent p0 failed")
    assert rg.abort(waiting(), State.FAILED, ())[0].errors == (rg.REASON_ABORTED,)


def test_abort_errors_are_bounded_by_errors_max_keeping_the_newest() -> None:
    reg = replace(waiting(), errors=tuple(f"old {i}" for i in range(10)))
    new = tuple(f"new {i}" for i in range(rg.ERRORS_MAX + 4))
    failed = rg.abort(reg, State.FAILED, new)[0]
    assert failed.errors == new[: rg.ERRORS_MAX]


def test_a_retransmitted_abort_is_accepted_and_changes_nothing() -> None:
    for state, errors in ((State.CANCELLED, ()), (State.FAILED, ()), (State.FAILED, ("x",))):
        aborted = rg.abort(granted(waiting(), 1, A, 0.0), state, errors)[0]
        assert rg.abort(aborted, state, errors) == (aborted, Reason.OK)
    cancelled = rg.abort(waiting(), State.CANCELLED, ("a",))[0]
    assert rg.abort(cancelled, State.CANCELLED, ("b",))[1] is Reason.CLOSED
    assert rg.abort(cancelled, State.FAILED, ("a",))[1] is Reason.CLOSED


def test_an_expiry_is_not_taken_for_a_retransmitted_failed_abort() -> None:
    reg = granted(waiting(maxretries=0), 1, A, 0.0)
    expired = rg.expire(reg, reg.expiry_s)[0]
    assert rg.abort(expired, State.FAILED, ()) == (expired, Reason.CLOSED)


def test_abort_asks_for_cancelled_or_failed_only() -> None:
    reg = waiting()
    for state in (State.WAITING, State.RUNNING, State.SUCCESS):
        assert rg.abort(reg, state, ()) == (reg, Reason.BAD_STATE)


def test_commit_key_tells_a_cancel_from_an_expiry_but_a_failed_abort_is_the_same_result() -> None:
    reg = granted(waiting(maxretries=0), 1, A, 0.0)
    expired = rg.view(rg.expire(reg, reg.expiry_s)[0])
    cancelled = rg.view(rg.abort(reg, State.CANCELLED, ())[0])
    failed = rg.view(rg.abort(reg, State.FAILED, ("parent failed",))[0])
    assert rg.commit_key(cancelled) == (State.CANCELLED, None) != rg.commit_key(expired)
    assert rg.commit_key(failed) == rg.commit_key(expired)


def test_a_cancelled_register_round_trips_the_record_and_stays_closed_at_a_restart() -> None:
    cancelled = rg.abort(granted(waiting(), 2, A, 0.0), State.CANCELLED, ("why",))[0]
    back = rg.restarted(rg.from_record(rg.to_record(cancelled)), 50.0, T)
    assert back == replace(cancelled, expiry_s=0.0, started_s=0.0, waiting_since_s=50.0)
    assert rg.claim(back, 3, B, LEASE_S, "", 100.0, T)[1] is Reason.CLOSED


def test_merge_a_cancelled_register_replaces_an_open_one_but_not_a_closed_one() -> None:
    cancelled = rg.abort(waiting(), State.CANCELLED, ())[0]
    running = granted(waiting(), 1, A, 0.0)
    assert rg.merge(running, cancelled, 1.0, T)[0].state is State.CANCELLED
    done = rg.close(running, 1, A, Outcome.SUCCESS, "o", ())[0]
    assert rg.merge(done, cancelled, 1.0, T) == (done, Reason.CLOSED)
    assert rg.merge(cancelled, done, 1.0, T) == (cancelled, Reason.CLOSED)


# -- properties -------------------------------------------------------------------------

HOLDERS = (A, B, NodeId(b"C" * 32))
requests = st.lists(
    st.tuples(
        st.sampled_from(("claim", "renew", "close", "release", "expire", "abort", "restart")),
        st.integers(0, 6),  # epoch
        st.integers(0, 2),  # holder
        st.floats(0.0, 3.0),  # time step
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(requests, st.integers(-1, 3))
def test_property_one_unexpired_lease_and_monotone_epochs(
    steps: list[tuple[str, int, int, float]], maxretries: int
) -> None:
    """Whatever arrives: the epoch never goes down, a closed register never changes, a
    grant to a new (epoch, holder) happens only when no other lease is unexpired here,
    and retries stay within maxretries."""
    reg = waiting(maxretries=maxretries, maxexectime_s=4.0)
    now_s = 0.0
    for kind, epoch, h, dt in steps:
        now_s += dt
        holder = HOLDERS[h]
        before = reg
        if kind == "claim":
            reg, reason = rg.claim(reg, epoch, holder, LEASE_S, "", now_s, T)
            if reason is Reason.OK and (reg.epoch, reg.holder) != (before.epoch, before.holder):
                assert not (before.state is State.RUNNING and now_s < before.expiry_s)
                assert reg.epoch > before.epoch
        elif kind == "renew":
            reg, reason = rg.renew(reg, epoch, holder, now_s, T)
        elif kind == "close":
            reg, reason = rg.close(reg, epoch, holder, Outcome.SUCCESS, epoch, ())
        elif kind == "release":
            reg, reason = rg.release(reg, epoch, holder, now_s)
        elif kind == "expire":
            reg, reason = rg.expire(reg, now_s)
        elif kind == "abort":
            state = (State.CANCELLED, State.FAILED)[h % 2]
            reg, reason = rg.abort(reg, state, ("aborted",) if h == 2 else ())
            if reason is Reason.OK and not before.closed:
                assert reg.holder is None and reg.epoch == before.epoch
        else:
            reg, reason = rg.restarted(rg.from_record(rg.to_record(reg)), now_s, T), Reason.OK
            if before.state is State.RUNNING:
                assert reg.expiry_s >= before.expiry_s or now_s >= before.expiry_s
        if reason is not Reason.OK:
            assert (reg.state, reg.epoch, reg.holder) == (before.state, before.epoch, before.holder)
        assert reg.epoch >= before.epoch
        if before.closed:
            assert (reg.state, reg.epoch, reg.output) == (before.state, before.epoch, before.output)
        if maxretries != -1:
            assert reg.retries <= maxretries
        if reg.state is State.RUNNING:
            assert reg.holder is not None


@settings(max_examples=200, deadline=None)
@given(st.floats(0.0, 0.01), st.floats(0.0, 1.0), st.floats(0.01, 100.0), st.data())
def test_property_claimer_deadline_precedes_every_voter_expiry_in_real_time(
    drift: float, margin_s: float, lease_s: float, data: st.DataObject
) -> None:
    """With clock rates within 1 ± drift, a claimer's deadline (from its send) comes
    before a voter's expiry (from its later receipt), in real time."""
    timing = Timing(drift, margin_s)
    rate_c = data.draw(st.floats(1.0 - drift, 1.0 + drift))
    rate_v = data.draw(st.floats(1.0 - drift, 1.0 + drift))
    delay_s = data.draw(st.floats(0.0, 10.0))
    sent_g = 3.0
    received_g = sent_g + delay_s
    # local readings: claimer c(g) = rate_c * g, voter v(g) = 7 + rate_v * g
    deadline_local = timing.claimer_deadline_s(rate_c * sent_g, lease_s)
    expiry_local = timing.voter_expiry_s(7.0 + rate_v * received_g, lease_s)
    deadline_g = deadline_local / rate_c
    expiry_g = (expiry_local - 7.0) / rate_v
    assert deadline_g <= expiry_g + 1e-9


def test_merge_a_lease_that_ran_out_gives_way_to_a_release_at_a_higher_epoch() -> None:
    # This voter missed the Release of epoch 1 (`voters` chaos seed 581): with its
    # retries spent it refused every claim RETRIES_SPENT while another voter granted
    # them, and with the third voter down no claim had a majority, for good.
    ran_out = replace(granted(waiting(maxretries=1), 1, A, 0.0), retries=1)
    assert rg.claim(ran_out, 2, B, LEASE_S, "", 10.0, T)[1] is Reason.RETRIES_SPENT
    elsewhere = granted(replace(waiting(maxretries=1), epoch=1), 5, B, 8.0)
    released = rg.release(elsewhere, 5, B, 9.0)[0]
    merged, reason = rg.merge(ran_out, released, 10.0, T)
    assert reason is Reason.OK
    assert (merged.state, merged.epoch, merged.holder, merged.retries) == (
        State.WAITING, 5, None, 1)  # fmt: skip
    assert rg.claim(merged, 6, B, LEASE_S, "", 10.0, T)[1] is Reason.OK
    # Not while its lease runs here, not from a lower epoch, never a RUNNING copy.
    assert rg.merge(ran_out, released, 1.0, T)[0] == ran_out
    assert rg.merge(ran_out, replace(released, epoch=1), 10.0, T)[0] == ran_out
    assert rg.merge(ran_out, elsewhere, 10.0, T)[0] == ran_out
