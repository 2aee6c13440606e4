"""The daemon's answers to the local API about work and data: lease primitives, ColonyFS
records in the DHT, processes and executors (docs/api.md)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import trio

from colonynode.consensus.messages import Outcome, ProcessTerms
from colonynode.core.errors import ColonyError, ValidationError
from colonynode.core.ids import peer_id_str
from colonynode.core.process import FunctionSpec, State, parse_spec, parse_workflow, spec_to_json
from colonynode.gossip.records import open_body
from colonynode.node._base import NodeBase, nid_of, pid_of
from colonynode.node.api import NotFound, PermissionDenied
from colonynode.node.dht_service import DhtService
from colonynode.node.leases import LeaseService, result_json
from colonynode.node.processes import PROCESS_KIND, new_pid, terms_of
from colonynode.node.scheduler import Scheduler

WAIT_MAX_S = 60.0  # the longest a long-poll (wait, logs) holds a request

__all__ = ["ServicesApi"]


class ServicesApi(NodeBase):
    # -- lease primitives (the scheduler of the end-to-end issue builds on these) -------

    def _lease_service(self) -> LeaseService:
        if self.leases is None:
            raise ColonyError("the lease service is not running yet")
        return self.leases

    async def lease_submit(self, body: dict[str, Any]) -> dict[str, Any]:
        terms = ProcessTerms(
            pid=pid_of(body.get("pid")),
            submitter=self.identity.node_id,
            executortype=str(body.get("executortype", "")),
            priority=int(body.get("priority", 0)),
            seq=time.time_ns(),
            maxexectime_s=float(body.get("maxexectime_s", 0)),
            maxwaittime_s=float(body.get("maxwaittime_s", 0)),
            maxretries=int(body.get("maxretries", 0)),
        )
        return result_json(await self._lease_service().submit(terms))

    async def lease_claim(self, body: dict[str, Any]) -> dict[str, Any]:
        pids = body.get("pids")
        if not isinstance(pids, list) or not 0 < len(pids) <= 1024:
            raise ValidationError("pids must be a list of 1..1024 hex process ids")
        lease_s = body.get("lease_s")
        results = await self._lease_service().claim(
            [pid_of(p) for p in pids], None if lease_s is None else float(lease_s)
        )
        return {"results": [result_json(r) for r in results]}

    async def lease_close(self, body: dict[str, Any]) -> dict[str, Any]:
        outcome = str(body.get("outcome", "SUCCESS")).upper()
        if outcome not in Outcome.__members__:
            raise ValidationError("outcome must be SUCCESS or FAILED")
        errors = tuple(str(e) for e in body.get("errors", ()))
        closed = await self._lease_service().close(
            pid_of(body.get("pid")), Outcome[outcome], body.get("output"), errors
        )
        return result_json(closed)

    async def lease_read(self, pid: str) -> dict[str, Any]:
        return result_json(await self._lease_service().read(pid_of(pid)))

    # -- ColonyFS records in the DHT ---------------------------------------------------

    def _dht_service(self) -> DhtService:
        if self.dht is None:
            raise ColonyError("the DHT is not running yet")
        return self.dht

    async def fs_add_revision(self, body: dict[str, Any]) -> dict[str, Any]:
        from colonynode.dht import FileRevision

        label, name = str(body.get("label", "")), str(body.get("name", ""))
        revision = FileRevision(
            id=str(body.get("id", "")),
            sha256=bytes.fromhex(str(body.get("sha256", ""))),
            size=int(body.get("size", 0)),
            chunks=tuple(bytes.fromhex(str(c)) for c in body.get("chunks", ())),
            author=self.identity.node_id,
            time_ns=time.time_ns(),
        )
        result = await self._dht_service().fs_put(label, name, revision)
        return {
            "ok": result.ok,
            "stored": result.stored,
            "seq": result.seq,
            "reason": result.reason,
        }

    async def find_peer(self, peer_id: str) -> dict[str, Any]:
        """A member's addresses from its signed /peer/ record in the DHT."""
        nid = nid_of(peer_id)
        addrs = await self._dht_service().find_peer(nid)
        return {"peer_id": peer_id, "found": bool(addrs), "addrs": list(addrs)}

    async def fs_record(self, label: str, name: str) -> dict[str, Any]:
        result = await self._dht_service().fs_get(label, name)
        record = result.value
        revisions = [] if record is None else [
            {"id": r.id, "sha256": r.sha256.hex(), "size": r.size,
             "chunks": [c.hex() for c in r.chunks], "author": peer_id_str(r.author),
             "time_ns": r.time_ns}
            for r in record.revisions
        ]  # fmt: skip
        return {
            "found": record is not None,
            "label": label,
            "name": name,
            "latest": None if record is None else record.latest,
            "revisions": revisions,
            "answers": result.answers,
            "hops": result.hops,
        }

    # -- processes ----------------------------------------------------------------------

    def _load_processes(self) -> None:
        """Rebuild the process view from the gossip records this node holds."""
        assert self.gossip is not None
        for author, hwm in sorted(self.gossip.digest().items()):
            for seq in range(1, hwm + 1):
                env = self.gossip.record(author, seq)
                if env is None:
                    continue
                body = open_body(env)
                if body.kind.startswith(PROCESS_KIND):
                    self.processes.on_record(author, body.kind, body.body, seq=seq)

    def _process_changed(self, pid: bytes) -> None:
        """Wake every long-poll (wait, logs --follow) and the claim rounds: something
        about a process changed."""
        if self.scheduler is not None:
            self.scheduler.wake(pid)
        self._processes_changed.set()
        self._processes_changed = trio.Event()

    async def _until_change(self, deadline_s: float) -> bool:
        """Wait for the next change to any process, or the deadline (False)."""
        event = self._processes_changed
        with trio.move_on_at(deadline_s):
            await event.wait()
            return True
        return False

    def _may_submit(self) -> None:
        roster = self.membership.roster
        if roster is None or not roster.has_role(self.identity.node_id, "submitter"):
            raise PermissionDenied("this node does not have the submitter role")
        if self.gossip is None or self._gossip_driver is None:
            raise ColonyError("gossip is not running yet")

    def _publish_submission(self, record: dict[str, Any]) -> None:
        """Durable here (gossip ledger) before anything is sent; acknowledged to the user
        only once a majority of voters holds the register."""
        assert self.gossip is not None
        self.gossip.publish(trio.current_time(), PROCESS_KIND, record)
        self.processes.on_record(self.identity.node_id, PROCESS_KIND, record)

    async def _acknowledge(self, pid: bytes, spec: FunctionSpec, submitted_ns: int) -> None:
        ack = await self._lease_service().submit(
            terms_of(pid, spec, self.identity.node_id, submitted_ns)
        )
        if not ack.acked:
            raise ColonyError(
                f"process {pid.hex()} was not acknowledged by a majority of voters"
                f" ({ack.reason.name if ack.reason is not None else 'no answer'})"
            )

    async def submit_process(self, body: dict[str, Any]) -> dict[str, Any]:
        self._may_submit()
        spec = parse_spec(body.get("spec"))
        assert self._gossip_driver is not None
        pid, submitted = new_pid(), time.time_ns()
        record = {"processid": pid.hex(), "spec": spec_to_json(spec), "submission_ns": submitted}
        self._publish_submission(record)
        await self._gossip_driver.persisted()  # on disk here before the voters hear of it
        await self._acknowledge(pid, spec, submitted)
        view = self.processes.get(pid)
        assert view is not None
        return view

    async def submit_workflow(self, body: dict[str, Any]) -> dict[str, Any]:
        """A ColonyOS WorkflowSpec: a DAG of specs by nodename and dependencies. Every
        process is acknowledged by a majority before the answer; children wait for their
        parents (their input is the parents' outputs)."""
        self._may_submit()
        specs = parse_workflow(body)
        assert self._gossip_driver is not None
        graph, submitted = new_pid(), time.time_ns()
        pids = {s.nodename: new_pid() for s in specs}
        children: dict[str, list[str]] = {s.nodename: [] for s in specs}
        for s in specs:
            for dep in s.conditions.dependencies:
                children[dep].append(s.nodename)
        for s in specs:
            self._publish_submission({
                "processid": pids[s.nodename].hex(), "spec": spec_to_json(s),
                "submission_ns": submitted, "processgraphid": graph.hex(),
                "parents": [pids[d].hex() for d in s.conditions.dependencies],
                "children": [pids[c].hex() for c in children[s.nodename]],
            })  # fmt: skip
        await self._gossip_driver.persisted()
        refused: list[ColonyError] = []

        async def acknowledge(s: FunctionSpec) -> None:
            try:
                await self._acknowledge(pids[s.nodename], s, submitted)
            except ColonyError as exc:
                refused.append(exc)

        async with trio.open_nursery() as nursery:
            for s in specs:
                nursery.start_soon(acknowledge, s)
        if refused:
            raise refused[0]
        views = [self.processes.get(pids[s.nodename]) for s in specs]
        return {"processgraphid": graph.hex(), "processes": views}

    async def get_process(self, pid_hex: str, consistent: bool) -> dict[str, Any]:
        pid = pid_of(pid_hex)
        view = self.processes.get(pid)
        if view is None and not consistent:
            raise NotFound(f"no process {pid_hex} is known to this node")
        if consistent:
            read = await self._lease_service().read(pid)
            if read.view is None and view is None:
                raise NotFound(f"no process {pid_hex} is known to a majority of voters")
            view = dict(view or {"processid": pid_hex})
            if read.view is not None:
                reg = read.view
                view.update(
                    state=reg.state.name,
                    epoch=reg.epoch,
                    retries=reg.retries,
                    output=reg.output if reg.output is not None else view.get("output", []),
                    errors=list(reg.errors),
                    executor=None if reg.holder is None else peer_id_str(reg.holder),
                )
            view["consistent"] = {"committed": read.committed, "answered": read.answered}
        assert view is not None
        return view

    async def wait_process(self, pid_hex: str, timeout_s: float) -> dict[str, Any]:
        """Long-poll: the process once it is closed, or as it is when `timeout_s` ran out
        (a process not heard of by then is a 404)."""
        pid = pid_of(pid_hex)
        deadline = trio.current_time() + min(max(timeout_s, 0.0), WAIT_MAX_S)
        while True:
            view = self.processes.get(pid)
            if view is not None and State[view["state"]].closed:
                return view
            if not await self._until_change(deadline):
                if view is None:
                    raise NotFound(f"no process {pid_hex} is known to this node")
                return view

    async def process_logs(self, pid_hex: str, after: int, wait_s: float) -> dict[str, Any]:
        """Log lines from the `after`-th log record on (in the order this node got them);
        with `wait_s`, wait that long for a first new one unless the process is closed."""
        pid = pid_of(pid_hex)
        deadline = trio.current_time() + min(max(wait_s, 0.0), WAIT_MAX_S)
        after = max(0, after)
        while True:
            state = self.processes.state_of(pid)
            if state is None:
                raise NotFound(f"no process {pid_hex} is known to this node")
            index = self.processes.log_index(pid)
            closed = state.closed
            if len(index) > after or closed or not await self._until_change(deadline):
                break
        assert self.gossip is not None
        lines: list[dict[str, Any]] = []
        for author, seq in index[after:]:
            env = self.gossip.record(author, seq)
            if env is None:  # compacted after its retention
                continue
            rec = open_body(env).body
            for text in rec.get("lines", ()):
                lines.append({"time_ns": rec.get("time_ns"), "executor": rec.get("executor"),
                              "epoch": rec.get("epoch"), "message": text})  # fmt: skip
        return {"processid": pid_hex, "logs": lines, "next": len(index), "closed": closed}

    async def cancel_process(self, pid_hex: str) -> dict[str, Any]:
        pid = pid_of(pid_hex)
        view = self.processes.get(pid)
        if view is None:
            raise NotFound(f"no process {pid_hex} is known to this node")
        roster = self.membership.roster
        owner = roster is not None and roster.owner == self.identity.node_id
        if not owner and not self.processes.submitted_by(pid, self.identity.node_id):
            submitter = self.processes.submitter_of(pid)
            who = roster.member(submitter) if roster and submitter else None
            raise PermissionDenied(
                f"only the node that submitted {pid_hex} ({who.name if who else 'unknown'})"
                " or the colony owner's node may cancel it"
            )
        if State[view["state"]].closed:
            return {"processid": pid_hex, "cancelled": False, "reason": "CLOSED",
                    "state": view["state"]}  # fmt: skip
        result = await self._sched().cancel(pid, self._my_name())
        state = self.processes.state_of(pid)
        result["state"] = state.name if state is not None else view["state"]
        return result

    def _publish_process(self, kind: str, body: dict[str, Any]) -> None:
        if self.gossip is not None and self._gossip_driver is not None:
            self.gossip.publish(trio.current_time(), kind, body)
            self._gossip_driver.kick()

    def _my_name(self) -> str:
        roster = self.membership.roster
        me = roster.member(self.identity.node_id) if roster else None
        return me.name if me else self.settings.name

    def _sched(self) -> Scheduler:
        if self.scheduler is None:
            raise ColonyError("the scheduler is not running yet")
        return self.scheduler

    async def executor_register(self, body: dict[str, Any]) -> dict[str, Any]:
        roster = self.membership.roster
        if roster is None or not roster.has_role(self.identity.node_id, "executor"):
            raise PermissionDenied("this node does not have the executor role")
        return self._sched().register(body)

    async def executor_assign(self, executor_id: str, body: dict[str, Any]) -> dict[str, Any]:
        proc = await self._sched().assign(executor_id, float(body.get("timeout_s", 10)))
        return {"process": proc}

    async def executor_close(
        self, executor_id: str, body: dict[str, Any], success: bool
    ) -> dict[str, Any]:
        errors = [str(e) for e in body.get("errors", ())]
        return await self._sched().close(
            executor_id, pid_of(body.get("processid")), success, body.get("output"), errors
        )

    async def executor_detach(self, executor_id: str) -> dict[str, Any]:
        return await self._sched().detach(executor_id)

    async def executor_heartbeat(self, executor_id: str) -> dict[str, Any]:
        return self._sched().heartbeat(executor_id)

    async def executor_log(self, executor_id: str, body: dict[str, Any]) -> dict[str, Any]:
        pid = pid_of(body.get("processid"))
        return self._sched().log_lines(executor_id, pid, body.get("lines"))

    async def executor_attribute(self, executor_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._sched().add_attribute(executor_id, pid_of(body.get("processid")), body)

    def list_processes(
        self, state: str | None, limit: int, offset: int = 0, filters: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """This node's view, newest first, filtered by state and by `filters`:
        executortype, funcname, label, processgraphid (exact matches)."""
        wanted = None
        if state is not None:
            if state.upper() not in State.__members__:
                raise ValidationError(f"state must be one of {', '.join(State.__members__)}")
            wanted = State[state.upper()]
        want = {k: v for k, v in (filters or {}).items() if v}
        unknown = set(want) - set(LIST_FILTERS)
        if unknown:
            first = sorted(unknown)[0]
            raise ValidationError(f"unknown filter {first}: use {', '.join(LIST_FILTERS)}")

        def match(entry: dict[str, Any]) -> bool:
            return all(LIST_FILTERS[k](entry) == v for k, v in want.items())

        return self.processes.list(wanted, limit, offset=max(0, offset), match=match)


LIST_FILTERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "executortype": lambda e: e["spec"].conditions.executortype,
    "funcname": lambda e: e["spec"].funcname,
    "label": lambda e: e["spec"].label,
    "processgraphid": lambda e: e.get("graph"),
}
