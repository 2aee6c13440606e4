"""Serve a functions file's `@function`s through a node (`colonynode executor run`).

The executor attaches to the node of a data dir through its local API, long-polls for
processes the node claimed for it, runs each function (bounded by the spec's
maxexectime), and closes the process with its output or fails it with the error.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from colonynode.core.errors import ColonyError
from colonynode.node.apiclient import ApiClient
from colonynode.sdk.functions import run_function

__all__ = ["Executor"]

log = logging.getLogger(__name__)

ASSIGN_TIMEOUT_S = 10.0


class Executor:
    def __init__(
        self,
        client: ApiClient,
        functions: dict[str, Callable[..., Any]],
        executortype: str,
        name: str,
    ) -> None:
        self.client = client
        self.functions = functions
        reply = client.post(
            "/v1/executors",
            {"name": name, "executortype": executortype, "functions": sorted(functions)},
        )
        self.id = str(reply["executor_id"])
        self.name = name
        self.done = 0

    def run_forever(self, max_processes: int | None = None) -> None:
        while max_processes is None or self.done < max_processes:
            self.run_one()

    def run_one(self) -> bool:
        """Wait for one process and run it; False when none came within the poll."""
        reply = self.client.post(f"/v1/executors/{self.id}/assign", {"timeout_s": ASSIGN_TIMEOUT_S})
        proc = reply.get("process")
        if not proc:
            return False
        pid, spec = proc["processid"], proc["spec"]
        fn = self.functions.get(spec["funcname"])
        if fn is None:
            self._fail(pid, [f"{self.name} has no function {spec['funcname']!r}"])
            return True
        limit_s = spec["maxexectime"] if spec["maxexectime"] > 0 else None
        outcome: dict[str, Any] = {}

        def call() -> None:
            try:
                outcome["output"] = run_function(fn, spec["args"], spec["kwargs"])
            except Exception as exc:
                outcome["error"] = f"{type(exc).__name__}: {exc}"

        worker = threading.Thread(target=call, name=f"process-{pid[:8]}", daemon=True)
        worker.start()
        worker.join(limit_s)
        self.done += 1
        if worker.is_alive():
            # Not an explicit fail (that is never retried): the voters refuse to renew the
            # lease past maxexectime, so it expires and the process is retried elsewhere
            # until its retries are spent. The thread cannot be stopped; it is abandoned
            # and whatever it returns is never committed.
            log.warning("process %s ran past maxexectime (%s s): abandoned", pid, limit_s)
        elif "error" in outcome:
            self._fail(pid, [outcome["error"]])
        else:
            self._close(pid, outcome["output"])
        return True

    def _close(self, pid: str, output: list[Any]) -> None:
        try:
            self.client.post(f"/v1/executors/{self.id}/close", {"processid": pid, "output": output})
        except ColonyError as exc:
            log.warning("result of %s not committed: %s", pid, exc)

    def _fail(self, pid: str, errors: list[str]) -> None:
        try:
            self.client.post(f"/v1/executors/{self.id}/fail", {"processid": pid, "errors": errors})
        except ColonyError as exc:
            log.warning("failure of %s not committed: %s", pid, exc)
