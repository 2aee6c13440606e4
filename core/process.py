"""The ColonyOS process model (DESIGN.md §5, COLONYOS.md), with validation.

Specs are JSON objects with ColonyOS's field names. `parse_spec` refuses unknown fields,
wrong types and impossible values with a `ValidationError` whose message names the field
(``spec.conditions.cpu: ...``), so the CLI can print it as one line.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field
from typing import Any

from colonynode.core.errors import ValidationError

__all__ = [
    "DAY_NS",
    "PRIORITY_MAX",
    "Conditions",
    "FunctionSpec",
    "Gpu",
    "State",
    "parse_cpu_millis",
    "parse_mem_bytes",
    "parse_spec",
    "parse_workflow",
    "priority_time_ns",
    "spec_to_json",
]

DAY_NS = 86_400 * 10**9
PRIORITY_MAX = 50_000
ARGS_MAX = 1024
NAMES_MAX = 256
STR_MAX = 4096
JSON_DEPTH_MAX = 16


class State(enum.IntEnum):
    """ColonyOS's process states; values are wire format (append-only)."""

    WAITING = 0
    RUNNING = 1
    SUCCESS = 2
    FAILED = 3
    CANCELLED = 4

    @property
    def closed(self) -> bool:
        return self in _CLOSED_STATES


_CLOSED_STATES = frozenset({State.SUCCESS, State.FAILED, State.CANCELLED})


@dataclass(frozen=True, slots=True)
class Gpu:
    name: str = ""
    mem: str = ""
    count: int = 0
    nodecount: int = 0


@dataclass(frozen=True, slots=True)
class Conditions:
    colonyname: str = ""
    executortype: str = ""
    executornames: tuple[str, ...] = ()
    locationname: str = ""
    dependencies: tuple[str, ...] = ()
    nodes: int = 0
    cpu: str = ""
    processes: int = 0
    processespernode: int = 0
    mem: str = ""
    storage: str = ""
    gpu: Gpu = field(default_factory=Gpu)
    walltime: int = 0


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    funcname: str
    nodename: str = ""
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    maxwaittime: int = -1  # seconds a process may wait; -1 (or 0): no limit
    maxexectime: int = -1  # seconds a run may take; -1 (or 0): no limit
    maxretries: int = 0  # re-runs after a lost lease; -1: unlimited
    conditions: Conditions = field(default_factory=Conditions)
    label: str = ""
    fs: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    channels: tuple[str, ...] = ()

    @property
    def cpu_millis(self) -> int:
        return parse_cpu_millis(self.conditions.cpu, "spec.conditions.cpu")

    @property
    def mem_bytes(self) -> int:
        return parse_mem_bytes(self.conditions.mem, "spec.conditions.mem")


def priority_time_ns(submission_ns: int, priority: int) -> int:
    """ColonyOS's order: lowest first; each priority point is worth a day of queue age."""
    return submission_ns - priority * DAY_NS


# -- parsing -------------------------------------------------------------------------------

_CPU = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")
_MEM = re.compile(r"^(\d+(?:\.\d+)?)([KMGTP]i?|[kmgtp]|)$")
_MEM_UNITS = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
              "P": 10**15, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
              "Pi": 2**50, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}  # fmt: skip


def parse_cpu_millis(text: str, where: str = "cpu") -> int:
    """'' -> 0, '2' -> 2000, '500m' -> 500 (Kubernetes-style, as ColonyOS)."""
    if not text:
        return 0
    m = _CPU.match(text.strip())
    if not m:
        raise ValidationError(f"{where}: {text!r} is not a CPU amount like '2' or '500m'")
    value = float(m.group(1))
    return int(value if m.group(2) else value * 1000)


def parse_mem_bytes(text: str, where: str = "mem") -> int:
    """'' -> 0, '512Mi' -> 536870912, '1G' -> 10**9, '1000' -> 1000 bytes."""
    if not text:
        return 0
    m = _MEM.match(text.strip())
    if not m:
        raise ValidationError(f"{where}: {text!r} is not a memory amount like '512Mi' or '2G'")
    return int(float(m.group(1)) * _MEM_UNITS[m.group(2)])


def _json_value(value: Any, where: str, depth: int = 0) -> Any:
    if depth > JSON_DEPTH_MAX:
        raise ValidationError(f"{where}: nested deeper than {JSON_DEPTH_MAX}")
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):  # no JSON has it: every API answer naming it would fail
            raise ValidationError(f"{where}: {value} is not a JSON number")
        return value
    if isinstance(value, str):
        if len(value) > STR_MAX * 64:
            raise ValidationError(f"{where}: string longer than {STR_MAX * 64}")
        return value
    if isinstance(value, list):
        if len(value) > ARGS_MAX:
            raise ValidationError(f"{where}: more than {ARGS_MAX} items")
        return [_json_value(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if len(value) > ARGS_MAX:
            raise ValidationError(f"{where}: more than {ARGS_MAX} keys")
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValidationError(f"{where}: keys must be strings")
            out[k] = _json_value(v, f"{where}.{k}", depth + 1)
        return out
    raise ValidationError(f"{where}: {type(value).__name__} is not a JSON value")


def _typed(kind: type, value: Any, where: str) -> Any:
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValidationError(f"{where}: expected an integer, got {value!r}")
    if kind is str:
        if not isinstance(value, str):
            raise ValidationError(f"{where}: expected a string, got {value!r}")
        if len(value) > STR_MAX:
            raise ValidationError(f"{where}: longer than {STR_MAX} characters")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValidationError(f"{where}: expected a list of strings")
    if len(value) > NAMES_MAX:
        raise ValidationError(f"{where}: more than {NAMES_MAX} entries")
    return tuple(_typed(str, v, f"{where}[{i}]") for i, v in enumerate(value))


def _object(data: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationError(f"{where}: expected an object")
    for key in data:
        if key not in allowed:
            raise ValidationError(f"{where}.{key}: unknown field")
    return data


def _ints(data: dict[str, Any], where: str, names: tuple[str, ...], low: int) -> dict[str, int]:
    out = {}
    for name in names:
        if name in data:
            out[name] = _typed(int, data[name], f"{where}.{name}")
            if out[name] < low:
                raise ValidationError(f"{where}.{name}: must be {low} or more")
    return out


def _strs(data: dict[str, Any], where: str, names: tuple[str, ...]) -> dict[str, str]:
    return {n: _typed(str, data[n], f"{where}.{n}") for n in names if n in data}


def _gpu(data: Any) -> Gpu:
    where = "spec.conditions.gpu"
    d = _object(data, where, ("name", "mem", "count", "nodecount"))
    kw: dict[str, Any] = {**_strs(d, where, ("name", "mem")),
                          **_ints(d, where, ("count", "nodecount"), 0)}  # fmt: skip
    return Gpu(**kw)


def _conditions(data: Any) -> Conditions:
    where = "spec.conditions"
    names = tuple(Conditions.__dataclass_fields__)
    d = _object(data, where, names)
    kw: dict[str, Any] = _strs(d, where, ("colonyname", "executortype", "locationname",
                                          "cpu", "mem", "storage"))  # fmt: skip
    kw |= _ints(d, where, ("nodes", "processes", "processespernode", "walltime"), 0)
    for name in ("executornames", "dependencies"):
        if name in d and d[name] is not None:
            kw[name] = _strings(d[name], f"{where}.{name}")
    if "gpu" in d and d["gpu"] is not None:
        kw["gpu"] = _gpu(d["gpu"])
    conditions = Conditions(**kw)
    parse_cpu_millis(conditions.cpu, f"{where}.cpu")
    parse_mem_bytes(conditions.mem, f"{where}.mem")
    parse_mem_bytes(conditions.storage, f"{where}.storage")
    return conditions


def parse_spec(data: Any) -> FunctionSpec:
    """A FunctionSpec from ColonyOS-style JSON data, or a ValidationError naming the field."""
    where = "spec"
    d = _object(data, where, tuple(FunctionSpec.__dataclass_fields__))
    if "funcname" not in d:
        raise ValidationError("spec.funcname: missing (the function to run)")
    kw: dict[str, Any] = _strs(d, where, ("funcname", "nodename", "label"))
    if not kw["funcname"].strip():
        raise ValidationError("spec.funcname: must not be empty")
    kw |= _ints(d, where, ("maxwaittime", "maxexectime", "maxretries"), -1)
    if "priority" in d:
        kw["priority"] = _typed(int, d["priority"], "spec.priority")
        if abs(kw["priority"]) > PRIORITY_MAX:
            raise ValidationError(f"spec.priority: must be within ±{PRIORITY_MAX}")
    if d.get("args") is not None:
        if not isinstance(d["args"], list):
            raise ValidationError("spec.args: expected a list")
        kw["args"] = tuple(_json_value(d["args"], "spec.args"))
    for name in ("kwargs", "fs"):
        if d.get(name) is not None:
            if not isinstance(d[name], dict):
                raise ValidationError(f"spec.{name}: expected an object")
            kw[name] = _json_value(d[name], f"spec.{name}")
    if d.get("env") is not None:
        env = _object(d["env"], "spec.env", tuple(d["env"]) if isinstance(d["env"], dict) else ())
        kw["env"] = {k: _typed(str, v, f"spec.env.{k}") for k, v in env.items()}
    if d.get("channels") is not None:
        kw["channels"] = _strings(d["channels"], "spec.channels")
    if d.get("conditions") is not None:
        kw["conditions"] = _conditions(d["conditions"])
    return FunctionSpec(**kw)


WORKFLOW_SPECS_MAX = 1024


def parse_workflow(data: Any) -> list[FunctionSpec]:
    """The specs of a ColonyOS WorkflowSpec (``{"colonyname", "functionspecs": [...]}``),
    checked as a DAG: every spec has a unique `nodename`, every dependency names another
    spec of the workflow, and there is no cycle. A ValidationError names the spec."""
    d = _object(data, "workflow", ("colonyname", "functionspecs"))
    items = d.get("functionspecs")
    if not isinstance(items, list) or not items:
        raise ValidationError("workflow.functionspecs: expected a non-empty list of specs")
    if len(items) > WORKFLOW_SPECS_MAX:
        raise ValidationError(f"workflow.functionspecs: more than {WORKFLOW_SPECS_MAX} specs")
    specs: list[FunctionSpec] = []
    for i, item in enumerate(items):
        where = f"workflow.functionspecs[{i}]"
        try:
            spec = parse_spec(item)
        except ValidationError as exc:
            raise ValidationError(str(exc).replace("spec", where, 1)) from None
        if not spec.nodename:
            raise ValidationError(f"{where}.nodename: missing (a workflow names each step)")
        specs.append(spec)
    names = [s.nodename for s in specs]
    for i, spec in enumerate(specs):
        where = f"workflow.functionspecs[{i}]"
        if names.count(spec.nodename) > 1:
            raise ValidationError(f"{where}.nodename: {spec.nodename!r} is used twice")
        for dep in spec.conditions.dependencies:
            if dep not in names:
                raise ValidationError(f"{where}.conditions.dependencies: no step {dep!r}")
            if dep == spec.nodename:
                raise ValidationError(f"{where}.conditions.dependencies: depends on itself")
    # Kahn's algorithm: what remains once no step without open dependencies is left is a cycle.
    open_deps = {s.nodename: set(s.conditions.dependencies) for s in specs}
    ready = [n for n, deps in open_deps.items() if not deps]
    done = 0
    while ready:
        name = ready.pop()
        done += 1
        for other, deps in open_deps.items():
            if name in deps:
                deps.discard(name)
                if not deps:
                    ready.append(other)
    if done < len(specs):
        cycle = sorted(n for n, deps in open_deps.items() if deps)
        raise ValidationError(f"workflow: dependencies form a cycle through {', '.join(cycle)}")
    return specs


def spec_to_json(spec: FunctionSpec) -> dict[str, Any]:
    """ColonyOS-style JSON data of a spec (parse_spec's inverse)."""
    c = spec.conditions
    return {
        "nodename": spec.nodename,
        "funcname": spec.funcname,
        "args": list(spec.args),
        "kwargs": dict(spec.kwargs),
        "priority": spec.priority,
        "maxwaittime": spec.maxwaittime,
        "maxexectime": spec.maxexectime,
        "maxretries": spec.maxretries,
        "label": spec.label,
        "fs": dict(spec.fs),
        "env": dict(spec.env),
        "channels": list(spec.channels),
        "conditions": {
            "colonyname": c.colonyname,
            "executortype": c.executortype,
            "executornames": list(c.executornames),
            "locationname": c.locationname,
            "dependencies": list(c.dependencies),
            "nodes": c.nodes,
            "cpu": c.cpu,
            "processes": c.processes,
            "processespernode": c.processespernode,
            "mem": c.mem,
            "storage": c.storage,
            "gpu": {
                "name": c.gpu.name,
                "mem": c.gpu.mem,
                "count": c.gpu.count,
                "nodecount": c.gpu.nodecount,
            },
            "walltime": c.walltime,
        },
    }
