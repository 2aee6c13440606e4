"""Compaction (consensus/compaction.py): voters drop closed registers once no voter of
their set holds them open, and nothing dropped runs again."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from colonynode.consensus import Outcome, ProcessTerms, Reason, State
from colonynode.consensus import register as rg
from colonynode.consensus.compaction import ASK_AGAIN_S, ASKS_MAX, Retention
from colonynode.consensus.events import Compacted, Granted, Submitted
from colonynode.consensus.handover import HandoverProgress, VoterSet
from colonynode.consensus.messages import SERIES_MAX, Close, Compact, Merge, RegisterCopy
from colonynode.consensus.requests import (
    ChangeVoters,
    ClaimLeases,
    CloseProcess,
    SubmitProcess,
)
from colonynode.consensus.voter import META_KEY, META_TABLE, REGISTERS_TABLE
from tests.consensus.harness import Colony, nid

RETENTION = Retention(retention_s=30.0, pressed_s=5.0, pressed_fraction=0.75)
C1 = 3  # the claimer node of a 3-voter colony
VOTERS = (0, 1, 2)


def submit(colony: Colony, pid: bytes, seq: int) -> list[Submitted]:
    terms = ProcessTerms(pid, nid(C1), seq=seq)
    colony.call(C1, lambda c, t: c.request(t, SubmitProcess(terms)))
    colony.deliver()
    return [e for e in colony.events(C1, Submitted) if e.pid == pid]


def run_to_success(colony: Colony, pid: bytes, seq: int, drop: Any = None) -> None:
    assert submit(colony, pid, seq)[-1].acked
    colony.call(C1, lambda c, t: c.request(t, ClaimLeases((pid,))))
    colony.deliver()
    assert any(e.pid == pid for e in colony.events(C1, Granted))
    colony.call(C1, lambda c, t: c.request(t, CloseProcess(pid, Outcome.SUCCESS, "out")))
    colony.deliver(drop=drop)


def held(colony: Colony, voter: int, pid: bytes) -> bool:
    return colony.core(voter).voter.register(pid) is not None


def wait(colony: Colony, seconds: float, step_s: float = 1.0) -> None:
    """Let `seconds` pass in steps, delivering what each tick sends."""
    for _ in range(int(seconds / step_s)):
        colony.advance(step_s)
        colony.deliver()


def test_a_closed_register_is_dropped_everywhere_after_its_retention() -> None:
    colony = Colony(claimers=1, retention=RETENTION)
    run_to_success(colony, b"p", seq=1_000)
    wait(colony, RETENTION.retention_s - 2)
    assert all(held(colony, v, b"p") for v in VOTERS)  # not before its time
    wait(colony, 2 + 2 * ASK_AGAIN_S)
    for v in VOTERS:
        assert not held(colony, v, b"p")
        assert colony.nodes[v].store.durable_get(REGISTERS_TABLE, b"p") is None
        assert colony.core(v).voter.compaction.horizon == 1_000
        assert [e.pids for e in colony.events(v, Compacted)] == [(b"p",)]


def test_nothing_is_dropped_while_a_voter_is_down_and_then_once_it_answers() -> None:
    colony = Colony(claimers=1, retention=RETENTION)
    run_to_success(colony, b"p", seq=1_000)
    colony.crash(2)
    wait(colony, RETENTION.retention_s + 5 * ASK_AGAIN_S)
    assert held(colony, 0, b"p") and held(colony, 1, b"p")  # voter 2 did not say
    colony.restart(2)
    wait(colony, RETENTION.retention_s + 3 * ASK_AGAIN_S)
    assert not any(held(colony, v, b"p") for v in VOTERS)


def test_a_voter_that_holds_it_open_is_sent_the_close_and_only_then_is_it_dropped() -> None:
    colony = Colony(claimers=1, retention=RETENTION)

    def no_close_to_2(src: Any, dst: Any, msg: Any) -> bool:  # nor the repair after it
        return isinstance(msg, (Close, Merge)) and dst == 2

    run_to_success(colony, b"p", seq=1_000, drop=no_close_to_2)
    open_at_2 = colony.core(2).voter.register(b"p")
    assert open_at_2 is not None and open_at_2.state is State.RUNNING
    answers: list[tuple[int, bool]] = []  # (asker, voter 2 still open when it answered)

    def watch(src: Any, dst: Any, msg: Any) -> bool:
        if isinstance(msg, Compact) and dst == 2:
            reg = colony.core(2).voter.register(b"p")
            answers.append((src, reg is not None and not reg.closed))
        return False

    for _ in range(int(RETENTION.retention_s + 4 * ASK_AGAIN_S)):
        colony.advance(1.0)
        colony.deliver(drop=watch)
    assert answers[0][1], "voter 2 was asked while it held the process open"
    assert not held(colony, 0, b"p") and not held(colony, 1, b"p")
    at_2 = colony.core(2).voter.register(b"p")  # closed by the asker's Merge first
    assert at_2 is not None and at_2.state is State.SUCCESS and at_2.output == "out"
    wait(colony, RETENTION.retention_s)  # its own retention, from when it saw it closed
    assert not held(colony, 2, b"p")


def test_a_late_submit_of_a_dropped_process_is_refused_compacted_and_a_new_one_taken() -> None:
    colony = Colony(claimers=1, retention=RETENTION)
    run_to_success(colony, b"p", seq=1_000)
    wait(colony, RETENTION.retention_s + 2 * ASK_AGAIN_S)
    late = submit(colony, b"p", seq=1_000)[-1]
    assert not late.acked and late.reason is Reason.COMPACTED
    assert not any(held(colony, v, b"p") for v in VOTERS)
    assert submit(colony, b"q", seq=2_000)[-1].acked


def test_repair_of_an_old_open_process_goes_on_below_the_horizon() -> None:
    """Voter 0 missed an acknowledged submission older than the horizon: the repair
    that gives it a copy is taken (the claims scenario under chaos stalled when it
    was refused)."""
    colony = Colony(claimers=1, retention=RETENTION)
    assert submit(colony, b"old", seq=500)[-1].acked
    colony.core(0).voter.forget(b"old")  # as if it had missed the Submit
    colony.core(0).take_effects()
    run_to_success(colony, b"p", seq=1_000)
    wait(colony, RETENTION.retention_s + 2 * ASK_AGAIN_S)
    assert colony.core(0).voter.compaction.horizon == 1_000 and not held(colony, 0, b"old")
    copy = RegisterCopy(ProcessTerms(b"old", nid(C1), seq=500), State.WAITING, 0, None, 0.0, 0)
    colony.inflight.append((1, 0, Merge(copy, colony.core(0).voter.serving)))
    colony.deliver()
    assert held(colony, 0, b"old")


def test_the_horizon_and_the_retention_survive_a_restart() -> None:
    colony = Colony(claimers=1, retention=RETENTION)
    run_to_success(colony, b"p", seq=1_000)
    run_to_success(colony, b"q", seq=900)
    wait(colony, RETENTION.retention_s + 2 * ASK_AGAIN_S)
    assert colony.nodes[0].store.durable_get(META_TABLE, META_KEY)["horizon"] == 1_000
    colony.crash(0)
    colony.restart(0)
    colony.tick(0)
    assert colony.core(0).voter.compaction.horizon == 1_000
    run_to_success(colony, b"r", seq=3_000)
    colony.crash(1)
    colony.restart(1)  # its retention of r starts again from its restart
    wait(colony, RETENTION.retention_s - 2)
    assert held(colony, 1, b"r")


def test_under_pressure_closed_registers_go_after_the_shorter_retention() -> None:
    colony = Colony(claimers=1, retention=RETENTION)
    for v in VOTERS:
        colony.core(v).voter.registers_max = 4
    for i in range(3):  # 3 of 4: past the pressed fraction
        run_to_success(colony, bytes([i + 1]), seq=1_000 + i)
    wait(colony, RETENTION.pressed_s + 2 * ASK_AGAIN_S)
    assert not any(held(colony, v, bytes([1])) for v in VOTERS)
    assert submit(colony, b"x", seq=5_000)[-1].acked  # room again, not FULL


def test_open_registers_are_never_dropped() -> None:
    colony = Colony(claimers=1, retention=RETENTION)
    for v in VOTERS:
        colony.core(v).voter.registers_max = 2
    assert submit(colony, b"a", seq=1)[-1].acked
    assert submit(colony, b"b", seq=2)[-1].acked
    wait(colony, RETENTION.retention_s + 2 * ASK_AGAIN_S)
    assert all(held(colony, v, p) for v in VOTERS for p in (b"a", b"b"))
    full = submit(colony, b"c", seq=3)[-1]
    assert not full.acked and full.reason is Reason.FULL


def test_a_voter_alone_drops_without_asking() -> None:
    colony = Colony(voters=1, claimers=1, retention=RETENTION)
    pid = b"p"
    terms = ProcessTerms(pid, nid(1), seq=7)
    colony.call(1, lambda c, t: c.request(t, SubmitProcess(terms)))
    colony.deliver()
    colony.call(1, lambda c, t: c.request(t, ClaimLeases((pid,))))
    colony.deliver()
    colony.call(1, lambda c, t: c.request(t, CloseProcess(pid, Outcome.SUCCESS, "out")))
    colony.deliver()
    asked: list[Any] = []
    for _ in range(int(RETENTION.retention_s + 2)):
        colony.advance(1.0)
        colony.deliver(drop=lambda s, d, m: asked.append(m) if isinstance(m, Compact) else False)
    assert not held(colony, 0, pid) and not asked


def test_a_voter_with_a_minority_result_adopts_the_majoritys_and_it_is_dropped() -> None:
    """Voters 0 and 1 hold SUCCESS, voter 2 FAILED (an expiry raced the close): the
    majority's result is the committed one; voter 2 adopts it, then all three drop it."""
    colony = Colony(claimers=1, retention=RETENTION)
    run_to_success(colony, b"p", seq=1_000)
    at_2 = colony.core(2).voter.registers[b"p"]
    colony.core(2).voter.registers[b"p"] = replace(at_2, state=State.FAILED, holder=None)
    wait(colony, RETENTION.retention_s + 2 * ASK_AGAIN_S)
    assert colony.core(2).voter.compaction.adopted == 1
    wait(colony, RETENTION.retention_s + 2 * ASK_AGAIN_S)
    assert not any(held(colony, v, b"p") for v in VOTERS)
    views = [e.views[0] for v in VOTERS for e in colony.events(v, Compacted)]
    assert {(v.state, v.output) for v in views} == {(State.SUCCESS, "out")}


def test_results_no_majority_holds_are_kept_and_asked_about_again_a_retention_later() -> None:
    colony = Colony(claimers=1, retention=RETENTION)
    run_to_success(colony, b"p", seq=1_000)
    v1, v2 = colony.core(1).voter, colony.core(2).voter
    v1.registers[b"p"] = replace(v1.registers[b"p"], state=State.FAILED, holder=None)
    v2.forget(b"p")  # (voter 2 holds nothing: voter 0's result has no majority)
    compacts: list[float] = []
    for _ in range(int(RETENTION.retention_s + (ASKS_MAX + 2) * ASK_AGAIN_S)):
        colony.advance(1.0)
        colony.deliver(drop=lambda s, d, m: bool(compacts.append(colony.t))
                       if isinstance(m, Compact) and s == 0 and d == 1 else False)  # fmt: skip
    assert held(colony, 0, b"p") and held(colony, 1, b"p")
    assert len(set(compacts)) == ASKS_MAX  # then it waits: no asking forever
    assert not colony.events(0, Compacted) and v1.compaction.adopted == 0


def test_an_open_copy_sent_before_the_drop_and_late_is_not_taken() -> None:
    """Found in review: voter 2 missed the Submit; voter 0's open copy for it (a repair)
    was delayed past the drop everywhere; taken, a claimer's repair would spread it and
    the process would run again. Voter 2 promised, when it answered, to take none."""
    colony = Colony(claimers=1, retention=RETENTION)
    terms = ProcessTerms(b"p", nid(C1), seq=1_000)
    colony.call(C1, lambda c, t: c.request(t, SubmitProcess(terms)))
    colony.deliver(drop=lambda s, d, m: d == 2)
    v0 = colony.core(0).voter
    late = (0, 2, Merge(rg.to_copy(v0.registers[b"p"]), v0.serving))
    colony.call(C1, lambda c, t: c.request(t, ClaimLeases((b"p",))))
    colony.deliver(drop=lambda s, d, m: d == 2)
    colony.call(C1, lambda c, t: c.request(t, CloseProcess(b"p", Outcome.SUCCESS, "out")))
    colony.deliver(drop=lambda s, d, m: d == 2 and not isinstance(m, Compact))
    wait(colony, RETENTION.retention_s + 4 * ASK_AGAIN_S)
    assert not any(held(colony, v, b"p") for v in VOTERS)
    colony.inflight.append(late)
    colony.deliver()
    assert not held(colony, 2, b"p") and colony.core(2).voter.compaction.refused == 1


def test_definitions_and_tick_processes_are_never_dropped_nor_refused() -> None:
    """A definition (`kept`) is read back after it closed; a tick's process without a
    series may be submitted again under the same pid, with a new seq: neither is ever
    dropped, and the horizon does not refuse them."""
    colony = Colony(claimers=1, retention=RETENTION)
    run_to_success(colony, b"p", seq=5_000)
    for pid, kw in ((b"def", {"kept": True}), (b"tick", {"tick": b"t1"})):
        terms = ProcessTerms(pid, nid(C1), seq=1_000, **kw)  # below the horizon to come
        colony.call(C1, lambda c, t, terms=terms: c.request(t, SubmitProcess(terms)))
        colony.deliver()
        colony.call(C1, lambda c, t, pid=pid: c.request(t, ClaimLeases((pid,))))
        colony.deliver()
        colony.call(C1, lambda c, t, pid=pid: c.request(t, CloseProcess(pid, Outcome.SUCCESS, 1)))
        colony.deliver()
    wait(colony, RETENTION.retention_s + 2 * ASK_AGAIN_S)
    assert colony.core(0).voter.compaction.horizon == 5_000 and not held(colony, 0, b"p")
    assert all(held(colony, v, p) for v in VOTERS for p in (b"def", b"tick"))
    again = ProcessTerms(b"tick2", nid(C1), seq=1_000, tick=b"t2")
    colony.call(C1, lambda c, t: c.request(t, SubmitProcess(again)))
    colony.deliver()
    assert [e.acked for e in colony.events(C1, Submitted) if e.pid == b"tick2"] == [True]


def test_a_submission_time_ahead_of_the_voters_clock_is_never_dropped() -> None:
    """One submitter's clock hours ahead must not raise every voter's horizon past the
    submissions to come: a register from the future stays."""
    colony = Colony(claimers=1, retention=RETENTION, unix_ns=lambda: 10_000)
    run_to_success(colony, b"future", seq=10**18)
    run_to_success(colony, b"now", seq=9_000)
    wait(colony, RETENTION.retention_s + 2 * ASK_AGAIN_S)
    assert all(held(colony, v, b"future") and not held(colony, v, b"now") for v in VOTERS)
    assert colony.core(0).voter.compaction.horizon == 9_000


def close_tick(colony: Colony, pid: bytes, seq: int, series: bytes) -> Submitted:
    """Submit a cron tick's process (`tick` and `series`), claim and close it."""
    terms = ProcessTerms(pid, nid(C1), seq=seq, tick=b"t-" + pid, series=series)
    colony.call(C1, lambda c, t: c.request(t, SubmitProcess(terms)))
    colony.deliver()
    answer = [e for e in colony.events(C1, Submitted) if e.pid == pid][-1]
    if answer.acked:
        colony.call(C1, lambda c, t: c.request(t, ClaimLeases((pid,))))
        colony.deliver()
        colony.call(C1, lambda c, t: c.request(t, CloseProcess(pid, Outcome.SUCCESS, 1)))
        colony.deliver()
    return answer


def test_a_crons_tick_is_dropped_and_never_taken_again_nor_an_earlier_one() -> None:
    """A cron's ticks (`series`: the cron) are dropped like any process; then a Submit
    of the same tick, or of an earlier tick of that cron, is refused COMPACTED (the
    tick's pid is the same whoever fires it: only the series horizon says it ran). A
    later tick, another cron's earlier tick and an ordinary process are taken."""
    colony = Colony(claimers=1, retention=RETENTION)
    run_to_success(colony, b"p", seq=9_000)  # raises the global horizon past the ticks
    assert close_tick(colony, b"c1-t2", seq=2_000, series=b"cron1").acked
    assert close_tick(colony, b"c2-t5", seq=5_000, series=b"cron2").acked
    wait(colony, RETENTION.retention_s + 2 * ASK_AGAIN_S)
    for v in VOTERS:
        c = colony.core(v).voter.compaction
        assert not held(colony, v, b"c1-t2") and not held(colony, v, b"c2-t5")
        assert c.series == {b"cron1": 2_000, b"cron2": 5_000} and c.horizon == 9_000
    for pid, seq, series in ((b"c1-t2", 2_000, b"cron1"), (b"c1-t1", 1_000, b"cron1")):
        late = close_tick(colony, pid, seq, series)
        assert not late.acked and late.reason is Reason.COMPACTED
    assert close_tick(colony, b"c1-t3", seq=3_000, series=b"cron1").acked
    assert close_tick(colony, b"c2-t4", seq=4_000, series=b"cron1x").acked  # another cron
    assert submit(colony, b"q", seq=9_500)[-1].acked


def test_series_horizons_survive_a_restart_and_go_to_a_new_voter_with_the_handover() -> None:
    colony = Colony(voters=3, claimers=3, retention=RETENTION)
    assert close_tick(colony, b"c1-t2", seq=2_000, series=b"cron1").acked
    wait(colony, RETENTION.retention_s + 2 * ASK_AGAIN_S)
    assert not held(colony, 0, b"c1-t2")
    assert colony.nodes[0].store.durable_get(META_TABLE, META_KEY)["series"] == [[b"cron1", 2_000]]
    colony.crash(0)
    colony.restart(0)
    colony.tick(0)
    assert colony.core(0).voter.compaction.series == {b"cron1": 2_000}
    ids = tuple(nid(i) for i in (1, 2, 4))  # node 4 replaces voter 0
    for i in range(len(colony.nodes)):
        colony.call(i, lambda c, t: c.request(t, ChangeVoters(2, ids)))
    for _ in range(20):
        colony.deliver()
        colony.advance(0.1)
    assert colony.core(4).voter.serving == 2
    assert colony.core(4).voter.compaction.series == {b"cron1": 2_000}
    late = close_tick(colony, b"c1-t2", seq=2_000, series=b"cron1")
    assert not late.acked and late.reason is Reason.COMPACTED


def test_a_tick_of_a_new_series_is_kept_once_series_max_horizons_are_held() -> None:
    """At most SERIES_MAX series horizons are kept: the ticks of another series are never
    dropped (a horizon not kept could not refuse them)."""
    colony = Colony(claimers=1, retention=RETENTION)
    for v in VOTERS:
        c = colony.core(v).voter.compaction
        c.series = {i.to_bytes(4, "big"): 1 for i in range(SERIES_MAX)}
    assert close_tick(colony, b"full-t1", seq=2_000, series=b"new-cron").acked
    assert close_tick(colony, b"old-t1", seq=2_000, series=(7).to_bytes(4, "big")).acked
    wait(colony, RETENTION.retention_s + 2 * ASK_AGAIN_S)
    assert all(held(colony, v, b"full-t1") and not held(colony, v, b"old-t1") for v in VOTERS)


def test_a_frozen_process_is_kept_and_does_not_stop_compaction_of_the_others() -> None:
    """A process frozen for good (the old voter whose vote decides it is dead) once
    stopped every compaction round at its voters, for good: the table filled. Now only
    the frozen process is kept."""
    colony = Colony(claimers=1, retention=RETENTION)
    run_to_success(colony, b"f", seq=900)
    for v in VOTERS:
        voter = colony.core(v).voter
        frozen_by = HandoverProgress(VoterSet(1, (), (nid(C1),)))  # (no voter: no answer)
        frozen_by.pids = {b"f"}
        voter.frozen, voter.vote_of, voter.unsettled = {b"f"}, {b"f": 0}, [frozen_by]
    run_to_success(colony, b"p", seq=1_000)
    wait(colony, RETENTION.retention_s + 2 * ASK_AGAIN_S)
    assert all(held(colony, v, b"f") and not held(colony, v, b"p") for v in VOTERS)


def test_a_voter_back_in_a_later_set_forgets_its_stale_copy_of_a_dropped_process() -> None:
    """Voters chaos seed 51 (`retention_s=3`): voter 2 of set 1 held a process open when
    set 2, without it, closed and dropped it; back in set 3, its stale open copy came
    back with it and the process ran again. Its handover forgets what no old voter's
    page names at or below the horizon the pages bring."""
    colony = Colony(voters=3, claimers=2, retention=RETENTION)  # voters 0, 1, 2; 3, 4
    terms = ProcessTerms(b"p", nid(4), seq=1_000)
    colony.call(4, lambda c, t: c.request(t, SubmitProcess(terms)))
    colony.deliver()
    cut_2 = lambda s, d, m: 2 in (s, d)  # noqa: E731

    def change(version: int, voters: tuple[int, ...]) -> None:
        for i in range(5):
            colony.call(
                i, lambda c, t: c.request(t, ChangeVoters(version, tuple(map(nid, voters))))
            )
        for _ in range(10):
            colony.deliver(drop=cut_2 if 2 not in voters else None)
            colony.advance(0.3)

    change(2, (0, 1, 3))
    colony.call(4, lambda c, t: c.request(t, ClaimLeases((b"p",))))
    colony.deliver(drop=cut_2)
    colony.call(4, lambda c, t: c.request(t, CloseProcess(b"p", Outcome.SUCCESS, "out")))
    colony.deliver(drop=cut_2)
    for _ in range(int(RETENTION.retention_s + 2 * ASK_AGAIN_S)):
        colony.advance(1.0)
        colony.deliver(drop=cut_2)
    assert not any(held(colony, v, b"p") for v in (0, 1, 3))
    stale = colony.core(2).voter.register(b"p")
    assert stale is not None and not stale.closed  # what it held when it was cut off
    change(3, (0, 1, 2))
    assert colony.core(2).voter.serving == 3
    assert not held(colony, 2, b"p") and colony.core(2).voter.compaction.stale == 1


def test_a_pinned_register_keeps_its_series_from_its_seq_on_and_the_horizon_below() -> None:
    """Pins (the application's: a generator's arg waiting for its batch's workflow):
    a pinned register of a series is kept, with every register of the series at or
    above its seq, and no voter raises that series' horizon to it, so a first Submit
    above it (the batch's workflow) is taken; once unpinned, they all go, and a late
    Submit of one is refused COMPACTED."""
    pins = {b"b"}
    colony = Colony(claimers=1, retention=RETENTION,
                    pinned=lambda voter, reg, now_s: reg.pid in pins)  # fmt: skip
    for pid, seq in ((b"a", 1_000), (b"b", 2_000), (b"c", 3_000)):
        assert close_tick(colony, pid, seq, series=b"gen").acked
    wait(colony, RETENTION.retention_s + 2 * ASK_AGAIN_S)
    for v in VOTERS:
        assert not held(colony, v, b"a") and held(colony, v, b"b") and held(colony, v, b"c")
        assert colony.core(v).voter.compaction.series == {b"gen": 1_000}
    assert close_tick(colony, b"d", seq=2_500, series=b"gen").acked  # above: taken
    pins.clear()
    wait(colony, RETENTION.retention_s + 2 * ASK_AGAIN_S)
    for v in VOTERS:
        assert not any(held(colony, v, p) for p in (b"b", b"c", b"d"))
        assert colony.core(v).voter.compaction.series == {b"gen": 3_000}
    late = close_tick(colony, b"c", seq=3_000, series=b"gen")
    assert not late.acked and late.reason is Reason.COMPACTED


def test_a_pin_at_one_voter_holds_back_every_voter_and_its_own_horizon() -> None:
    """Only voter 2 pins (say it alone holds the batch's arg closed): the others ask,
    voter 2 agrees to nothing at or above its floor and keeps its horizon below it; so
    nothing of the series there is dropped anywhere, and what is below it is."""
    colony = Colony(claimers=1, retention=RETENTION,
                    pinned=lambda voter, reg, now_s: voter.node_id == nid(2)
                    and reg.pid == b"b")  # fmt: skip
    for pid, seq in ((b"a", 1_000), (b"b", 2_000), (b"c", 3_000)):
        assert close_tick(colony, pid, seq, series=b"gen").acked
    wait(colony, 3 * (RETENTION.retention_s + ASKS_MAX * ASK_AGAIN_S))
    for v in VOTERS:
        assert not held(colony, v, b"a") and held(colony, v, b"b") and held(colony, v, b"c")
    assert colony.core(2).voter.compaction.series == {b"gen": 1_000}


def test_a_grant_names_the_series_horizon_at_the_granting_voters() -> None:
    colony = Colony(claimers=1, retention=RETENTION)
    assert close_tick(colony, b"a", seq=1_000, series=b"gen").acked
    wait(colony, RETENTION.retention_s + 2 * ASK_AGAIN_S)
    terms = ProcessTerms(b"x", nid(C1), seq=5_000, series=b"gen")
    colony.call(C1, lambda c, t: c.request(t, SubmitProcess(terms)))
    colony.deliver()
    colony.call(C1, lambda c, t: c.request(t, ClaimLeases((b"x",))))
    colony.deliver()
    grants = {e.pid: e.horizon for e in colony.events(C1, Granted)}
    assert grants[b"x"] == 1_000
