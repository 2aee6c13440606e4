"""colonynode's answers in ColonyOS's JSON shapes (docs/colonies-api.md): what pycolonies'
models accept. Times are RFC 3339 with Go's zero time where unset; states are integers."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from colonynode.core.roster import ColoniesKey

__all__ = [
    "STATES",
    "ZERO_TIME",
    "attribute_json",
    "executor_json",
    "graph_json",
    "process_json",
]

ZERO_TIME = "0001-01-01T00:00:00Z"
STATES = {"WAITING": 0, "RUNNING": 1, "SUCCESS": 2, "FAILED": 3, "CANCELLED": 4}
STATE_NAMES = {v: k for k, v in STATES.items()}
ATTRIBUTE_TYPES = {"IN": 0, "OUT": 1, "ERR": 2, "ENV": 3}
DAY_NS = 86_400 * 10**9


def _time(value: str | None) -> str:
    return value or ZERO_TIME


def _ns(iso: str | None) -> int:
    """Nanoseconds since the epoch of our RFC 3339 text (processes.iso_time)."""
    if not iso:
        return 0
    import calendar
    import time

    whole, _, frac = iso.rstrip("Z").partition(".")
    secs = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return secs * 10**9 + int((frac or "0").ljust(9, "0")[:9])


def spec_json(spec: dict[str, Any]) -> dict[str, Any]:
    """Our spec's JSON (spec_to_json) as ColonyOS's FunctionSpec."""
    out = dict(spec)
    fs = out.get("fs") or {}
    out["fs"] = fs if fs else {"mount": "", "snapshots": None, "dirs": None}
    conditions = dict(out["conditions"])
    conditions["executornames"] = conditions.get("executornames") or None
    out["conditions"] = conditions
    return out


def attribute_json(pid: str, graph: str, colony: str, attr: dict[str, Any]) -> dict[str, Any]:
    key = attr.get("key", "")
    kind = ATTRIBUTE_TYPES.get(str(attr.get("attributetype", "OUT")), 1)
    aid = hashlib.sha256(f"{pid}/{kind}/{key}".encode()).hexdigest()
    return {"attributeid": aid, "targetid": pid, "targetcolonyname": colony,
            "targetprocessgraphid": graph, "attributetype": kind, "key": key,
            "value": str(attr.get("value", ""))}  # fmt: skip


def process_json(
    view: dict[str, Any], colony: str, executor_id: Callable[[str | None], str]
) -> dict[str, Any]:
    """A process as ColonyOS's Process (`executor_id`: an executor name's Colonies id)."""
    pid = view["processid"]
    graph = view.get("processgraphid") or ""
    spec = spec_json(view["spec"])
    state = STATES[view["state"]]
    submitted_ns = _ns(view.get("submissiontime"))
    assigned = view.get("executor") if state != 0 else None
    return {
        "processid": pid,
        "initiatorid": (view.get("initiator") or {}).get("id", ""),
        "initiatorname": (view.get("initiator") or {}).get("name", ""),
        "assignedexecutorid": executor_id(assigned) if assigned else "",
        "isassigned": state == 1,
        "state": state,
        "prioritytime": submitted_ns - spec["priority"] * DAY_NS,
        "submissiontime": _time(view.get("submissiontime")),
        "starttime": _time(view.get("starttime")),
        "endtime": _time(view.get("endtime")),
        "waitdeadline": ZERO_TIME,
        "execdeadline": ZERO_TIME,
        "retries": view.get("retries", 0),
        "attributes": [attribute_json(pid, graph, colony, a) for a in view.get("attributes", ())],
        "spec": spec,
        "waitforparents": bool(view.get("parents")) and state == 0,
        "parents": view.get("parents", []),
        "children": view.get("children", []),
        "processgraphid": graph,
        "in": view.get("input") or [],
        "out": view.get("output") or [],
        "errors": view.get("errors") or [],
    }


def graph_json(graphid: str, colony: str, processes: list[dict[str, Any]]) -> dict[str, Any]:
    """A workflow's ProcessGraph from its processes' views (ColonyOS's fields; the
    graph's state: FAILED if one failed, SUCCESS once all succeeded, RUNNING once one
    started, else WAITING)."""
    states = [STATES[p["state"]] for p in processes]
    if any(s in (3, 4) for s in states):
        state = 3
    elif states and all(s == 2 for s in states):
        state = 2
    elif any(s != 0 for s in states):
        state = 1
    else:
        state = 0
    times = sorted(p["submissiontime"] for p in processes if p.get("submissiontime"))
    ends = sorted(p["endtime"] for p in processes if p.get("endtime"))
    starts = sorted(p["starttime"] for p in processes if p.get("starttime"))
    return {
        "processgraphid": graphid,
        "initiatorid": "",
        "initiatorname": "",
        "colonyname": colony,
        "rootprocessids": [p["processid"] for p in processes if not p.get("parents")],
        "state": state,
        "submissiontime": times[0] if times else ZERO_TIME,
        "starttime": starts[0] if starts else ZERO_TIME,
        "endtime": ends[-1] if state in (2, 3) and ends else ZERO_TIME,
        "processids": [p["processid"] for p in processes],
        "nodes": [],
        "edges": [],
    }


def executor_json(key: ColoniesKey, colony: str, last_heard: str = ZERO_TIME) -> dict[str, Any]:
    return {
        "executorid": key.key_id,
        "executortype": key.executortype,
        "executorname": key.name,
        "colonyname": colony,
        "state": key.state,
        "requirefuncreg": False,
        "commissiontime": _unix_time(key.added_unix_s),
        "lastheardfromtime": last_heard,
        "locationname": "",
        "capabilities": {"hardware": [], "software": []},
        "allocations": {"projects": {}},
    }


def _unix_time(unix_s: int) -> str:
    if unix_s <= 0:
        return ZERO_TIME
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix_s))
