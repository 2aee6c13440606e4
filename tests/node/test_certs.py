"""Quorum certificates (consensus/certs.py, node/core/certs.py): voters sign the results
they hold closed, a claimer gathers a majority's signatures, and a certificate holds
against the voter sets the roster names, now or before (#18)."""

from __future__ import annotations

from colonynode.consensus import Outcome, ProcessTerms
from colonynode.consensus.certs import statement
from colonynode.consensus.events import Closed, Granted, ReadResult, Submitted
from colonynode.consensus.messages import RegisterView
from colonynode.consensus.register import Register, view
from colonynode.consensus.requests import ClaimLeases, CloseProcess, ReadRegister, SubmitProcess
from colonynode.core.identity import Identity, verify
from colonynode.core.process import State
from colonynode.core.roster import Member, genesis_roster
from colonynode.node.core.certs import HeldCloses, check, check_cert, to_item
from tests.consensus.harness import Colony, nid


def signer(i: int) -> Identity:
    return Identity(bytes([i + 1]) * 32)


def test_voters_sign_a_grant_and_a_committed_close_and_the_claimer_gathers_a_majority() -> None:
    """Each voter signs the lease it grants, and the result it holds closed, once,
    keeping that signature with the register (across a restart); the grant's and the
    close's events carry a majority's."""
    colony = Colony(claimers=1, sign_with=lambda i: signer(i).sign)
    terms = ProcessTerms(b"p", nid(3), seq=1)
    colony.call(3, lambda c, t: c.request(t, SubmitProcess(terms)))
    colony.deliver()
    assert [e.acked for e in colony.events(3, Submitted)] == [True]
    colony.call(3, lambda c, t: c.request(t, ClaimLeases((b"p",))))
    colony.deliver()
    granted = colony.events(3, Granted)[-1]  # (and the grant's: RUNNING, its epoch, node 3)
    grant = statement(b"p", RegisterView(b"p", State.RUNNING, granted.epoch, nid(3), 0))
    assert len(granted.cert) >= 2
    for voter, sig in granted.cert:
        verify(signer(voter[0] - 1).node_id, grant, sig)
    colony.call(3, lambda c, t: c.request(t, CloseProcess(b"p", Outcome.SUCCESS, [7])))
    colony.deliver()
    closed = colony.events(3, Closed)[-1]
    assert closed.committed and closed.view is not None and len(closed.cert) >= 2
    message = statement(b"p", closed.view)
    for voter, sig in closed.cert:  # (the harness's ids are not keys: node i signs as i)
        verify(signer(voter[0] - 1).node_id, message, sig)
    reg = colony.core(0).voter.register(b"p")
    assert reg is not None and reg.sig
    colony.crash(0)
    colony.restart(0)
    again = colony.core(0).voter.register(b"p")
    assert again is not None and again.sig == reg.sig and view(again) == view(reg)


def item(pid: bytes, cert: tuple[tuple[bytes, bytes], ...]) -> dict[str, object]:
    return {
        "processid": pid.hex(),
        "state": "SUCCESS",
        "output": [1],
        "epoch": 1,
        "holder": bytes(signer(9).node_id),
        "cert": to_item(cert),
    }  # type: ignore[arg-type]


def signed(pid: bytes, voters: tuple[int, ...]) -> tuple[tuple[bytes, bytes], ...]:
    v = RegisterView(pid, State.SUCCESS, 1, signer(9).node_id, 0, [1])
    return tuple((signer(i).node_id, signer(i).sign(statement(pid, v))) for i in voters)


def test_a_certificate_of_a_past_voter_set_holds_and_of_a_newer_one_waits() -> None:
    """The roster names its voter sets before the current one (`past_voters`): a
    certificate of the set before still holds after a change. One of a set this node
    has no roster of yet is held, and taken once a roster names that set."""
    roster = genesis_roster(signer(0), "lab", "n0")
    for i in range(1, 5):
        roster = roster.with_member(Member(signer(i).node_id, f"n{i}", ("executor",)))
    first = roster.with_voters(tuple(signer(i).node_id for i in (0, 1, 2)))
    second = first.with_voters(tuple(signer(i).node_id for i in (2, 3, 4)))
    assert second.voter_sets()[1] == first.voters
    pid = b"q" * 16
    assert check(item(pid, signed(pid, (0, 1))), pid, second.voter_sets()) == "ok"
    assert check(item(pid, signed(pid, (3, 4))), pid, first.voter_sets()) == "unknown"
    held, counters = HeldCloses(), {}
    assert held.keep(None, item(pid, signed(pid, (3, 4))), first.voter_sets(),
                     counters) == {"processes": []}  # fmt: skip
    assert held.release(first.voter_sets(), counters) == []  # (still not a majority)
    assert [i["processid"] for _, i in held.release(second.voter_sets(), counters)] == [pid.hex()]
    assert not held.items and not counters


def test_a_malformed_certified_item_is_refused_not_a_crash() -> None:
    """Bad input from gossip: an epoch out of range, an over-long pid, a holder of the
    wrong size, a certificate of the wrong shape: each refused, nothing raised."""
    pid = b"q" * 16
    good = item(pid, signed(pid, (0, 1)))
    sets = [tuple(signer(i).node_id for i in (0, 1, 2))]
    assert check(good, pid, sets) == "ok"
    for bad in ({"epoch": -1}, {"epoch": 1 << 64}, {"epoch": True}, {"holder": b"x"},
                {"cert": [[b"x", b"y"]]}, {"cert": "no"}, {"cert": []}, {"state": "RUNNING"},
                {"cert": [[bytes(signer(0).node_id), b"\0" * 64]] * 6}):  # fmt: skip
        assert check({**good, **bad}, pid, sets) == "refused", bad
    long = b"p" * 300  # (a statement has no room for it)
    assert check(item(long, ((signer(0).node_id, b"\0" * 64),)), long, sets) == "refused"


def test_a_voters_own_word_counts_toward_the_majority_and_may_be_all_of_it() -> None:
    """`known` (a node's own voter holding that result) counts as a signature: with one
    other voter's, a majority of three; alone, the majority of a one-voter set (a
    two-node colony whose founder is its only voter: the dashboard's test found a
    RUNNING item held back there, its known majority never counted)."""
    pid = b"k" * 16
    v = RegisterView(pid, State.SUCCESS, 1, signer(9).node_id, 0, [1])
    three = [tuple(signer(i).node_id for i in (0, 1, 2))]
    one = [(signer(0).node_id,)]
    cert = to_item(signed(pid, (1,)))
    assert check_cert(cert, pid, v, three) == "unknown"
    assert check_cert(cert, pid, v, three, signer(0).node_id) == "ok"
    assert check_cert(to_item(signed(pid, (0,))), pid, v, one, signer(0).node_id) == "ok"
    forged = [[bytes(signer(1).node_id), b"\0" * 64]]
    assert check_cert(forged, pid, v, three, signer(0).node_id) == "refused"


def test_a_kept_register_is_signed_and_a_read_of_it_certified() -> None:
    """A register a voter keeps as it is (a frozen process's own vote, settle.py) comes
    from a handover copy, which carries no signature: it is signed when kept, and a
    closed register with none (written before certificates) is signed in its verdict.
    Before, such a process's committed result got a certificate one signature short
    once it settled, and no node took its closing record (replace seeds 793, 1122)."""
    colony = Colony(claimers=1, sign_with=lambda i: signer(i).sign)
    terms = ProcessTerms(b"k", nid(3), seq=1)
    colony.call(3, lambda c, t: c.request(t, SubmitProcess(terms)))
    colony.deliver()
    closed = Register(terms, State.SUCCESS, 1, nid(3), output=[2])  # (no signature)
    colony.core(0).voter.keep(closed)
    colony.core(1).voter.registers[b"k"] = closed  # (as if stored before certificates)
    kept = colony.core(0).voter.register(b"k")
    assert kept is not None and kept.sig
    verify(signer(0).node_id, statement(b"k", view(kept)), kept.sig)
    colony.call(3, lambda c, t: c.request(t, ReadRegister(b"k")))
    colony.deliver()
    read = colony.events(3, ReadResult)[-1]
    assert read.committed and read.view is not None and read.view.output == [2]
    assert sorted(v[0] for v, _ in read.cert) == [1, 2]  # (voters 0 and 1: ids 1 and 2)
    for voter, sig in read.cert:
        verify(signer(voter[0] - 1).node_id, statement(b"k", read.view), sig)
