"""A Python client of a node (`colonynode.sdk.Client`): submit, get, wait, list, logs,
cancel, workflows. It talks to the daemon of a data dir through its local API, like the
CLI, and imports no libp2p or trio.

    from colonynode.sdk import Client

    colony = Client("~/a")
    proc = colony.run("add", 1, 2, executortype="python")   # submit and wait
    assert proc["output"] == [3]
    list(colony.map("add", [1, 2], [10, 20], executortype="python"))  # [[11], [22]]

Many calls cost few requests: `submit_many` submits up to `SUBMIT_BATCH` specs in one
request (one quorum round and one durable write at the node for the lot), and
`as_completed` / `map` long-poll for whichever of many processes closes next, a request
per batch of results.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from colonynode.core.errors import ColonyError
from colonynode.core.process import parse_spec, parse_workflow
from colonynode.node.apiclient import ApiClient
from colonynode.sdk.fs import Fs

__all__ = ["Client", "ProcessFailed", "SubmitFailed", "WaitTimeout"]

CLOSED = ("SUCCESS", "FAILED", "CANCELLED")
POLL_S_MAX = 30.0  # one long-poll request waits at most this long
SUBMIT_BATCH = 1000  # specs in one request (the node's limit)
WAIT_BATCH = 10_000  # processes one long-poll watches (the node's limit)
MAP_WINDOW = 256  # processes `map` watches at a time, the next ones in order


class WaitTimeout(ColonyError):
    """The process was still open when the wait's timeout ran out."""


class ProcessFailed(ColonyError):
    """`run` of a process that closed FAILED or CANCELLED."""

    def __init__(self, process: dict[str, Any]) -> None:
        errors = "; ".join(process.get("errors") or []) or "no error given"
        super().__init__(f"process {process['processid']} {process['state']}: {errors}")
        self.process = process


class SubmitFailed(ColonyError):
    """`submit_many`: some specs were not acknowledged by a majority. `processes` holds
    the acknowledged ones (None where one failed), `errors` the failures by index."""

    def __init__(self, processes: list[dict[str, Any] | None], errors: dict[int, str]) -> None:
        first = min(errors)
        super().__init__(f"{len(errors)} of {len(processes)} submissions failed; "
                         f"the first, [{first}]: {errors[first]}")  # fmt: skip
        self.processes = processes
        self.errors = errors


class Client:
    def __init__(self, data_dir: str | Path | None = None, *, api: ApiClient | None = None) -> None:
        """The node of `data_dir` (default: $COLONYNODE_HOME or the platform's data dir)."""
        path = Path(data_dir).expanduser() if isinstance(data_dir, str) else data_dir
        self.api = api or ApiClient.for_data_dir(path, timeout_s=POLL_S_MAX + 30)

    def close(self) -> None:
        self.api.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def fs(self) -> Fs:
        """ColonyFS through this node: put, get, sync, ls, snapshots (sdk/fs.py)."""
        return Fs(self.api)

    # -- submitting ---------------------------------------------------------------------

    def submit(self, spec: dict[str, Any], *, wait_s: float = 0.0) -> dict[str, Any]:
        """Submit a ColonyOS function spec; the process once a majority of voters holds
        it. With `wait_s`, the same request then waits up to that long (at most
        `POLL_S_MAX`) for it to close: the process as it is then, closed or not."""
        parse_spec(spec)  # a bad spec fails here, naming the field
        body: dict[str, Any] = {"spec": spec}
        if wait_s > 0:
            body["wait_s"] = round(min(wait_s, POLL_S_MAX), 3)
        result: dict[str, Any] = self.api.post("/v1/processes", body)
        return result

    def submit_many(self, specs: Iterable[dict[str, Any]],
                    brief: bool = False) -> list[dict[str, Any]]:  # fmt: skip
        """Submit many function specs, `SUBMIT_BATCH` a request; the processes in order,
        each once a majority of voters holds it. A bad spec fails before any is sent;
        SubmitFailed if some were not acknowledged (the others were). `brief`: each
        process as its id and state only (cheaper for the node and the client)."""
        specs = list(specs)
        for i, spec in enumerate(specs):
            try:
                parse_spec(spec)
            except ColonyError as exc:
                raise type(exc)(f"specs[{i}]: {exc}") from None
        out: list[dict[str, Any] | None] = []
        errors: dict[int, str] = {}
        for start in range(0, len(specs), SUBMIT_BATCH):
            body: dict[str, Any] = {"specs": specs[start : start + SUBMIT_BATCH]}
            if brief:
                body["brief"] = True
            reply = self.api.post("/v1/processes/batch", body)
            for proc in reply["processes"]:
                if "error" in proc:
                    errors[len(out)] = proc["error"]["message"]
                    out.append(None)
                else:
                    out.append(proc)
        if errors:
            raise SubmitFailed(out, errors)
        return [p for p in out if p is not None]

    def map(self, funcname: str, *iterables: Iterable[Any], executortype: str,
            timeout_s: float | None = None, **spec: Any) -> Iterator[list[Any]]:  # fmt: skip
        """Like `concurrent.futures.Executor.map`: one process a tuple of arguments
        (`map("add", [1, 2], [10, 20], ...)` calls add(1, 10) and add(2, 20)), all
        submitted at once; yields each one's output list in the order of the arguments,
        raising ProcessFailed at a failed one. `timeout_s`: for the whole map."""
        conditions = {"executortype": executortype, **spec.pop("conditions", {})}
        specs = [{"funcname": funcname, "args": list(args), **spec, "conditions": conditions}
                 for args in zip(*iterables, strict=False)]  # fmt: skip
        pids = [p["processid"] for p in self.submit_many(specs, brief=True)]
        return self._in_order(pids, timeout_s)

    def _in_order(self, pids: list[str], timeout_s: float | None) -> Iterator[list[Any]]:
        """Outputs in the order of `pids`, watching a window of the next `MAP_WINDOW`
        open ones (the node's cost of a long-poll grows with what it watches)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        done: dict[str, dict[str, Any]] = {}
        i = 0
        while i < len(pids):
            if pids[i] not in done:
                window = [p for p in pids[i : i + MAP_WINDOW] if p not in done]
                for proc in self._closed_among(window, deadline, len(pids) - i, brief=True):
                    done[proc["processid"]] = proc
                continue
            proc = done.pop(pids[i])
            i += 1
            if proc["state"] != "SUCCESS":
                raise ProcessFailed(self.get(proc["processid"]))  # the whole process
            yield list(proc.get("output") or [])

    def as_completed(self, processids: Iterable[str],
                     timeout_s: float | None = None) -> Iterator[dict[str, Any]]:  # fmt: skip
        """Each process as it closes (SUCCESS, FAILED or CANCELLED), first closed first;
        WaitTimeout if some are still open after `timeout_s` (None: no limit)."""
        left = dict.fromkeys(processids)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while left:
            for proc in self._closed_among(list(left)[:WAIT_BATCH], deadline, len(left)):
                if proc["processid"] in left:
                    del left[proc["processid"]]
                    yield proc

    def _closed_among(self, pids: list[str], deadline: float | None, open_n: int,
                      brief: bool = False) -> list[dict[str, Any]]:  # fmt: skip
        """One long-poll: those of `pids` closed once one is (maybe none, at the poll's
        end); WaitTimeout past `deadline` (`open_n`: how many are open, to say so)."""
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise WaitTimeout(f"{open_n} processes still open when the timeout ran out")
        poll_s = POLL_S_MAX if remaining is None else min(remaining, POLL_S_MAX)
        body: dict[str, Any] = {"processids": pids, "timeout_s": round(poll_s, 3)}
        if brief:
            body["brief"] = True
        closed: list[dict[str, Any]] = self.api.post("/v1/processes/wait", body)["processes"]
        return [p for p in closed if p["state"] in CLOSED]

    def submit_workflow(self, workflow: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
        """Submit a ColonyOS WorkflowSpec (or a list of its function specs):
        `{processgraphid, processes}`."""
        body = {"functionspecs": workflow} if isinstance(workflow, list) else workflow
        parse_workflow(body)
        result: dict[str, Any] = self.api.post("/v1/workflows", body)
        return result

    def run(self, funcname: str, *args: Any, executortype: str, timeout_s: float = 60.0,
            **spec: Any) -> dict[str, Any]:  # fmt: skip
        """Submit one call and wait for it; the process on SUCCESS, else ProcessFailed."""
        conditions = {"executortype": executortype, **spec.pop("conditions", {})}
        deadline = time.monotonic() + timeout_s
        done = self.submit({"funcname": funcname, "args": list(args), **spec,
                            "conditions": conditions}, wait_s=timeout_s)  # fmt: skip
        if done["state"] not in CLOSED:  # one request submits and waits; longer: wait on
            done = self.wait(done["processid"], max(0.0, deadline - time.monotonic()))
        if done["state"] != "SUCCESS":
            raise ProcessFailed(done)
        return done

    # -- reading ------------------------------------------------------------------------

    def get(self, processid: str, *, consistent: bool = False) -> dict[str, Any]:
        params = {"consistent": "1"} if consistent else {}
        result: dict[str, Any] = self.api.get(f"/v1/processes/{processid}", **params)
        return result

    def list(self, state: str | None = None, limit: int = 100, offset: int = 0,
             **filters: str) -> list[dict[str, Any]]:  # fmt: skip
        """Newest first; filters: executortype, funcname, label, processgraphid."""
        params: dict[str, Any] = {"limit": limit, "offset": offset, **filters}
        if state:
            params["state"] = state
        result: list[dict[str, Any]] = self.api.get("/v1/processes", **params)
        return result

    def wait(self, processid: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """The process once closed (SUCCESS, FAILED or CANCELLED); WaitTimeout if not by
        `timeout_s`. Long-polls the node: no busy polling."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            proc: dict[str, Any] | None
            try:
                poll_s = round(max(0.0, min(left, POLL_S_MAX)), 3)
                proc = self.api.get(f"/v1/processes/{processid}/wait", timeout_s=poll_s)
            except ColonyError as exc:
                if getattr(exc, "status", 0) != 404 or left <= 0:
                    raise
                proc = None  # not gossiped to this node yet
            if proc is not None and proc["state"] in CLOSED:
                return proc
            if time.monotonic() >= deadline:
                state = proc["state"] if proc else "unknown to this node"
                raise WaitTimeout(f"process {processid} is still {state} after {timeout_s:g} s")

    def logs(self, processid: str, *, follow: bool = False) -> Iterator[dict[str, Any]]:
        """The process's log lines `{time_ns, executor, epoch, message}`; with `follow`,
        keeps yielding new ones until the process is closed."""
        after = 0
        while True:
            page = self.api.get(f"/v1/processes/{processid}/logs", after=after,
                                wait_s=POLL_S_MAX if follow else 0)  # fmt: skip
            yield from page["logs"]
            after = page["next"]
            if not follow or (page["closed"] and not page["logs"]):
                return

    def cancel(self, processid: str) -> dict[str, Any]:
        """Cancel a process (its submitting node or the owner's): `{cancelled, reason, state}`."""
        result: dict[str, Any] = self.api.post(f"/v1/processes/{processid}/cancel")
        return result

    # -- crons --------------------------------------------------------------------------

    def add_cron(self, name: str, workflow: dict[str, Any] | builtins.list[dict[str, Any]], *,
                 cron: str = "", interval_s: int = -1, random: bool = False,
                 wait_previous: bool = False) -> dict[str, Any]:  # fmt: skip
        """A cron that submits `workflow` (a WorkflowSpec, or its list of function specs)
        on a six-field expression (seconds first) or every `interval_s`; answered once a
        majority of voters holds it. Every tick fires once in the colony."""
        body = {"functionspecs": workflow} if isinstance(workflow, list) else workflow
        result: dict[str, Any] = self.api.post("/v1/crons", {
            "name": name, "cronexpression": cron, "interval": interval_s, "random": random,
            "waitforprevprocessgraph": wait_previous, "workflowspec": body,
        })  # fmt: skip
        return result

    def crons(self) -> builtins.list[dict[str, Any]]:
        result: builtins.list[dict[str, Any]] = self.api.get("/v1/crons")
        return result

    def get_cron(self, cronid: str) -> dict[str, Any]:
        """The cron with its `nextrun`, `lastrun` and `prevprocessgraphid`."""
        result: dict[str, Any] = self.api.get(f"/v1/crons/{cronid}")
        return result

    def remove_cron(self, cronid: str) -> None:
        self.api.post(f"/v1/crons/{cronid}/remove")

    def run_cron(self, cronid: str) -> dict[str, Any]:
        """Fire the cron now: `{processgraphid, processes}`."""
        result: dict[str, Any] = self.api.post(f"/v1/crons/{cronid}/run")
        return result

    # -- generators ---------------------------------------------------------------------

    def add_generator(self, name: str, workflow: dict[str, Any] | builtins.list[dict[str, Any]],
                      *, trigger: int, timeout_s: float = -1) -> dict[str, Any]:  # fmt: skip
        """A generator: every `trigger` packed args (or, with `timeout_s`, a queue whose
        oldest arg waited that long) submit `workflow` with its roots' args replaced by
        those args, in pack order. Each packed arg is used once."""
        body = {"functionspecs": workflow} if isinstance(workflow, list) else workflow
        result: dict[str, Any] = self.api.post("/v1/generators", {
            "name": name, "workflowspec": body, "trigger": trigger, "timeout": timeout_s,
        })  # fmt: skip
        return result

    def pack(self, generatorid: str, arg: str) -> dict[str, Any]:
        """Queue `arg`; returns once a majority of voters holds it: `{generatorid, argid}`."""
        result: dict[str, Any] = self.api.post(f"/v1/generators/{generatorid}/pack", {"arg": arg})
        return result

    def generators(self) -> builtins.list[dict[str, Any]]:
        result: builtins.list[dict[str, Any]] = self.api.get("/v1/generators")
        return result

    def get_generator(self, generatorid: str) -> dict[str, Any]:
        result: dict[str, Any] = self.api.get(f"/v1/generators/{generatorid}")
        return result

    def remove_generator(self, generatorid: str) -> None:
        self.api.post(f"/v1/generators/{generatorid}/remove")
