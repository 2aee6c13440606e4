"""A Python client of a node (`colonynode.sdk.Client`): submit, get, wait, list, logs,
cancel, workflows. It talks to the daemon of a data dir through its local API, like the
CLI, and imports no libp2p or trio.

    from colonynode.sdk import Client

    colony = Client("~/a")
    proc = colony.run("add", 1, 2, executortype="python")   # submit and wait
    assert proc["output"] == [3]
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from colonynode.core.errors import ColonyError
from colonynode.core.process import parse_spec, parse_workflow
from colonynode.node.apiclient import ApiClient

__all__ = ["Client", "ProcessFailed", "WaitTimeout"]

CLOSED = ("SUCCESS", "FAILED", "CANCELLED")
POLL_S_MAX = 30.0  # one long-poll request waits at most this long


class WaitTimeout(ColonyError):
    """The process was still open when the wait's timeout ran out."""


class ProcessFailed(ColonyError):
    """`run` of a process that closed FAILED or CANCELLED."""

    def __init__(self, process: dict[str, Any]) -> None:
        errors = "; ".join(process.get("errors") or []) or "no error given"
        super().__init__(f"process {process['processid']} {process['state']}: {errors}")
        self.process = process


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

    # -- submitting ---------------------------------------------------------------------

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Submit a ColonyOS function spec; the process once a majority of voters holds it."""
        parse_spec(spec)  # a bad spec fails here, naming the field
        result: dict[str, Any] = self.api.post("/v1/processes", {"spec": spec})
        return result

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
        proc = self.submit({"funcname": funcname, "args": list(args), **spec,
                            "conditions": conditions})  # fmt: skip
        done = self.wait(proc["processid"], timeout_s)
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
