"""NodeCore, the node's decisions, on the stepped network: a process's whole life through
real gossip, DHT and lease cores, requests answered by id, long-polls and deadlines."""

from __future__ import annotations

from dataclasses import replace

from colonynode.consensus import ProcessTerms, State
from colonynode.consensus import register as rg
from colonynode.consensus.messages import Claim, Submit
from colonynode.consensus.register import REASON_EXPIRED, REASON_WAITED, Register
from colonynode.core.codec import decode_raw, encode, from_wire, to_wire
from colonynode.core.envelope import Envelope
from colonynode.core.scheduling import ExecutorAdvert
from colonynode.gossip.events import Accepted
from colonynode.gossip.records import open_body, seal_record
from colonynode.node.core import Dial, NotFound, PermissionDenied, channel_of
from colonynode.node.core import requests as rq
from colonynode.node.core.messages import Hello
from colonynode.node.core.processes import OWN_CLAIM_QUIET_S
from colonynode.node.core.vouch import VOUCH_KIND
from tests.node.colony import Colony, cert_of, identity, spec, submit

PY = ExecutorAdvert("e", "py", cpu_millis=10**9, mem_bytes=10**15)


def attach(colony: Colony, node: int, name: str = "e") -> str:
    advert = ExecutorAdvert(name, "py", cpu_millis=10**9, mem_bytes=10**15)
    got = colony.result(node, rq.RegisterExecutor(advert))
    return str(got["executor_id"])


def test_a_process_runs_on_another_node_and_every_node_sees_the_voters_result() -> None:
    colony = Colony(5)
    pid = submit(colony, 0)
    executor = attach(colony, 3)
    got = colony.result(3, rq.Assign(executor, timeout_s=5))
    assert got is not None and got["processid"] == pid.hex() and got["state"] == "RUNNING"
    done = colony.result(3, rq.CloseRun(executor, pid, True, [42]))
    assert done["committed"] and done["state"] == "SUCCESS"
    for node in range(5):
        view = colony.result(node, rq.WaitProcess(pid, timeout_s=5))
        assert view["state"] == "SUCCESS" and view["output"] == [42]
        assert view["epoch"] == got["epoch"] and view["retries"] == 0


def test_an_assign_with_nothing_to_run_is_answered_none_at_its_deadline() -> None:
    colony = Colony(5)
    executor = attach(colony, 3)
    start = colony.net.t
    assert colony.result(3, rq.Assign(executor, timeout_s=1.5)) is None
    assert 1.5 <= colony.net.t - start < 1.6


def test_the_submitting_node_does_not_claim_before_the_voters_hold_it() -> None:
    """The UNKNOWN_PID race of the old scheduler: a submitter with an idle executor
    claimed before the voters had the submission, was refused, and skipped it for 1 s."""
    colony = Colony(5)
    executor = attach(colony, 3)
    waiting = colony.ask(3, rq.Assign(executor, timeout_s=5))
    pid = submit(colony, 3)
    colony.run_until(lambda: colony.answer(3, waiting) is not None)
    answer = colony.answer(3, waiting)
    assert answer is not None and answer.value["processid"] == pid.hex()
    assert colony.core(3).scheduler.counters["claims_sent"] == 1


def test_a_submission_carries_its_own_first_claim_when_its_node_has_an_idle_executor() -> None:
    """The short path: the Claim leaves in the same batch as the Submit, right behind it
    on every voter's link, so the voters take WAITING and RUNNING at epoch 1 in one
    turn; another node's idle executor leaves it to the submitter (no dueling claim)."""
    colony = Colony(5)
    mine, other = attach(colony, 3), attach(colony, 4, "f")
    waiting = colony.ask(3, rq.Assign(mine, timeout_s=5))
    colony.ask(4, rq.Assign(other, timeout_s=5))
    sent_before = len(colony.net.sent)
    rid = colony.ask(3, rq.SubmitProcess(spec()))
    to_voters = [(dst, m) for src, dst, m in colony.net.sent[sent_before:]
                 if src == 3 and isinstance(m, Submit | Claim)]  # fmt: skip
    for voter in (0, 1, 2):
        assert [type(m) for dst, m in to_voters if dst == voter] == [Submit, Claim]
    claim = next(m for _, m in to_voters if isinstance(m, Claim))
    pid = claim.items[0].pid
    assert claim.items[0].epoch == 1
    colony.run_until(lambda: colony.answer(3, waiting) is not None)
    got = colony.answer(3, waiting)
    assert got is not None and got.value["processid"] == pid.hex() and got.value["epoch"] == 1
    acked = colony.answer(3, rid)
    assert acked is not None and acked.error is None
    assert colony.core(3).scheduler.counters["own_claims"] == 1
    assert colony.core(4).scheduler.counters["claims_sent"] == 0


def test_a_submission_whose_own_claim_is_lost_goes_to_another_node() -> None:
    """The flag that leaves a submission to its submitter holds others back only for a
    claim's timeout: when the submitter's claims never arrive, another executor runs it."""
    colony = Colony(5)
    mine, other = attach(colony, 3), attach(colony, 4, "f")
    colony.ask(3, rq.Assign(mine, timeout_s=10))
    theirs = colony.ask(4, rq.Assign(other, timeout_s=10))
    colony.ask(3, rq.SubmitProcess(spec()))

    def lose_claims_of_3(src: int, dst: int, msg: object) -> bool:
        return src == 3 and isinstance(msg, Claim)

    start = colony.net.t
    colony.run_until(lambda: colony.answer(4, theirs) is not None, 5, drop=lose_claims_of_3)
    got = colony.answer(4, theirs)
    assert got is not None and got.value is not None and got.value["state"] == "RUNNING"
    assert colony.net.t - start >= OWN_CLAIM_QUIET_S  # it was left to node 3 first
    assert colony.core(3).scheduler.counters["own_claims"] == 1


def test_maxwaittime_expires_with_the_voters_reason_on_every_node() -> None:
    colony = Colony(5)
    pid = submit(colony, 0, maxwaittime=2)
    view = colony.result(4, rq.WaitProcess(pid, timeout_s=10))
    assert view["state"] == "FAILED" and view["errors"] == [REASON_WAITED]


def test_a_failed_run_is_retried_with_the_voters_retry_count() -> None:
    colony = Colony(5)
    pid = submit(colony, 0, maxretries=1)
    first = attach(colony, 3, "a")
    got = colony.result(3, rq.Assign(first, timeout_s=5))
    assert got["processid"] == pid.hex()
    colony.result(3, rq.Detach(first, release=False))  # its executor died
    second = attach(colony, 4, "b")
    again = colony.result(4, rq.Assign(second, timeout_s=30), max_s=40)
    assert again is not None and again["processid"] == pid.hex()
    colony.result(4, rq.CloseRun(second, pid, True, ["ok"]))
    view = colony.result(0, rq.WaitProcess(pid, timeout_s=10))
    assert view["state"] == "SUCCESS" and view["retries"] == 1


def test_a_process_whose_retries_are_spent_is_expired_by_the_next_claimer() -> None:
    """Scheduling moved from the lease core to NodeCore: a claim refused RETRIES_SPENT
    makes the claiming node expire the process (any node may), with the voters' reason."""
    colony = Colony(5)
    pid = submit(colony, 0, maxretries=0)
    first = attach(colony, 3, "a")
    assert colony.result(3, rq.Assign(first, timeout_s=5))["processid"] == pid.hex()
    colony.result(3, rq.Detach(first, release=False))  # its executor died: no retry left
    second = attach(colony, 4, "b")
    waiting = colony.ask(4, rq.Assign(second, timeout_s=30))
    view = colony.result(1, rq.WaitProcess(pid, timeout_s=60), max_s=60)
    assert view["state"] == "FAILED" and view["errors"] == [REASON_EXPIRED]
    assert view["retries"] == 0
    assert colony.answer(4, waiting) is None  # the second executor still waits


def test_unknown_processes_and_foreign_cancels_are_refused() -> None:
    colony = Colony(5)
    try:
        colony.result(1, rq.GetProcess(b"\x01" * 16))
    except NotFound:
        pass
    else:
        raise AssertionError("an unknown process must be NotFound")
    pid = submit(colony, 3)
    colony.run_until(lambda: colony.core(4).book.get(pid) is not None)
    try:
        colony.result(4, rq.CancelProcess(pid))
    except PermissionDenied as exc:
        assert "only the node that submitted" in str(exc)
    else:
        raise AssertionError("node 4 neither submitted it nor owns the colony")
    done = colony.result(3, rq.CancelProcess(pid))
    assert done["cancelled"] and done["state"] == "CANCELLED"


def test_every_message_travels_on_a_known_channel() -> None:
    colony = Colony(3)
    channels = {channel_of(msg) for _, _, msg in colony.net.sent}
    assert channels <= {"gossip", "dht", "lease", "roster"} and "roster" in channels
    assert any(isinstance(msg, Hello) for _, _, msg in colony.net.sent)


def test_a_submit_leaves_before_its_commit_only_below_a_durable_reservation() -> None:
    """The daemon sends a small turn's Submits before its commit (the submitter's commit
    and the voters' overlap) only while every own sequence number handed out lies below
    a reservation an earlier turn committed."""
    colony = Colony(5)
    fresh = colony.core(4)  # its first own number is reserved in this very turn
    fresh.request(colony.net.t, rq.SubmitProcess(spec()))
    sends = fresh.take_effects().sends
    assert any(isinstance(m, Submit) for _, m in sends)
    assert not [m for _, m in fresh.early_sends(sends) if isinstance(m, Submit)]
    core = colony.core(3)
    assert colony.result(3, rq.SubmitProcess(spec())) is not None  # reserved and committed
    now = colony.net.t
    core.request(now, rq.SubmitProcess(spec()))
    early = core.early_sends(core.take_effects().sends)
    for voter in colony.identities[:3]:
        assert [type(m) for to, m in early if to == voter.node_id] == [Submit]
    # A turn that hands out more numbers than the committed reservation covers.
    while core.gossip.ledger.next_seq <= core.gossip.ledger.reserved_out:
        core.gossip.publish(now, "note", "filler")
    core.request(now, rq.SubmitProcess(spec()))
    sends = core.take_effects().sends
    assert any(isinstance(m, Submit) for _, m in sends)
    assert not [m for _, m in core.early_sends(sends) if isinstance(m, Submit | Claim)]


def test_a_member_it_is_not_connected_to_is_looked_up_in_the_dht_and_dialled() -> None:
    """A member this node cannot reach is found through its signed /peer/ record in the
    DHT (the daemon then dials the address found), whatever hints it may have had."""
    colony = Colony(5, dial=True)
    ids = [x.node_id for x in colony.identities]
    addr = f"/ip4/10.0.0.4/tcp/4001/p2p/{colony.identities[4].peer_id}"
    colony.net.call(4, lambda core, now: core.set_addrs(now, (addr,)))
    for i, away in ((3, 4), (4, 3)):  # 3 and 4 are not connected to each other
        peers = [p for j, p in enumerate(ids) if j not in (i, away)]
        colony.net.call(i, lambda core, now, peers=peers: core.set_connected(now, peers))
    colony.run_until(lambda: colony.core(3).links.found_addrs >= 1, 60)
    dials = [n.addr for n in colony.net.events(3, Dial)]
    assert addr in dials


def test_a_removed_members_processes_still_reach_a_node_that_was_down() -> None:
    """Found by the voters scenario (seed 30): n4 ran a process and was removed; n2,
    down meanwhile, came back and refused every record n4 had signed (its author no
    longer a member), so it showed the process WAITING for good. The roster keeps a
    former member's last sequence number; records up to it stay valid."""
    colony = Colony(5)
    colony.net.crash(2)
    colony.connect_all()
    pid = submit(colony, 4)
    executor = attach(colony, 4)
    got = colony.result(4, rq.Assign(executor, timeout_s=5))
    assert got is not None and got["processid"] == pid.hex()
    assert colony.result(4, rq.CloseRun(executor, pid, True, [7]))["committed"]
    colony.result(0, rq.RemoveMember("n4"))
    roster = colony.core(0).membership.roster
    assert roster is not None and [f.last_seq > 0 for f in roster.former] == [True]
    colony.net.crash(4)
    colony.net.restart(2)
    colony.connect_all()
    view = colony.result(2, rq.WaitProcess(pid, timeout_s=30), max_s=60.0)
    assert view["state"] == "SUCCESS" and view["output"] == [7]


def test_a_removed_members_acknowledged_process_the_owner_never_had_still_reaches_all() -> None:
    """Found by the voters scenario (chaos seeds 102 and 197): n4 submitted a process
    the voters acknowledged, and the owner's node, cut off from n4, removed it with a
    cut below that submission's record: every node that did not hold the record by then
    refused it, and never showed the process. The voters that took it vouch for it."""
    colony = Colony(5)
    colony.net.crash(3)
    colony.connect_all()
    rid = colony.ask(4, rq.SubmitProcess(spec()))
    cut_off = lambda src, dst, msg: dst == 0 or src == 0  # noqa: E731 (the owner: no word)
    colony.run_until(lambda: colony.answer(4, rid) is not None, drop=cut_off)
    answer = colony.answer(4, rid)
    assert answer is not None and answer.error is None
    pid = bytes.fromhex(answer.value["processid"])
    assert colony.core(0).book.get(pid) is None
    colony.result(0, rq.RemoveMember("n4"))
    roster = colony.core(0).membership.roster
    assert roster is not None
    record = colony.core(1).consensus.voter.registers[pid].terms.record
    seq = open_body(from_wire(Envelope, decode_raw(record))).seq
    assert [f.last_seq < seq for f in roster.former] == [True]  # the record is past it
    colony.net.crash(4)
    colony.net.restart(3)
    colony.connect_all()
    colony.run_until(lambda: all(colony.core(i).book.get(pid) is not None for i in (0, 3)))
    assert colony.core(3).vouches.counters["taken"] >= 1
    assert colony.core(1).vouches.counters["vouched"] >= 1


def test_a_vouch_of_junk_or_of_a_strangers_record_is_refused_and_counted() -> None:
    colony = Colony(5)
    stranger = seal_record(identity(9), 1, "process", {"processid": "ab" * 16})
    junk = {"records": [b"junk", 5, encode(to_wire(stranger))]}
    event = Accepted(colony.identities[1].node_id, 7, VOUCH_KIND, junk, stranger)
    vouches = colony.core(3).vouches
    vouches.on_record(event)
    vouches.on_record(replace(event, body="not a vouch"))
    assert vouches.counters["refused"] == 3 and vouches.counters["taken"] == 0
    assert colony.core(3).book.get(bytes.fromhex("ab" * 16)) is None


def test_a_result_compacted_before_the_view_held_its_process_is_still_announced() -> None:
    """Voters partitions seed 97 (`retention_s=3`): a lone voter dropped a closed
    register before its own view had the submission, announced nothing, and every
    view showed the process WAITING for good. The result goes out whatever the view."""
    colony = Colony(5)
    pid = bytes(range(16))
    runner = colony.identities[4].node_id
    closed = Register(ProcessTerms(pid, runner), State.SUCCESS, 1, runner)
    core = colony.core(0)
    assert core.book.state_of(pid) is None
    view = rg.view(replace(closed, output=[7]))
    core.scheduler.closing.compacted((pid,), (view,), (cert_of(pid, view),))
    colony.net.stabilize()
    body = {"processid": pid.hex(), "spec": {"funcname": "f", "conditions": {"executortype": "py"}},
            "submission_ns": 1}  # fmt: skip
    for i in range(5):  # the submission, late, everywhere
        colony.core(i).book.on_record(colony.identities[4].node_id, "process", body)
    colony.run_until(lambda: all(colony.core(i).book.state_of(pid) is State.SUCCESS
                                 for i in range(5)))  # fmt: skip
