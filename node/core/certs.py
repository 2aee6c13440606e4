"""Quorum certificates on closing records (DESIGN.md §6; consensus/certs.py).

A node announces a committed result (a close, an expiry, a cancel, a result it read or
its voter dropped) with the certificate the voters gave it: a majority of one voter
set's signatures of that result. A node takes a closing record from another member only
when its certificate holds against a voter set the owner's roster names (the current
one or one of the PAST_VOTERS_MAX before it, `Roster.past_voters`): any member could
otherwise tell every view that a process succeeded with an output it made up, or that a
workflow's parent succeeded when it did not. Refused items are counted
(`closes_refused`). A RUNNING record is taken only with a majority's signatures of the
lease it announces (`running_refused`). Pure: signature checks and the roster; no I/O,
no clock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

from colonynode.consensus import register as rg
from colonynode.consensus.certs import signed_key, statement
from colonynode.consensus.messages import PID_BYTES_MAX, Cert, RegisterView
from colonynode.core.errors import SignatureError
from colonynode.core.identity import verify
from colonynode.core.ids import NODE_ID_BYTES, NodeId
from colonynode.core.process import State
from colonynode.node.core.processes import ANNOUNCE_ITEMS_MAX, CLOSED_KIND, RUNNING_KIND

if TYPE_CHECKING:
    from colonynode.node.core.nodecore import NodeCore

__all__ = ["CERT_SIGS_MAX", "HELD_MAX", "HeldCloses", "certified_body", "check", "check_cert",
           "running", "to_item", "view_of_item"]  # fmt: skip

CERT_SIGS_MAX = 5  # a certificate names at most one voter set's voters
EPOCH_LIMIT = 1 << 63  # epochs a statement takes (8 bytes)
HELD_MAX = 1024  # closing items held for a roster that names their signers (each costs
# its signature checks again at every roster change)


def to_item(cert: Cert) -> list[list[bytes]]:
    """A certificate as a closing record's item carries it (`cert`)."""
    return [[bytes(voter), sig] for voter, sig in cert[:CERT_SIGS_MAX]]


def view_of_item(item: dict[str, Any], pid: bytes) -> RegisterView | None:
    """The result a closing record's item claims, as the voters signed it (None: not one
    a certificate can name)."""
    state = item.get("state")
    if not isinstance(state, str) or state not in State.__members__:
        return None
    holder = item.get("holder")
    epoch = item.get("epoch", 0)
    if holder is not None and (not isinstance(holder, bytes) or len(holder) != NODE_ID_BYTES):
        return None
    if type(epoch) is not int or not 0 <= epoch < EPOCH_LIMIT or not 0 < len(pid) <= PID_BYTES_MAX:
        return None  # (no register has it: a statement could not even be made of it)
    return RegisterView(pid, State[state], epoch, None if holder is None else NodeId(holder),
                        0, item.get("output"))  # fmt: skip


Known = Callable[[bytes, RegisterView], "NodeId | None"]


def check(item: dict[str, Any], pid: bytes, voter_sets: list[tuple[NodeId, ...]],
          known: Known | None = None) -> str:  # fmt: skip
    """The item's certificate against `voter_sets`: "ok" (a majority of one of them
    signed the result it claims), "refused" (no certificate, or a signature that is not
    its signer's of that result: forged), or "unknown" (every signature good, but no
    majority of a set here: they may be one of a newer set, whose roster has not come
    yet). `known(pid, view)`: a voter whose word on it this node has without a
    signature (its own voter, if it holds that very result: `own_vote`)."""
    view = view_of_item(item, pid)
    if view is None or view.state not in (State.SUCCESS, State.FAILED, State.CANCELLED):
        return "refused"
    if view.holder is None and item.get("output"):
        return "refused"  # (an expiry's or a cancel's result has no output to certify)
    return check_cert(item.get("cert"), pid, view, voter_sets,
                      None if known is None else known(pid, view))  # fmt: skip


def check_cert(raw: Any, pid: bytes, view: RegisterView, voter_sets: list[tuple[NodeId, ...]],
               known: NodeId | None = None) -> str:  # fmt: skip
    """`check`'s verdict on certificate `raw` of `view` (a result, or a grant), counting
    voter `known` as a signer without checking its signature."""
    if not isinstance(raw, list) or not 0 < len(raw) <= CERT_SIGS_MAX:
        return "refused"
    message = statement(pid, view)
    signed: set[NodeId] = set() if known is None else {known}

    def enough() -> bool:
        return any(sum(v in signed for v in vs) > len(vs) // 2 for vs in voter_sets)

    for pair in raw:
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], bytes)
                and isinstance(pair[1], bytes) and len(pair[0]) == NODE_ID_BYTES):  # fmt: skip
            return "refused"
        voter = NodeId(pair[0])
        if voter in signed:
            continue
        try:
            verify(voter, message, pair[1])
        except SignatureError:
            return "refused"  # (a forged signature: the whole item is refused)
        signed.add(voter)
        if enough():
            return "ok"  # (a majority verified: the rest need no check)
    return "ok" if enough() else "unknown"  # (`known` alone may be a set's majority)


Held = tuple[NodeId | None, dict[str, Any]]  # (the record's author, an item of it)


def _items(body: dict[str, Any]) -> Iterator[tuple[bytes, Any]]:
    """A record's items (one step's batch, or one item alone), ANNOUNCE_ITEMS_MAX at
    most, each with its pid; an item without a readable pid is skipped."""
    items = body.get("processes")
    if type(items) is not list:
        items = [body]
    for item in items[:ANNOUNCE_ITEMS_MAX]:
        try:
            yield bytes.fromhex(str(item["processid"])), item
        except (KeyError, ValueError, TypeError):
            continue


class HeldCloses:
    """Closing items certified by voters this node's roster does not name yet (a set
    newer than its roster): held, HELD_MAX at most, the oldest dropped, and judged again
    when a roster comes (`release`)."""

    def __init__(self) -> None:
        self.items: OrderedDict[bytes, Held] = OrderedDict()

    def keep(self, author: NodeId | None, body: Any, voter_sets: list[tuple[NodeId, ...]],
             counters: dict[str, int], known: Known | None = None) -> Any:  # fmt: skip
        """A closing record's body with only the items whose certificate holds; those
        that may hold under a newer roster are held, the others counted refused."""
        if not isinstance(body, dict):
            return body
        kept = []
        for pid, item in _items(body):
            verdict = check(item, pid, voter_sets, known)
            if verdict == "ok":
                kept.append(item)
            elif verdict == "unknown":
                self.items.pop(pid, None)
                self.items[pid] = (author, item)
                while len(self.items) > HELD_MAX:
                    self.items.popitem(last=False)
            else:
                counters["closes_refused"] = counters.get("closes_refused", 0) + 1
        return {"processes": kept}

    def release(self, voter_sets: list[tuple[NodeId, ...]],
                counters: dict[str, int]) -> list[Held]:  # fmt: skip
        """The held items a roster now certifies (the others held still, or refused)."""
        held, self.items = self.items, OrderedDict()
        out = []
        for author, item in held.values():
            body = self.keep(author, item, voter_sets, counters)
            out += [(author, kept) for kept in body["processes"]]
        return out


def certified_body(core: NodeCore, author: NodeId | None, kind: str, body: Any) -> Any:
    """A record for the view: another member's closing record with only its items whose
    certificate holds (the others held or refused, as `HeldCloses.keep` says), or its
    RUNNING record with only the items whose lease a majority granted it (`running`)."""
    if kind not in (CLOSED_KIND, RUNNING_KIND) or author == core.node_id:
        return body
    if core.config.planted_bug == "uncertified_closes":  # (the checkers' test)
        return body
    roster = core.membership.roster  # (none yet: every good item held until one comes)
    sets = roster.voter_sets() if roster is not None else []
    if kind == RUNNING_KIND:
        return running(core, author, body, sets)
    return core.held_closes.keep(author, body, sets, core.counters, partial(own_vote, core))


def own_vote(core: NodeCore, pid: bytes, view: RegisterView) -> NodeId | None:
    """This node, if its voter holds `view`'s very result or grant (whatever set it
    serves: a voter signs what it holds, so its register is its signature): one check of
    a signature less for each item a voter takes (37 µs of Ed25519; #14)."""
    reg = core.consensus.voter.registers.get(pid)
    if reg is None or signed_key(rg.view(reg)) != signed_key(view):
        return None
    return core.node_id


def running(core: NodeCore, author: NodeId | None, body: Any,
            voter_sets: list[tuple[NodeId, ...]]) -> Any:  # fmt: skip
    """A RUNNING record's items whose certificate is a majority's grant of that epoch's
    lease to the record's author. Without it any member could tell every view that a
    process runs, and keep the others from claiming it (a view leaves a RUNNING process
    to its holder for the lease the item names). The others are counted
    (`running_refused`), and not held for a newer roster (a lease runs out before one
    comes). Items of processes the view holds closed change nothing: dropped unchecked."""
    if not isinstance(body, dict):
        return body
    kept = []
    for pid, item in _items(body):
        state = core.book.state_of(pid)
        if state is not None and state.closed:
            continue
        epoch = item.get("epoch")
        if (author is not None and type(epoch) is int and 0 < epoch < EPOCH_LIMIT
                and 0 < len(pid) <= PID_BYTES_MAX):  # fmt: skip
            grant = RegisterView(pid, State.RUNNING, epoch, author, 0)
            mine = own_vote(core, pid, grant)
            if check_cert(item.get("cert"), pid, grant, voter_sets, mine) == "ok":
                kept.append(item)
                continue
        core.counters["running_refused"] += 1
    return {"processes": kept}
