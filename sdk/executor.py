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
import time
from collections.abc import Callable
from typing import Any

from colonynode.core.errors import ColonyError
from colonynode.node.apiclient import ApiClient
from colonynode.sdk.context import ProcessContext, route_stdout
from colonynode.sdk.functions import FunctionError
from colonynode.sdk.runners import Run, Runner, ThreadRunner

__all__ = ["Executor"]

log = logging.getLogger(__name__)

ASSIGN_TIMEOUT_S = 10.0
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
    ) -> None:
        """`functions`: a runner (`ProcessRunner(path)` runs them in a worker process
        that can be killed), or a dict of functions to call on threads of this one."""
        self.client = client
        self.runner = ThreadRunner(functions) if isinstance(functions, dict) else functions
        self.executortype = executortype
        self.name = name
        self.heartbeat_s = heartbeat_s
        self.done = 0
        self.abandoned = 0
        self.refused = 0  # results the voters would not commit
        self.id = self._register()
        route_stdout()

    def _register(self) -> str:
        reply = self.client.post(
            "/v1/executors",
            {"name": self.name, "executortype": self.executortype,
             "functions": sorted(self.runner.names)},
        )  # fmt: skip
        return str(reply["executor_id"])

    def run_forever(self, max_processes: int | None = None) -> None:
        """Serve until `max_processes` ran, or until interrupted (KeyboardInterrupt):
        then detach, so the node releases at once what this executor held."""
        try:
            while max_processes is None or self.done < max_processes:
                try:
                    self.run_one()
                except ColonyError as exc:
                    if "register again" not in str(exc):
                        raise
                    log.warning("%s; registering again", exc)  # the node restarted
                    self.id = self._register()
        except KeyboardInterrupt:
            self.detach()
            raise
        else:
            self.detach()
        finally:
            self.close()

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

    def run_one(self) -> bool:
        """Wait for one process and run it; False when none came within the poll."""
        reply = self.client.post(f"/v1/executors/{self.id}/assign", {"timeout_s": ASSIGN_TIMEOUT_S})
        proc = reply.get("process")
        if not proc:
            return False
        pid, spec = proc["processid"], proc["spec"]
        if spec["funcname"] not in self.runner.names:
            self._fail(pid, [f"{self.name} has no function {spec['funcname']!r}"])
            return True
        ctx = ProcessContext(pid, spec, list(proc.get("input") or []))
        outcome = self._run(ctx)
        self.done += 1
        if "abandoned" in outcome:
            self.abandoned += 1
            log.warning("process %s %s: abandoned, nothing committed", pid, outcome["abandoned"])
        elif "error" in outcome:
            self._fail(pid, [outcome["error"]])
        else:
            self._close(pid, outcome["output"])
        return True

    def _run(self, ctx: ProcessContext) -> dict[str, Any]:
        spec = ctx.spec
        limit_s = spec["maxexectime"] if spec["maxexectime"] > 0 else None
        deadline = None if limit_s is None else time.monotonic() + limit_s
        try:
            run = self.runner.start(ctx, [*spec["args"], *ctx.input], spec["kwargs"])
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
                self._stop(ctx, run)
                self._flush(ctx, final=True)
                return {"abandoned": f"ran past maxexectime ({limit_s} s)"}
            status = self._flush(ctx)
            if status != "held":
                self._stop(ctx, run)
                return {"abandoned": f"was {status} (the node no longer holds its lease)"}
        self._flush(ctx, final=True)
        return run.outcome

    def _stop(self, ctx: ProcessContext, run: Run) -> None:
        if self.runner.stop(run):
            log.info("process %s: its function was stopped", ctx.processid)
        else:
            log.info("process %s: its function runs on in a thread (--in-process)",
                     ctx.processid)  # fmt: skip

    def close(self) -> None:
        """Stop the worker process, if any."""
        self.runner.close()

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

    def _close(self, pid: str, output: list[Any]) -> None:
        self._commit("close", pid, {"processid": pid, "output": output})

    def _fail(self, pid: str, errors: list[str]) -> None:
        self._commit("fail", pid, {"processid": pid, "errors": errors})

    def _commit(self, verb: str, pid: str, body: dict[str, Any]) -> None:
        """Close or fail `pid` through the node; say so when the voters refuse it (the run
        ended while the process was cancelled, or its lease passed to another executor)."""
        what = "result" if verb == "close" else "failure"
        try:
            reply = self.client.post(f"/v1/executors/{self.id}/{verb}", body)
        except ColonyError as exc:
            log.warning("%s of %s not committed: %s", what, pid, exc)
            return
        if reply.get("committed"):
            return
        self.refused += 1
        if reply.get("state") == "CANCELLED":
            log.warning("process %s was cancelled: its %s was not committed", pid, what)
        else:
            log.warning("%s of %s not committed: the voters refused it (%s)", what, pid,
                        reply.get("reason"))  # fmt: skip
