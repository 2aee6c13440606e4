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

A slot does not wait for its result to commit: it hands the result to the executor's
closer and asks for its next process at once. The closer commits every result that is
ready in one request (`POST /v1/executors/{id}/closes`), so a busy executor's closes
reach the voters in batches; the executor detaches only once they are all answered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from colonynode.core.errors import ColonyError
from colonynode.node.apiclient import ApiClient, ApiError, DaemonNotRunning
from colonynode.sdk.context import ProcessContext, route_stdout
from colonynode.sdk.functions import FunctionError
from colonynode.sdk.runners import ProcessRunner, Run, Runner, ThreadRunner
from colonynode.sdk.spec_fs import SpecFs

__all__ = ["Executor"]

log = logging.getLogger(__name__)

ASSIGN_TIMEOUT_S = 10.0
RECONNECT_S = (0.2, 5.0)  # the first and the longest wait between tries for a node gone
CONCURRENCY_MAX = 256  # slots of one executor
JOIN_POLL_S = 0.5
HEARTBEAT_S = 1.0
LOG_CALL_LINES_MAX = 256  # the node takes at most this many lines per call
CLOSES_MAX = 256  # results committed in one request
DRAIN_S = 30.0  # the longest an executor that stops waits for its results to commit


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
        fs_dir: Path | None = None,
    ) -> None:
        """`functions`: a runner (`ProcessRunner(path)` runs them in a worker process
        that can be killed), or a dict of functions to call on threads of this one.
        `concurrency`: how many calls run at once, each in a slot of its own (a worker
        process each, for a `ProcessRunner`), with a long-poll of its own for work.
        `reconnect`: a fresh client of the same node (its handle read again); with it,
        an executor whose node went away (killed, restarted, paused) waits for the node
        and registers again instead of exiting. `fs_dir`: the root of the spec's `fs`
        dirs (synced before and after each run, sdk/spec_fs.py) and a worker process's
        working directory during a run."""
        if not 1 <= concurrency <= CONCURRENCY_MAX:
            raise ColonyError(f"concurrency must be 1..{CONCURRENCY_MAX}, not {concurrency}")
        self.client = client
        self.runner = ThreadRunner(functions) if isinstance(functions, dict) else functions
        self.runners = [self.runner, *_more_runners(self.runner, concurrency - 1)]
        self.executortype = executortype
        self.name = name
        self.heartbeat_s = heartbeat_s
        self.fs_dir = fs_dir
        if fs_dir is not None:
            fs_dir.mkdir(parents=True, exist_ok=True)
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
        then detach, once every result is answered, so the node releases at once what
        this executor held. Each slot runs on a thread of its own; the calling thread
        waits (and takes the interrupt)."""
        tickets = _Tickets(max_processes)
        failures: list[BaseException] = []
        closer = _Closer(self)
        slots = [
            threading.Thread(
                target=self._serve_slot,
                args=(runner, tickets, closer, failures),
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
            closer.stop(DRAIN_S)
            self.detach()
            raise
        else:
            closer.stop(DRAIN_S)
            self.detach()
        finally:
            self._stop.set()
            closer.stop(0)
            self.close()

    def _serve_slot(
        self, runner: Runner, tickets: _Tickets, closer: _Closer, failures: list[BaseException]
    ) -> None:
        while not self._stop.is_set():
            if not tickets.take():
                return
            seen = self.id
            try:
                proc = self._assign()
                if proc is None:
                    tickets.give_back()
                    continue
                result = self._serve(runner, proc)
                if result is not None:
                    closer.put(result)
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
        """Wait for one process, run it (in `runner`, by default the first slot's) and
        commit its outcome; False when none came within the poll."""
        proc = self._assign()
        if proc is None:
            return False
        result = self._serve(runner or self.runner, proc)
        if result is not None:
            self._commit(result)
        return True

    def _assign(self) -> dict[str, Any] | None:
        reply = self.client.post(f"/v1/executors/{self.id}/assign", {"timeout_s": ASSIGN_TIMEOUT_S})
        proc: dict[str, Any] | None = reply.get("process") or None
        return proc

    def _serve(self, runner: Runner, proc: dict[str, Any]) -> dict[str, Any] | None:
        """Run `proc`: the result to commit (`{processid, success, output | errors,
        elapsed_s}`), or None when the run was abandoned (nothing is committed)."""
        pid, spec = proc["processid"], proc["spec"]
        if spec["funcname"] not in runner.names:
            errors = [f"{self.name} has no function {spec['funcname']!r}"]
            return {"processid": pid, "success": False, "errors": errors, "elapsed_s": 0.0}
        fs_dir = "" if self.fs_dir is None else str(self.fs_dir.resolve())
        ctx = ProcessContext(pid, spec, list(proc.get("input") or []), fs_dir)
        t0 = time.monotonic()
        outcome = self._run_with_fs(runner, ctx)
        elapsed_s = round(time.monotonic() - t0, 6)
        with self._lock:
            self.done += 1
            if "abandoned" in outcome:
                self.abandoned += 1
        if "abandoned" in outcome:
            log.warning("process %s %s: abandoned, nothing committed", pid, outcome["abandoned"])
            return None
        if "error" in outcome:
            return {"processid": pid, "success": False, "errors": [outcome["error"]],
                    "elapsed_s": elapsed_s}  # fmt: skip
        return {"processid": pid, "success": True, "output": outcome["output"],
                "elapsed_s": elapsed_s}  # fmt: skip

    def _run_with_fs(self, runner: Runner, ctx: ProcessContext) -> dict[str, Any]:
        """`_run`, with the spec's fs dirs synced down before and up after."""
        if self.fs_dir is None:
            return self._run(runner, ctx)
        try:
            spec_fs = SpecFs(self.client, self.fs_dir, ctx.spec, ctx.processid)
        except ColonyError as exc:
            return {"error": str(exc)}
        if not spec_fs.wanted:
            return self._run(runner, ctx)
        failed = self._heartbeating(ctx, spec_fs.before)
        if failed is not None:
            return failed
        outcome = self._run(runner, ctx)
        if "abandoned" in outcome:
            return outcome
        failed = self._heartbeating(ctx, spec_fs.after)
        return outcome if failed is None else failed

    def _heartbeating(self, ctx: ProcessContext, work: Callable[[], None]) -> dict[str, Any] | None:
        """Run `work` (a sync) while heartbeating the lease: None when it succeeded, else
        the outcome to report (its error, or abandoned when the lease was lost)."""
        errors: list[str] = []

        def target(_: Run) -> None:
            try:
                work()
            except (ColonyError, OSError) as exc:
                errors.append(str(exc))

        run = Run(target, f"fs-{ctx.processid[:8]}")
        while True:
            run.join(self.heartbeat_s)
            if run.done:
                return {"error": errors[0]} if errors else None
            status = self._flush(ctx)
            if status != "held":
                return {"abandoned": f"was {status} during its fs sync"}

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

    def _commit(self, result: dict[str, Any]) -> None:
        """Close or fail one run through the node and wait for the voters' answer."""
        verb = "close" if result["success"] else "fail"
        body = {k: v for k, v in result.items() if k in ("processid", "output", "errors")}
        try:
            reply = self.client.post(f"/v1/executors/{self.id}/{verb}", body)
        except ColonyError as exc:
            log.warning("%s of %s not committed: %s", _what(result), result["processid"], exc)
            return
        self._report(result, reply)

    def commit_many(self, results: list[dict[str, Any]]) -> None:
        """Close or fail many runs in one request; each answer is reported as `_commit`
        reports its one."""
        try:
            reply = self.client.post(f"/v1/executors/{self.id}/closes", {"results": results})
        except ColonyError as exc:
            for result in results:
                log.warning("%s of %s not committed: %s", _what(result), result["processid"],
                            exc)  # fmt: skip
            return
        for result, answer in zip(results, reply["results"], strict=False):
            self._report(result, answer)

    def _report(self, result: dict[str, Any], reply: dict[str, Any]) -> None:
        """Say so when the voters refused a result (the run ended while the process was
        cancelled, or its lease passed to another executor) or the node did."""
        if reply.get("committed"):
            return
        with self._lock:
            self.refused += 1
        pid, what = result["processid"], _what(result)
        if "error" in reply:
            log.warning("%s of %s not committed: %s", what, pid, reply["error"]["message"])
        elif reply.get("state") == "CANCELLED":
            log.warning("process %s was cancelled: its %s was not committed", pid, what)
        else:
            log.warning("%s of %s not committed: the voters refused it (%s)", what, pid,
                        reply.get("reason"))  # fmt: skip


def _what(result: dict[str, Any]) -> str:
    return "result" if result["success"] else "failure"


class _Closer:
    """Commits finished runs off the slots' threads: whatever results are ready go in
    one request, so a slot asks for its next process while its last result commits, and
    the results of a busy executor reach the voters in batches."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._cond = threading.Condition()
        self._queue: list[dict[str, Any]] = []
        self._busy = False  # a request is out
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="closer", daemon=True)
        self._thread.start()

    def put(self, result: dict[str, Any]) -> None:
        with self._cond:
            self._queue.append(result)
            self._cond.notify_all()

    def stop(self, drain_s: float) -> None:
        """Commit what is queued (waiting up to `drain_s`), then end the thread."""
        deadline = time.monotonic() + drain_s
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            while (self._queue or self._busy) and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            if self._queue:
                log.warning("%d results not committed: the node did not answer in %.0f s",
                            len(self._queue), drain_s)  # fmt: skip
                self._queue.clear()
                self._cond.notify_all()
        self._thread.join(max(0.0, deadline - time.monotonic()) + 0.1)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue[:CLOSES_MAX], self._queue[CLOSES_MAX:]
                self._busy = True
            try:
                self._executor.commit_many(batch)
            except Exception:  # a bug: say so, keep committing the others
                log.exception("committing %d results failed", len(batch))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


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
