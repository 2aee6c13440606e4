"""The ColonyOS process model: spec validation names the field; ordering; units."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from colonynode.core.codec import decode, encode, from_wire
from colonynode.core.errors import ValidationError
from colonynode.core.process import (
    DAY_NS,
    FunctionSpec,
    State,
    parse_cpu_millis,
    parse_mem_bytes,
    parse_spec,
    priority_time_ns,
    spec_to_json,
)

FULL = {
    "nodename": "estimate",
    "funcname": "estimate_pi",
    "args": [1000000, "x", {"nested": [1, 2.5, None]}],
    "kwargs": {"seed": 7},
    "priority": 3,
    "maxwaittime": 60,
    "maxexectime": 30,
    "maxretries": -1,
    "label": "demo",
    "fs": {},
    "env": {"MODE": "fast"},
    "channels": ["out"],
    "conditions": {
        "colonyname": "lab",
        "executortype": "python-executor",
        "executornames": ["b", "c"],
        "locationname": "",
        "dependencies": [],
        "cpu": "500m",
        "mem": "256Mi",
        "gpu": {"count": 0},
        "walltime": 0,
    },
}


def test_a_full_colonyos_spec_parses_and_round_trips() -> None:
    spec = parse_spec(FULL)
    assert spec.funcname == "estimate_pi" and spec.maxretries == -1
    assert spec.conditions.executornames == ("b", "c")
    assert spec.cpu_millis == 500 and spec.mem_bytes == 256 * 2**20
    assert parse_spec(spec_to_json(spec)) == spec
    # and it travels on the wire (codec-encodable dataclasses)
    assert from_wire(FunctionSpec, decode(encode(spec))) == spec


def test_minimal_spec_takes_defaults() -> None:
    spec = parse_spec({"funcname": "add", "args": [1, 2]})
    assert spec.args == (1, 2) and spec.priority == 0 and spec.maxexectime == -1


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"funcnme": "typo"}, "spec.funcnme: unknown field"),
        ({"conditions": {"executortyp": "x"}}, "spec.conditions.executortyp: unknown field"),
        ({"priority": "high"}, "spec.priority: expected an integer"),
        ({"priority": 50_001}, "spec.priority: must be within"),
        ({"maxretries": -2}, "spec.maxretries: must be -1 or more"),
        ({"maxexectime": 1.5}, "spec.maxexectime: expected an integer"),
        ({"args": "1 2"}, "spec.args: expected a list"),
        ({"kwargs": [1]}, "spec.kwargs: expected an object"),
        ({"env": {"A": 1}}, "spec.env.A: expected a string"),
        ({"conditions": {"cpu": "lots"}}, "spec.conditions.cpu: 'lots' is not a CPU amount"),
        ({"conditions": {"mem": "1 GB"}}, "spec.conditions.mem"),
        ({"conditions": {"executornames": "b"}}, "spec.conditions.executornames: expected a list"),
        ({"conditions": {"gpu": {"count": -1}}}, "spec.conditions.gpu.count: must be 0 or more"),
        ({"funcname": ""}, "spec.funcname: must not be empty"),
        ({"maxwaittime": True}, "spec.maxwaittime: expected an integer"),
    ],
)
def test_bad_specs_are_refused_naming_the_field(patch: dict[str, Any], message: str) -> None:
    data = {"funcname": "f", **patch}
    with pytest.raises(ValidationError) as err:
        parse_spec(data)
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_missing_funcname_and_non_objects() -> None:
    with pytest.raises(ValidationError, match=r"spec\.funcname: missing"):
        parse_spec({"args": []})
    with pytest.raises(ValidationError, match="spec: expected an object"):
        parse_spec(["funcname"])


def test_priority_time_orders_a_priority_point_as_a_day_of_age() -> None:
    early_low = priority_time_ns(0, 0)
    late_high = priority_time_ns(DAY_NS - 1, 1)  # submitted almost a day later, priority 1
    assert late_high < early_low
    assert priority_time_ns(10, -1) == 10 + DAY_NS


def test_units() -> None:
    assert parse_cpu_millis("2") == 2000 and parse_cpu_millis("1.5") == 1500
    assert parse_mem_bytes("1Gi") == 2**30 and parse_mem_bytes("2G") == 2 * 10**9
    assert parse_mem_bytes("") == 0 and parse_cpu_millis("") == 0


def test_states_know_which_are_closed() -> None:
    assert [s.name for s in State if s.closed] == ["SUCCESS", "FAILED", "CANCELLED"]


@given(st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=5))
def test_any_kwargs_of_json_values_are_accepted(kwargs: dict[str, Any]) -> None:
    assert parse_spec({"funcname": "f", "kwargs": kwargs}).kwargs == kwargs


# -- workflows --------------------------------------------------------------------------


def _step(name: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"nodename": name, "funcname": "f", "conditions": {"dependencies": list(deps)},
            **extra}  # fmt: skip


def test_a_workflow_is_a_dag_of_named_steps() -> None:
    from colonynode.core.process import parse_workflow

    specs = parse_workflow({"functionspecs": [_step("a"), _step("b", "a"), _step("c", "a", "b")]})
    assert [s.nodename for s in specs] == ["a", "b", "c"]
    assert specs[2].conditions.dependencies == ("a", "b")


@pytest.mark.parametrize(
    ("functionspecs", "message"),
    [
        ([], "workflow.functionspecs: expected a non-empty list"),
        ([{"funcname": "f"}], "workflow.functionspecs[0].nodename: missing"),
        ([_step("a"), _step("a")], "workflow.functionspecs[0].nodename: 'a' is used twice"),
        ([_step("a", "zz")], "workflow.functionspecs[0].conditions.dependencies: no step 'zz'"),
        ([_step("a", "a")], "depends on itself"),
        ([_step("a", "c"), _step("b", "a"), _step("c", "b"), _step("d")],
         "workflow: dependencies form a cycle through a, b, c"),
        ([_step("a", priority="x")], "workflow.functionspecs[0].priority: expected an integer"),
    ],
)  # fmt: skip
def test_bad_workflows_are_refused_naming_the_step(functionspecs: Any, message: str) -> None:
    from colonynode.core.process import parse_workflow

    with pytest.raises(ValidationError) as err:
        parse_workflow({"functionspecs": functionspecs})
    assert message in str(err.value)


def test_a_workflow_with_unknown_fields_is_refused() -> None:
    from colonynode.core.process import parse_workflow

    with pytest.raises(ValidationError, match=r"workflow\.specs: unknown field"):
        parse_workflow({"specs": []})
