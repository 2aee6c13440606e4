"""Turning the local API's requests into typed arguments (http.py's endpoints): ids,
numbers, JSON bodies, and the requests built from them; and the lease and DHT events
they answer with, as JSON."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from colonynode.consensus import events as lev
from colonynode.consensus import requests as lrq
from colonynode.consensus.messages import Outcome, ProcessTerms, Reason
from colonynode.core.errors import ColonyError, ValidationError
from colonynode.core.ids import NodeId, node_id_from_peer_id, peer_id_str
from colonynode.core.scheduling import ExecutorAdvert
from colonynode.dht import FileRevision
from colonynode.node.core import requests as rq

API_BODY_BYTES_MAX = 1 << 20
LEASE_PIDS_MAX = 1024


def pid_of(value: Any, what: str = "process id") -> bytes:
    """A process (or cron) id from its hex text (API input)."""
    if not isinstance(value, str) or not 2 <= len(value) <= 128:
        raise ValidationError(f"a {what} is 1..64 bytes of hex")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ValidationError(f"{what} {value!r} is not hex") from None


def nid_of(peer_id: str) -> NodeId:
    try:
        return node_id_from_peer_id(peer_id)
    except ColonyError:
        raise ValidationError(f"{peer_id!r} is not a peer id") from None


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > API_BODY_BYTES_MAX:
        raise ValidationError(f"request body over {API_BODY_BYTES_MAX} bytes")
    if not raw:
        return {}
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except ValueError:
        raise ValidationError("request body is not JSON") from None
    if not isinstance(data, dict):
        raise ValidationError("request body must be a JSON object")
    return data


def _no_constant(name: str) -> Any:
    """Python's json reads NaN and Infinity, which no JSON has: refused (an answer that
    named one could not be written, nor any list that held it)."""
    raise ValueError(f"{name} is not JSON")


def _brief(body: Any) -> bool:
    """The `brief` body field: processes answered by id and state (and, closed, output
    and errors) only, for a client of many calls (`Client.map`)."""
    value = body.get("brief", False)
    if not isinstance(value, bool):
        raise ValidationError("brief must be true or false")
    return value


def _number(params: Any, name: str, default: float) -> float:
    """A numeric query parameter or body field, or a ValidationError naming it."""
    text = params.get(name)
    if text is None or text == "":
        return default
    if isinstance(text, bool):
        raise ValidationError(f"{name} must be a number")
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValidationError(f"{name} must be a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValidationError(f"{name} must be a finite number")
    return value


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValidationError(f"{name} must be a list of strings")
    return tuple(value)


# -- lease events as JSON ----------------------------------------------------------------


def view_json(view: Any) -> dict[str, Any] | None:
    """A RegisterView as JSON data (None stays None)."""
    if view is None:
        return None
    return {
        "pid": view.pid.hex(),
        "state": view.state.name,
        "epoch": view.epoch,
        "holder": None if view.holder is None else peer_id_str(view.holder),
        "retries": view.retries,
        "output": view.output,
        "errors": list(view.errors),
    }


def result_json(result: Any, now_s: float = 0.0) -> dict[str, Any]:
    """An event answering a lease request, as JSON data."""
    out: dict[str, Any] = {"pid": result.pid.hex(), "event": type(result).__name__}
    for name in ("acked", "epoch", "committed", "answered"):
        if hasattr(result, name):
            out[name] = getattr(result, name)
    if isinstance(result, lev.Granted):
        out["granted"] = True
        out["lease_left_s"] = round(result.deadline_s - now_s, 3)
    if isinstance(result, lev.ClaimFailed):
        out["granted"] = False
    if hasattr(result, "reason"):
        reason = result.reason
        out["reason"] = None if reason is None else Reason(reason).name
    if isinstance(result, lev.ReadResult):
        out["view"] = view_json(result.view)
    return out


# -- parsing requests --------------------------------------------------------------------


def _advert(body: dict[str, Any]) -> rq.RegisterExecutor:
    name, etype = str(body.get("name", "")), str(body.get("executortype", ""))
    if not name or not etype:
        raise ValidationError("an executor needs a name and an executortype")
    advert = ExecutorAdvert(
        name=name,
        executortype=etype,
        locationname=str(body.get("locationname", "")),
        cpu_millis=int(body.get("cpu_millis", 10**9)),
        mem_bytes=int(body.get("mem_bytes", 10**15)),
        functions=_strings(body.get("functions", []), "functions"),
    )
    return rq.RegisterExecutor(advert, int(_number(body, "slots", 1)))


def _revision(body: dict[str, Any], now_ns: int, me: NodeId) -> rq.FsAddRevision:
    label, name = str(body.get("label", "")), str(body.get("name", ""))
    revision = FileRevision(
        id=str(body.get("id", "")),
        sha256=bytes.fromhex(str(body.get("sha256", ""))),
        size=int(body.get("size", 0)),
        chunks=tuple(bytes.fromhex(str(c)) for c in body.get("chunks", ())),
        author=me,
        time_ns=now_ns,
    )
    return rq.FsAddRevision(label, name, revision)


def _lease_submit(body: dict[str, Any], me: NodeId, now_ns: int) -> rq.Lease:
    terms = ProcessTerms(
        pid=pid_of(body.get("pid")),
        submitter=me,
        executortype=str(body.get("executortype", "")),
        priority=int(body.get("priority", 0)),
        seq=now_ns,
        maxexectime_s=_number(body, "maxexectime_s", 0),
        maxwaittime_s=_number(body, "maxwaittime_s", 0),
        maxretries=int(body.get("maxretries", 0)),
    )
    return rq.Lease(lrq.SubmitProcess(terms))


def _lease_close(body: dict[str, Any]) -> rq.Lease:
    outcome = str(body.get("outcome", "SUCCESS")).upper()
    if outcome not in Outcome.__members__:
        raise ValidationError("outcome must be SUCCESS or FAILED")
    errors = tuple(str(e) for e in body.get("errors", ()))
    return rq.Lease(
        lrq.CloseProcess(pid_of(body.get("pid")), Outcome[outcome], body.get("output"), errors)
    )
