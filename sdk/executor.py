"""Serve a functions file's `@function`s through a node (`colonynode executor run`).

The executor attaches to the node of a data dir through its local API, long-polls for
processes the node claimed for it, and runs each function in its worker process (or on
a thread, `--in-process`: `colonynode.sdk.runners`). While it runs, the executor sends
the node a heartbeat about once a second, with the lines the function printed or logged
(`colonynode.sdk.log`) and its attributes; the node answers whether it still holds the
lease. The run ends in one of five ways:

- it returns: the output is committed (`close`), exactly once;
- it raises: the process fails with the exception's message (never retried);
- it passes the spec's maxexectime, or the node says the lease was lost or the process
  cancelled: the executor kills its worker process and commits nothing. The voters
  refuse to renew a lease past maxexectime, so the process is retried elsewhere until
  its retries are spent. (In-process, a Python thread cannot be killed: the abandoned
  call may run on, but whatever it returns is dropped.)
- its worker process dies (a crash, `os._exit`): the process fails with the exit code.

A function's positional arguments are the spec's `args` followed by its `input` (for a
workflow process, its parents' outputs, concatenated); `kwargs` are passed as keywords.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from colonynode.core.errors import ColonyError
from colonynode.node.apiclient import ApiClient, ApiError, DaemonNotRunning
from colonynode.sdk.context import ProcessContext, route_stdout
from colonynode.sdk.functions import FunctionError
from colonynode.sdk.runners import ProcessRunner, Run, Runner, ThreadRunner

__all__ = ["Executor"]

log = logging.getLogger(__name__)

ASSIGN_TIMEOUT_S = 10.0
RECONNECT_S = (0.2, 5.0)  # the first and the longest wait between tries for a node gone
CONCURRENCY_MAX = 256  # slots of one executor
JOIN_POLL_S = 0.5
HEARTBEAT_S = 1.0
LOG_CALL_LINES_MAX = 256  # the node takes at most this many lines per call


class Executor:
    def __init__(
        self,
        client: ApiClient,
        functions: Runner | dict[str, Callable[..., Any]],
        executortype: str,
        name: str,
        *,
        heartbeat_s: float = HEARTBEAT_S,
        concurrency: int = 1,
        reconnect: Callable[[], ApiClient] | None = None,
    ) -> None:
        """`functions`: a runner (`ProcessRunner(path)` runs them in a worker process
        that can be killed), or a dict of functions to call on threads of this one.
        `concurrency`: how many calls run at once, each in a slot of its own (a worker
        process each, for a `ProcessRunner`), with a long-poll of its own for work.
        `reconnect`: a fresh client of the same node (its handle read again); with it,
        an executor whose node went away (killed, restarted, paused) waits for the node
        and registers again instead of exiting."""
        if not 1 <= concurrency <= CONCURRENCY_MAX:
            raise ColonyError(f"concurrency must be 1..{CONCURRENCY_MAX}, not {concurrency}")
        self.client = client
        self.runner = ThreadRunner(functions) if isinstance(functions, dict) else functions
        self.runners = [self.runner, *_more_runners(self.runner, concurrency - 1)]
        self.executortype = executortype
        self.name = name
        self.heartbeat_s = heartbeat_s
        self.done = 0
        self.abandoned = 0
        self.refused = 0  # results the voters would not commit
        self._lock = threading.Lock()  # the counters, the id, the tickets
        self._reconnect = reconnect
        self._reconnecting = threading.Lock()
        self._stop = threading.Event()
        try:
            self.id = self._register()
        except BaseException:
            self.close()
            raise
        route_stdout()

    @property
    def concurrency(self) -> int:
        return len(self.runners)

    def _register(self, client: ApiClient | None = None) -> str:
        reply = (client or self.client).post(
            "/v1/executors",
            {"name": self.name, "executortype": self.executortype,
             "functions": sorted(self.runner.names), "slots": self.concurrency},
        )  # fmt: skip
        return str(reply["executor_id"])

    def run_forever(self, max_processes: int | None = None) -> None:
        """Serve until `max_processes` ran, or until interrupted (KeyboardInterrupt):
        then detach, so the node releases at once what this executor held. Each slot
        runs on a thread of its own; the calling thread waits (and takes the interrupt)."""
        tickets = _Tickets(max_processes)
        failures: list[BaseException] = []
        slots = [
            threading.Thread(
                target=self._serve_slot,
                args=(runner, tickets, failures),
                name=f"slot-{i}",
                daemon=True,
            )
            for i, runner in enumerate(self.runners)
        ]
        try:
            for slot in slots:
                slot.start()
            while any(slot.is_alive() for slot in slots):
                for slot in slots:
                    slot.join(JOIN_POLL_S)  # short joins: a signal reaches this thread
            if failures:
                raise failures[0]
        except KeyboardInterrupt:
            self._stop.set()
            self.detach()
            raise
        else:
            self.detach()
        finally:
            self._stop.set()
            self.close()

    def _serve_slot(self, runner: Runner, tickets: _Tickets, failures: list[BaseException]) -> None:
        carried: dict[str, Any] | None = None  # came with the last commit; its ticket taken
        while not self._stop.is_set():
            if carried is None and not tickets.take():
                return
            seen = self.id
            more = False
            try:
                proc, carried = carried or self._assign(), None
                if proc is None:
                    tickets.give_back()
                    continue
                more = tickets.take()  # the commit asks for the next process too
                carried = self._serve(runner, proc, more)
                if more and carried is None:
                    tickets.give_back()
            except ColonyError as exc:
                tickets.give_back()
                if _node_gone(exc) and self._reconnect is not None:
                    self._await_node(seen, exc)
                    continue
                if "register again" not in str(exc):
                    failures.append(exc)
                    self._stop.set()
                    return
                with self._lock:  # the node restarted: the first slot to see it registers
                    if self.id == seen:
                        log.warning("%s; registering again", exc)
                        self.id = self._register()
                continue
            except BaseException as exc:  # a bug: stop every slot, the caller raises it
                tickets.give_back()
                failures.append(exc)
                self._stop.set()
                return

    def _await_node(self, seen: str, exc: ColonyError) -> None:
        """The node went away: try again, waiting longer each time, until it answers and
        this executor is registered again (the first slot to see it does this; the
        others find the id changed). Runs in flight carry on; their results reach the
        node if it is back by then, and otherwise their leases end and the voters give
        the processes to another executor."""
        assert self._reconnect is not None
        with self._reconnecting:
            if self.id != seen:
                return
            log.warning("%s; waiting for the node to come back", exc)
            wait_s = RECONNECT_S[0]
            while not self._stop.is_set():
                try:
                    client = self._reconnect()
                    self.id = self._register(client)
                except ColonyError as again:
                    log.debug("the node is still gone: %s", again)
                else:
                    self.client, old = client, self.client
                    old.close()
                    log.info("the node is back: registered again as %s", self.id)
                    return
                self._stop.wait(wait_s)
                wait_s = min(wait_s * 2, RECONNECT_S[1])

    def detach(self) -> list[str]:
        """Leave the node: the processes still running here go back to WAITING (their
        leases released, no retry counted). Returns their ids."""
        try:
            released: list[str] = self.client.post(f"/v1/executors/{self.id}/detach")["released"]
        except ColonyError as exc:
            log.warning("detach: %s", exc)
            return []
        if released:
            log.info("released %d processes: %s", len(released), ", ".join(released))
        return released

    def run_one(self, runner: Runner | None = None) -> bool:
        """Wait for one process and run it (in `runner`, by default the first slot's);
        False when none came within the poll."""
        proc = self._assign()
        if proc is None:
            return False
        self._serve(runner or self.runner, proc, more=False)
        return True

    def _assign(self) -> dict[str, Any] | None:
        reply = self.client.post(f"/v1/executors/{self.id}/assign", {"timeout_s": ASSIGN_TIMEOUT_S})
        proc: dict[str, Any] | None = reply.get("process") or None
        return proc

    def _serve(self, runner: Runner, proc: dict[str, Any], more: bool) -> dict[str, Any] | None:
        """Run `proc` and commit its outcome. With `more`, the commit's request also
        waits for this slot's next process (one request where two were): it, or None."""
        pid, spec = proc["processid"], proc["spec"]
        if spec["funcname"] not in runner.names:
            errors = [f"{self.name} has no function {spec['funcname']!r}"]
            return self._commit("fail", pid, {"processid": pid, "errors": errors}, more)
        ctx = ProcessContext(pid, spec, list(proc.get("input") or []))
        outcome = self._run(runner, ctx)
        with self._lock:
            self.done += 1
            if "abandoned" in outcome:
                self.abandoned += 1
        if "abandoned" in outcome:
            log.warning("process %s %s: abandoned, nothing committed", pid, outcome["abandoned"])
            return None
        if "error" in outcome:
            return self._commit("fail", pid, {"processid": pid, "errors": [outcome["error"]]}, more)
        return self._commit("close", pid, {"processid": pid, "output": outcome["output"]}, more)

    def _run(self, runner: Runner, ctx: ProcessContext) -> dict[str, Any]:
        spec = ctx.spec
        limit_s = spec["maxexectime"] if spec["maxexectime"] > 0 else None
        deadline = None if limit_s is None else time.monotonic() + limit_s
        try:
            run = runner.start(ctx, [*spec["args"], *ctx.input], spec["kwargs"])
        except FunctionError as exc:  # its worker process could not start again
            return {"error": str(exc)}
        while True:
            wait_s = self.heartbeat_s
            if deadline is not None:
                wait_s = max(0.0, min(wait_s, deadline - time.monotonic()))
            run.join(wait_s)
            if run.done:
                break
            if deadline is not None and time.monotonic() >= deadline:
                self._stop_run(runner, ctx, run)
                self._flush(ctx, final=True)
                return {"abandoned": f"ran past maxexectime ({limit_s} s)"}
            status = self._flush(ctx)
            if status != "held":
                self._stop_run(runner, ctx, run)
                return {"abandoned": f"was {status} (the node no longer holds its lease)"}
        self._flush(ctx, final=True)
        return run.outcome

    def _stop_run(self, runner: Runner, ctx: ProcessContext, run: Run) -> None:
        if runner.stop(run):
            log.info("process %s: its function was stopped", ctx.processid)
        else:
            log.info("process %s: its function runs on in a thread (--in-process)",
                     ctx.processid)  # fmt: skip

    def close(self) -> None:
        """Stop the worker processes, if any."""
        for runner in self.runners:
            runner.close()

    def _flush(self, ctx: ProcessContext, final: bool = False) -> str:
        """Ship buffered lines and attributes; the node's word on the lease: `held`,
        `lost` or `cancelled`."""
        lines, attrs = ctx.take(final)
        pid = ctx.processid
        try:
            held = True
            for i in range(0, len(lines), LOG_CALL_LINES_MAX):
                reply = self.client.post(
                    f"/v1/executors/{self.id}/log",
                    {"processid": pid, "lines": lines[i : i + LOG_CALL_LINES_MAX]},
                )
                held = held and bool(reply.get("held"))
            for key, value in attrs:
                self.client.post(
                    f"/v1/executors/{self.id}/attributes",
                    {"processid": pid, "key": key, "value": value},
                )
            if final and held:
                return "held"
            beat = self.client.post(f"/v1/executors/{self.id}/heartbeat", {})
            return str(beat["processes"].get(pid, "lost"))
        except ColonyError as exc:
            log.warning("heartbeat for %s: %s", pid, exc)
            return "held"  # the node may answer again; the lease decides in the end

    def _commit(
        self, verb: str, pid: str, body: dict[str, Any], more: bool = False
    ) -> dict[str, Any] | None:
        """Close or fail `pid` through the node; say so when the voters refuse it (the run
        ended while the process was cancelled, or its lease passed to another executor).
        With `more`, the slot's next process, if one came with the answer."""
        what = "result" if verb == "close" else "failure"
        if more:
            body = {**body, "next_s": ASSIGN_TIMEOUT_S}
        try:
            reply = self.client.post(f"/v1/executors/{self.id}/{verb}", body)
        except ColonyError as exc:
            log.warning("%s of %s not committed: %s", what, pid, exc)
            return None
        nxt: dict[str, Any] | None = reply.get("next") or None
        if reply.get("committed"):
            return nxt
        with self._lock:
            self.refused += 1
        if reply.get("state") == "CANCELLED":
            log.warning("process %s was cancelled: its %s was not committed", pid, what)
        else:
            log.warning("%s of %s not committed: the voters refused it (%s)", what, pid,
                        reply.get("reason"))  # fmt: skip
        return nxt


class _Tickets:
    """How many more processes the slots may take (`--max-processes`): a slot takes a
    ticket before it asks for work and gives it back when none came."""

    def __init__(self, total: int | None) -> None:
        self._left = total
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._left is None:
                return True
            if self._left <= 0:
                return False
            self._left -= 1
            return True

    def give_back(self) -> None:
        with self._lock:
            if self._left is not None:
                self._left += 1


def _node_gone(exc: ColonyError) -> bool:
    """The node does not answer, or answers as a new daemon (its API token changed)."""
    return isinstance(exc, DaemonNotRunning) or (
        isinstance(exc, ApiError) and exc.code == "unauthorized")  # fmt: skip


def _more_runners(first: Runner, n: int) -> list[Runner]:
    """`n` runners like `first`: threads share one `ThreadRunner`; each further slot of a
    `ProcessRunner` has a worker process of its own (started side by side)."""
    if n <= 0:
        return []
    if isinstance(first, ThreadRunner):
        return [first] * n
    made: list[Runner | BaseException] = [ValueError("not started")] * n

    def start(i: int) -> None:
        try:
            made[i] = ProcessRunner(first.path)
        except BaseException as exc:
            made[i] = exc

    threads = [threading.Thread(target=start, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runners = [r for r in made if not isinstance(r, BaseException)]
    failed = [r for r in made if isinstance(r, BaseException)]
    if failed:
        for r in runners:
            r.close()
        raise failed[0]
    return runners
