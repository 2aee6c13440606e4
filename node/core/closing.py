"""The closes a node makes or announces itself (part of NodeCore's scheduler): expiries
past maxwaittime or spent retries, workflow steps failed by their parent, the closing
record of a committed result, and settling a result the voters hold closed but whose
record never came (DESIGN.md §5, §6). No I/O, no clock."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from colonynode.consensus import requests as lrq
from colonynode.consensus.messages import Cert
from colonynode.core.process import State
from colonynode.node.core.certs import to_item
from colonynode.node.core.processes import CLOSED_KIND, ProcessBook

if TYPE_CHECKING:
    from colonynode.node.core.scheduler import SchedulerHost

__all__ = ["Closing"]

SETTLE_AFTER_S = 3.0  # a closing record not heard of this long after the voters said closed
SETTLE_AFTER_OTHERS_S = 15.0  # ... by a node that did not submit the process
SETTLE_RETRY_S = 5.0  # a process the voters closed but this node cannot tell how: read again
SETTLING_MAX = 1024  # such reads in flight


class Closing:
    def __init__(
        self,
        host: SchedulerHost,
        book: ProcessBook,
        counters: dict[str, int],
        started_ns: dict[bytes, int],
    ) -> None:
        self.host = host
        self.book = book
        self.counters = counters  # the scheduler's: settled, graph_failed
        self.started_ns = started_ns  # pid -> when its run here started (the scheduler's)
        self._settling: set[bytes] = set()  # pids being read to learn their result

    def settle_later(self, pid: bytes) -> None:
        """The voters say `pid` is closed; its closing record is most likely on its way.
        Only if it has not come after a while (its submitter soonest) does this node
        read a majority and announce the result itself."""
        mine = self.book.submitter_of(pid) == self.host.node_id
        after_s = SETTLE_AFTER_S if mine else SETTLE_AFTER_OTHERS_S
        self.host.at(self.host.now_s + after_s, lambda now_s: self.settle(pid))

    def settle(self, pid: bytes) -> None:
        """The voters hold `pid` closed, but this node's view has not heard how (its
        closing record was lost with the node that committed it, or it was closed by a
        raw lease request): read a majority and announce what they committed."""
        state = self.book.state_of(pid)
        if pid in self._settling or (state is not None and state.closed):
            return
        if len(self._settling) >= SETTLING_MAX:
            return
        self._settling.add(pid)

        def done(event: Any) -> None:
            self._settling.discard(pid)
            view = event.view
            state = self.book.state_of(pid)
            if state is not None and state.closed:
                return
            if not event.committed or view is None:  # not settled at the voters yet
                # One voter's closed result held no majority: the process may be open at
                # the others, its lease lapsed (replace seed 1564: RUNNING at two new
                # voters, a close at the third that was never committed). Claimable here
                # again, and an expiry tried (the voters take it only for a lapsed lease
                # with its retries spent); the read again later.
                self.book.unmark_closed_elsewhere(pid)
                self.expire(pid)
                self.host.at(self.host.now_s + SETTLE_RETRY_S, lambda now_s: self.settle(pid))
                return
            self.counters["settled"] += 1
            self.announce_close(pid, State(view.state), view.output, [], 0, None, view,
                                cert=event.cert)  # fmt: skip

        self.host.lease(lrq.ReadRegister(pid), done)

    def compacted(self, pids: tuple[bytes, ...], views: tuple[Any, ...],
                  certs: tuple[Cert, ...]) -> None:  # fmt: skip
        """This node's voter dropped these closed registers (consensus/compaction.py):
        a result its view has not heard of is announced now (nobody can read it later;
        its closing record was lost with the node that committed it), also of a process
        the view does not hold yet (its submission still on the way: voters partitions
        seed 97 with `retention_s=3`, every view WAITING for good)."""
        for pid, view, cert in zip(pids, views, certs, strict=True):
            state = self.book.state_of(pid)
            if state is None or not state.closed:
                self.counters["settled"] += 1
                self.announce_close(pid, State(view.state), view.output, [], 0, None, view,
                                    cert=cert)  # fmt: skip

    def expire(self, pid: bytes) -> None:
        """Close FAILED a process whose retries or wait time ran out (any node may)."""

        def done(event: Any) -> None:
            if event.committed:
                self.announce_close(pid, State.FAILED, None, [], 0, None, event.view,
                                    cert=event.cert)  # fmt: skip

        self.host.lease(lrq.ExpireProcess(pid), done)

    def fail_child(self, pid: bytes, parent: bytes) -> None:
        parent_view = self.book.get(parent)
        name = parent_view["spec"]["nodename"] if parent_view else parent.hex()
        state = parent_view["state"] if parent_view else "FAILED"
        errors = (f"parent {name} ({parent.hex()}) closed {state}",)

        def done(event: Any) -> None:
            if event.committed:
                self.counters["graph_failed"] += 1
                self.announce_close(pid, State.FAILED, None, list(errors), 0, None, event.view,
                                    cert=event.cert)  # fmt: skip

        self.host.lease(lrq.CancelProcess(pid, State.FAILED, errors), done)

    def announce_close(
        self,
        pid: bytes,
        state: State,
        output: Any,
        errors: list[str],
        epoch: int,
        executor: str | None,
        view: Any = None,
        *,
        cert: Cert = (),
    ) -> None:
        """Announce a committed outcome: what the voters hold (`view`: their epoch,
        retries and errors) wins over what this node knew. A close by the voters alone
        (an expiry, a cancel) has no executor of its own: the last run's stays. `cert`:
        the voters' signatures of the result (certs.py), without which no other node
        takes the record; with it the record names the result as they signed it."""
        if view is not None:
            errors, epoch = list(view.errors), epoch or view.epoch
        body: dict[str, Any] = {"processid": pid.hex(), "state": state.name,
                                "output": output or [], "errors": errors,
                                "end_ns": self.host.unix_ns()}  # fmt: skip
        if view is not None:
            body["retries"] = view.retries
            if view.holder is not None:  # (a holder's close: signed with its output)
                body["holder"], body["output"] = bytes(view.holder), view.output
        if cert:
            body["cert"] = to_item(cert)
        started = self.started_ns.pop(pid, None)
        for key, value in (("epoch", epoch), ("executor", executor), ("start_ns", started)):
            if value:
                body[key] = value
        self.host.announce(CLOSED_KIND, body)  # in this node's view at once
