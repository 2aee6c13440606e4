"""ColonyOS's RPCs, answered by this node (docs/colonies-api.md).

`RPCS` maps each msgtype we serve to who may call it and its handler. The server
(server.py) has checked the signature, the payload and its msgtype; a handler gets the
caller (its key id and, if the roster knows it, its Colonies key) and the message, and
answers the payload to send (ColonyOS's shapes, shapes.py) or raises RpcError with
ColonyOS's status and message.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from colonynode.core.errors import ColonyError
from colonynode.core.process import parse_spec, parse_workflow
from colonynode.core.roster import APPROVED, ColoniesKey
from colonynode.node.core import NotFound, NotHolder, PermissionDenied
from colonynode.node.core import requests as rq
from colonynode.node.daemon.colonies import shapes
from colonynode.node.daemon.colonies.shapes import STATE_NAMES

if TYPE_CHECKING:
    from colonynode.node.daemon.colonies.server import ColoniesGateway

__all__ = ["RPCS", "Caller", "Rpc", "RpcError", "check_colony", "envelope_of", "error_body"]

VERSION = "colonynode-0.1.0"
ASSIGN_S_MAX = 60.0
COUNT_MAX = 100  # processes, graphs (ColonyOS's MaxCount)
LOG_COUNT_MAX = 500
MEMBER = ("colony", "user", "executor")


class RpcError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(status: int, message: str) -> str:
    """ColonyOS's error reply: `{payloadtype: "error", payload: base64({status,
    message}), error: true}` (the HTTP status is `status` too)."""
    payload = base64.b64encode(json.dumps({"status": status, "message": message}).encode())
    return json.dumps({"payloadtype": "error", "payload": payload.decode(), "error": True})


def envelope_of(raw: str | bytes) -> dict[str, Any]:
    """A request's outer JSON object (RpcError 400 if it is none)."""
    try:
        envelope = json.loads(raw)
    except ValueError as exc:
        raise RpcError(400, f"the request is not JSON: {exc}") from None
    if not isinstance(envelope, dict):
        raise RpcError(400, "the request is not a JSON object")
    return envelope


@dataclass(frozen=True, slots=True)
class Caller:
    key_id: str
    key: ColoniesKey | None  # None: a key the roster does not know
    payload: str  # the request as signed (a key change is made from it: owner.py)
    signature: str


Handler = Callable[["ColoniesGateway", Caller, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Rpc:
    verb: str  # ColonyOS's "Failed to <verb>" wording
    roles: tuple[str, ...]  # who may call it (approved executors only); () anyone
    handler: Handler | None  # None: a change to the executors, made by the server (owner.py)


def check_colony(gw: ColoniesGateway, name: Any) -> None:
    if name != gw.colony:
        raise RpcError(403, f"Colony with name {name} does not exists")


def _pid(value: Any, verb: str) -> bytes:
    try:
        if not isinstance(value, str) or not 2 <= len(value) <= 128:
            raise ValueError
        return bytes.fromhex(value)
    except ValueError:
        raise RpcError(404, f"Failed to {verb}, process not found") from None


def _executor(caller: Caller) -> ColoniesKey:
    key = caller.key
    if key is None or key.role != "executor":
        raise RpcError(403, "Access denied: only an executor does that")
    return key


def _str(msg: dict[str, Any], name: str) -> str:
    value = msg.get(name, "")
    if not isinstance(value, str):
        raise RpcError(400, f"{name}: expected a string")
    return value


def _int(msg: dict[str, Any], name: str, default: int = 0) -> int:
    value = msg.get(name, default)
    if type(value) is not int:
        raise RpcError(400, f"{name}: expected an integer")
    return value


async def _process_view(gw: ColoniesGateway, pid: bytes, verb: str) -> dict[str, Any]:
    try:
        view: dict[str, Any] = await gw.node.call(rq.GetProcess(pid))
    except NotFound:
        raise RpcError(404, f"Failed to {verb}, process not found") from None
    return view


# -- the colony, its executors and functions ---------------------------------------------


async def version(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    return {"buildversion": VERSION, "buildtime": "", "msgtype": "versionmsg"}


async def get_colony(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    check_colony(gw, msg.get("colonyname"))
    return {"colonyid": gw.colony_id(), "name": gw.colony}


async def get_colonies(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    return [{"colonyid": gw.colony_id(), "name": gw.colony}]


async def get_executors(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    check_colony(gw, msg.get("colonyname"))
    return [shapes.executor_json(k, gw.colony) for k in gw.roster().colonies
            if k.role == "executor"]  # fmt: skip


async def get_executor(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    check_colony(gw, msg.get("colonyname"))
    key = gw.roster().colonies_executor(_str(msg, "executorname"))
    if key is None:
        raise RpcError(500, "Failed to get executor, executor is nil")
    return shapes.executor_json(key, gw.colony)


def _function_json(gw: ColoniesGateway, key: ColoniesKey, funcname: str, n: int) -> Any:
    import hashlib

    fid = hashlib.sha3_256(f"{key.key_id}/{funcname}".encode()).hexdigest()
    return {"functionid": fid, "executorname": key.name, "executortype": key.executortype,
            "colonyname": gw.colony, "funcname": funcname, "counter": n,
            "minwaittime": 0, "maxwaittime": 0, "minexectime": 0, "maxexectime": 0,
            "avgwaittime": 0, "avgexectime": 0}  # fmt: skip


async def add_function(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    fun = msg.get("fun")
    if not isinstance(fun, dict):
        raise RpcError(400, "Failed to add function, msg.Function is nil")
    check_colony(gw, fun.get("colonyname"))
    key = _executor(caller)
    if _str(fun, "executorname") != key.name:
        raise RpcError(403, "Not allowed to add a function to another executor")
    funcname = _str(fun, "funcname")
    if not 0 < len(funcname) <= 256:
        raise RpcError(400, "Failed to add function, funcname: 1..256 characters")
    return _function_json(gw, key, funcname, gw.executors.add_function(key, funcname))


async def get_functions(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    check_colony(gw, msg.get("colonyname"))
    name = _str(msg, "executorname")
    roster = gw.roster()
    out = []
    for key_id, functions in gw.executors.functions().items():
        key = roster.colonies_key(key_id)
        if key is not None and (not name or key.name == name):
            out += [_function_json(gw, key, f, n) for f, n in functions.items()]
    return out


# -- processes -------------------------------------------------------------------------


def _process(gw: ColoniesGateway, view: dict[str, Any]) -> dict[str, Any]:
    return shapes.process_json(view, gw.colony, gw.executor_id_of)


def _spec(gw: ColoniesGateway, data: Any, verb: str) -> Any:
    if not isinstance(data, dict):
        raise RpcError(400, f"Failed to {verb}, spec is nil")
    conditions = data.get("conditions")
    check_colony(gw, conditions.get("colonyname") if isinstance(conditions, dict) else None)
    try:
        return parse_spec(data)
    except ColonyError as exc:
        raise RpcError(400, f"Failed to {verb}, {exc}") from None


def _initiator(caller: Caller) -> rq.Initiator:
    return rq.Initiator(caller.key_id, caller.key.name if caller.key is not None else "")


async def submit_spec(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    spec = _spec(gw, msg.get("spec"), "submit function spec")
    return _process(gw, await gw.node.call(rq.SubmitProcess(spec, initiator=_initiator(caller))))


async def submit_workflow(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    data = msg.get("spec")
    if not isinstance(data, dict):
        raise RpcError(400, "Failed to submit workflow, spec is nil")
    check_colony(gw, data.get("colonyname"))
    for spec in data.get("functionspecs") or ():
        if isinstance(spec, dict) and isinstance(spec.get("conditions"), dict):
            check_colony(gw, spec["conditions"].get("colonyname") or gw.colony)
    try:
        specs = tuple(parse_workflow({"functionspecs": data.get("functionspecs") or []}))
    except ColonyError as exc:
        raise RpcError(400, f"Failed to submit workflow, {exc}") from None
    answer = await gw.node.call(rq.SubmitWorkflow(specs, _initiator(caller)))
    return shapes.graph_json(answer["processgraphid"], gw.colony, answer["processes"])


async def add_child(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    """A running process's executor adds a step after it to its workflow (ColonyOS's
    addchild; `insert`, which puts it between the parent and its children, is not
    served)."""
    key = _executor(caller)
    if msg.get("insert"):
        raise RpcError(400, "colonynode does not serve addchildmsg with insert")
    spec = _spec(gw, msg.get("spec"), "add child to processgraph")
    parent = _pid(msg.get("parentprocessid"), "add child to processgraph")
    graph = _str(msg, "processgraphid")
    if gw.executors.run(key, parent) is None:
        raise RpcError(400, f"Process with Id {parent.hex()} is not assigned to executor "
                            f"with Id {key.key_id}")  # fmt: skip
    try:
        view = await gw.node.call(rq.AddChild(bytes.fromhex(graph), parent, spec))
    except ValueError:
        raise RpcError(400, "Failed to add child to processgraph, invalid processgraphid") from None
    return _process(gw, view)


async def assign(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    check_colony(gw, msg.get("colonyname"))
    key = _executor(caller)
    timeout = _int(msg, "timeout")
    if timeout == 0:
        raise RpcError(400, "Invalid timeout value, timeout cannot be zero")
    timeout_s = min(float(max(timeout, 0)), ASSIGN_S_MAX)
    view = await gw.executors.call(key, lambda eid: rq.Assign(eid, timeout_s))
    if view is None:
        raise RpcError(404, "No process available for assignment")
    pid = bytes.fromhex(view["processid"])
    gw.executors.started(key, pid, float(view["spec"].get("maxexectime") or 0))
    return _process(gw, view)


async def get_process(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    pid = _pid(msg.get("processid"), "get process")
    return _process(gw, await _process_view(gw, pid, "get process"))


async def get_processes(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    check_colony(gw, msg.get("colonyname"))
    state = _int(msg, "state", -1)
    if state != -1 and state not in STATE_NAMES:
        raise RpcError(400, "Failed to get processes, invalid msg.State")
    count = _int(msg, "count", COUNT_MAX)
    if count > COUNT_MAX:
        raise RpcError(400, f"Count is larger than MaxCount limit <{COUNT_MAX}>")
    filters = {f: v for f in ("executortype", "label", "processgraphid")
               if isinstance(v := msg.get(f), str) and v}  # fmt: skip
    views = gw.node.list_processes(STATE_NAMES.get(state), max(count, 0), 0, filters)
    return [_process(gw, v) for v in views]


async def _close(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any], success: bool) -> Any:
    verb = "close process as successful" if success else "close process as failed"
    key = _executor(caller)
    pid = _pid(msg.get("processid"), verb)
    if success:
        output = msg.get("out")
        run = gw.executors.run(key, pid)
        if not output and run is not None and run.output:
            output = run.output
        if output is not None and not isinstance(output, list):
            raise RpcError(400, f"Failed to {verb}, out: expected a list")
        errors: tuple[str, ...] = ()
    else:
        output = None
        errors = tuple(str(e) for e in msg.get("errors") or ())
    try:
        answer = await gw.executors.call(
            key, lambda eid: rq.CloseRun(eid, pid, success, output or [], errors)
        )
    except (NotHolder, PermissionDenied):
        raise RpcError(403, f"Failed to {verb}, not allowed to {verb}") from None
    gw.executors.ended(key, pid)
    if not answer.get("committed"):
        raise RpcError(403, f"Failed to {verb}, {answer.get('reason') or 'not committed'}")
    return {}


async def close_successful(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    return await _close(gw, caller, msg, True)


async def close_failed(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    return await _close(gw, caller, msg, False)


async def set_output(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    key = _executor(caller)
    pid = _pid(msg.get("processid"), "set output")
    out = msg.get("out")
    if not isinstance(out, list):
        raise RpcError(400, "Failed to set output, out: expected a list")
    run = gw.executors.run(key, pid)
    if run is None:
        raise RpcError(403, "Failed to set output, process is not running")
    if out:
        run.output = out
    return {}


async def add_log(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    key = _executor(caller)
    pid = _pid(msg.get("processid"), "add log")
    message = _str(msg, "message")
    answer = await gw.executors.call(key, lambda eid: rq.LogLines(eid, pid, (message,)))
    if not answer.get("held"):
        raise RpcError(403, "Failed to add log, not allowed to add log, only the assigned "
                            "Executor may att logs")  # fmt: skip
    return {}


async def get_logs(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    check_colony(gw, msg.get("colonyname"))
    if _str(msg, "executorname"):
        raise RpcError(400, "colonynode reads logs by process (processid), not by executor")
    pid = _pid(msg.get("processid"), "get logs")
    count, since = _int(msg, "count"), _int(msg, "since")
    if count > LOG_COUNT_MAX:
        raise RpcError(403, f"Count exceeds max log count ({LOG_COUNT_MAX})")
    await _process_view(gw, pid, "get logs")
    lines = (await gw.node.call(rq.ProcessLogs(pid)))["logs"]
    latest = msg.get("latest") is True
    out = [{"processid": pid.hex(), "colonyname": gw.colony, "executorname": ln["executor"] or "",
            "message": ln["message"], "timestamp": ln["time_ns"] or 0}
           for ln in lines if latest or since <= 0 or (ln["time_ns"] or 0) > since]  # fmt: skip
    out.sort(key=lambda ln: ln["timestamp"])
    return out[-count:] if latest and count > 0 else out[: max(count, 0)]


async def add_attribute(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    key = _executor(caller)
    attr = msg.get("attribute")
    if not isinstance(attr, dict):
        raise RpcError(400, "Failed to add attribute, attribute is nil")
    pid = _pid(attr.get("targetid"), "add attribute")
    kind = {0: "IN", 1: "OUT", 2: "ERR", 3: "ENV"}.get(_int(attr, "attributetype", 1))
    if kind is None:
        raise RpcError(400, "Failed to add attribute, attributetype is 0..3")
    name, value = _str(attr, "key"), _str(attr, "value")
    try:
        await gw.executors.call(key, lambda eid: rq.AddAttribute(eid, pid, name, value, kind))
    except (NotHolder, PermissionDenied):
        raise RpcError(403, "Failed to add attribute, process is not running") from None
    view = await _process_view(gw, pid, "add attribute")
    made = shapes.attribute_json(pid.hex(), view.get("processgraphid") or "", gw.colony,
                                 {"key": name, "value": value, "attributetype": kind})  # fmt: skip
    gw.attributes.remember(made["attributeid"], pid)
    return made


async def get_attribute(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    aid = _str(msg, "attributeid")
    pid = gw.attributes.get(aid)
    if pid is not None:
        view = await _process_view(gw, pid, "get attribute")
        graph = view.get("processgraphid") or ""
        for attr in view.get("attributes", ()):
            made = shapes.attribute_json(pid.hex(), graph, gw.colony, attr)
            if made["attributeid"] == aid:
                return made
    raise RpcError(400, "Attribute does not exists")


async def get_graph(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    graph = _str(msg, "processgraphid")
    views = gw.node.list_processes(None, 10_000, 0, {"processgraphid": graph}) if graph else []
    if not views:
        raise RpcError(500, "Failed to get processgraph, graph is nil")
    return shapes.graph_json(graph, gw.colony, views)


async def get_graphs(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    check_colony(gw, msg.get("colonyname"))
    count = _int(msg, "count", COUNT_MAX)
    if count > COUNT_MAX:
        raise RpcError(400, f"Count is larger than MaxCount limit <{COUNT_MAX}>")
    state = msg.get("state")
    groups: dict[str, list[dict[str, Any]]] = {}
    for view in gw.node.list_processes(None, 10_000, 0, {}):
        if view.get("processgraphid"):
            groups.setdefault(view["processgraphid"], []).append(view)
    graphs = [shapes.graph_json(g, gw.colony, vs) for g, vs in groups.items()]
    graphs = [g for g in graphs if state is None or g["state"] == state]
    return graphs[: max(count, 0)]


async def colony_stats(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    check_colony(gw, msg.get("colonyname"))
    executors = [k for k in gw.roster().colonies if k.role == "executor"]
    views = gw.node.list_processes(None, 10_000, 0, {})
    by_state = {name: 0 for name in shapes.STATES}
    graphs: dict[str, list[dict[str, Any]]] = {}
    for view in views:
        by_state[view["state"]] += 1
        if view.get("processgraphid"):
            graphs.setdefault(view["processgraphid"], []).append(view)
    wf = [shapes.graph_json(g, gw.colony, vs)["state"] for g, vs in graphs.items()]
    return {"colonies": 1, "executors": len(executors),
            "activeexecutors": sum(1 for k in executors if k.state == APPROVED),
            "unregisteredexecutors": 0,
            "waitingprocesses": by_state["WAITING"], "runningprocesses": by_state["RUNNING"],
            "successfulprocesses": by_state["SUCCESS"], "failedprocesses": by_state["FAILED"],
            "cancelledprocesses": by_state["CANCELLED"],
            "waitingworkflows": wf.count(0), "runningworkflows": wf.count(1),
            "successfulworkflows": wf.count(2), "failedworkflows": wf.count(3),
            "cancelledworkflows": wf.count(4)}  # fmt: skip


RPCS: dict[str, Rpc] = {
    "versionmsg": Rpc("get server version", (), version),
    "getcolonymsg": Rpc("get colony", MEMBER, get_colony),
    "getcoloniesmsg": Rpc("get colonies", MEMBER, get_colonies),
    "addexecutormsg": Rpc("add executor", ("colony",), None),
    "approveexecutormsg": Rpc("approve executor", ("colony",), None),
    "rejectexecutormsg": Rpc("reject executor", ("colony",), None),
    "removeexecutormsg": Rpc("remove executor", ("colony",), None),
    "getexecutorsmsg": Rpc("get executors", MEMBER, get_executors),
    "getexecutormsg": Rpc("get executor", MEMBER, get_executor),
    "addfunctionmsg": Rpc("add function", ("executor",), add_function),
    "getfunctionsmsg": Rpc("get function", MEMBER, get_functions),
    "submitfuncspecmsg": Rpc("submit process spec", MEMBER, submit_spec),
    "submitworkflowspecmsg": Rpc("submit workflow", MEMBER, submit_workflow),
    "assignprocessmsg": Rpc("assign process", ("executor",), assign),
    "getprocessmsg": Rpc("get process", MEMBER, get_process),
    "getprocessesmsg": Rpc("get processes", MEMBER, get_processes),
    "closesuccessfulmsg": Rpc("close process as successful", ("executor",), close_successful),
    "closefailedmsg": Rpc("close process as failed", ("executor",), close_failed),
    "setoutputmsg": Rpc("set output", ("executor",), set_output),
    "addlogmsg": Rpc("add log", ("executor",), add_log),
    "getlogsmsg": Rpc("get logs", MEMBER, get_logs),
    "addattributemsg": Rpc("add attribute", ("executor",), add_attribute),
    "getattributemsg": Rpc("get attribute", MEMBER, get_attribute),
    "getprocessgraphmsg": Rpc("get processgraph", MEMBER, get_graph),
    "getprocessgraphsmsg": Rpc("get processgraphs", MEMBER, get_graphs),
    "getcolonystatsmsg": Rpc("get colony statistics", MEMBER, colony_stats),
    "addchildmsg": Rpc("add child to processgraph", ("executor",), add_child),
}
