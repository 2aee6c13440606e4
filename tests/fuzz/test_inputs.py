"""Fuzzed input from outside the colony (issue 18): spec and workflow files, invite
tokens, roster envelopes, and the local API (the socket's frames and every endpoint with
a real NodeCore behind it). Each answers a typed error (a ColonyError, or a 4xx answer),
never another exception and never a 5xx, and the node serves on. Budget
`strategies.EXAMPLES`."""

from __future__ import annotations

import json
import re
from collections.abc import Coroutine
from typing import Any

import cbor2
import msgpack
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colonynode.core.codec import encode, from_wire
from colonynode.core.envelope import Envelope
from colonynode.core.errors import ColonyError
from colonynode.core.invite import issue_invite, parse_invite
from colonynode.core.process import parse_spec, parse_workflow
from colonynode.core.roster import accept_roster
from colonynode.node.daemon.http import api_routes
from colonynode.node.daemon.local_api import BadFrame, LocalApi, _Frames
from tests.fuzz.strategies import EXAMPLES, json_values, mutated, plain
from tests.node.colony import T0_NS, Colony, identity, roster_of

SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=SLOW)

SPEC = {"funcname": "add", "args": [1, 2], "kwargs": {"x": 1}, "priority": 3, "maxexectime": 10,
        "maxretries": 2, "label": "l", "env": {"A": "1"}, "nodename": "a",
        "conditions": {"executortype": "py", "executornames": ["e"], "cpu": "1000m",
                       "mem": "1Gi", "dependencies": []}}  # fmt: skip


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (the endpoints and frames here do not)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise AssertionError("it waited for something")


def bent(value: Any) -> st.SearchStrategy[Any]:
    """`value` (JSON) with one part of it replaced by anything JSON-like."""
    if isinstance(value, dict) and value:
        return st.sampled_from(sorted(value)).flatmap(
            lambda k: (bent(value[k]) | json_values).map(lambda v: {**value, k: v})
        )
    if isinstance(value, list) and value:
        return st.integers(0, len(value) - 1).flatmap(
            lambda i: (bent(value[i]) | json_values).map(lambda v: [*value[:i], v, *value[i + 1 :]])
        )
    return json_values


# -- files and tokens ---------------------------------------------------------------


@FUZZ
@given(bent(SPEC) | json_values)
def test_a_spec_is_a_function_spec_or_a_validation_error(data: Any) -> None:
    try:
        spec = parse_spec(data)
    except ColonyError:
        return
    assert parse_spec(json.loads(json.dumps(_spec_json(spec)))) == spec  # it round-trips


def _spec_json(spec: Any) -> Any:
    from colonynode.core.process import spec_to_json

    return spec_to_json(spec)


STEP_B = {**SPEC, "nodename": "b", "conditions": {"executortype": "py", "dependencies": ["a"]}}
WORKFLOW = {"functionspecs": [SPEC, STEP_B]}


@FUZZ
@given(bent(WORKFLOW) | json_values)
def test_a_workflow_is_its_specs_or_a_validation_error(data: Any) -> None:
    try:
        specs = parse_workflow(data)
    except ColonyError:
        return
    names = [s.nodename for s in specs]
    assert len(set(names)) == len(names)  # every step named once
    for s in specs:
        assert set(s.conditions.dependencies) <= set(names)


OWNER = identity(0)
TOKEN = issue_invite(OWNER, "lab", ("executor",), token_id=b"t" * 16, now_unix_s=1.8e9,
                     ttl_s=3600)  # fmt: skip


@FUZZ
@given(st.text(max_size=200) | st.just(TOKEN).flatmap(lambda t: mutated(t.encode())).map(
    lambda b: b.decode("utf-8", "replace")))  # fmt: skip
def test_an_invite_token_is_an_invite_or_an_invite_error(token: str) -> None:
    try:
        invite, envelope = parse_invite(token)
    except ColonyError:
        return
    assert envelope.author == invite.owner  # only the owner's signature passes


ROSTER = roster_of(4)


@FUZZ
@given(st.just(encode(ROSTER)).flatmap(mutated) | st.binary(max_size=300))
def test_a_roster_envelope_is_a_roster_or_a_typed_error(data: bytes) -> None:
    try:
        envelope = from_wire(Envelope, cbor2.loads(data))
        roster = accept_roster(None, envelope)
    except (ColonyError, ValueError, EOFError, cbor2.CBORDecodeError):
        return  # (cbor2's own errors: the bytes before the typed decoding)
    assert roster is not None and envelope.author == roster.owner


# -- the local API --------------------------------------------------------------------


class SteppedNode:
    """The daemon's API view of node 0 of a stepped colony (NodeApi): `call` steps the
    request and delivers until quiet; a long-poll not answered by then answers None."""

    def __init__(self, colony: Colony) -> None:
        self.colony = colony

    async def call(self, req: Any) -> Any:
        rid = self.colony.ask(0, req)
        self.colony.net.stabilize()
        answer = self.colony.answer(0, rid)
        if answer is None:
            return None
        if answer.error is not None:
            raise answer.error
        return answer.value

    async def call_many(self, reqs: list[Any]) -> list[Any]:
        out = []
        for req in reqs:
            try:
                out.append(await self.call(req))
            except ColonyError as exc:
                out.append(exc)
        return out

    def status(self) -> dict[str, Any]:
        return self.colony.core(0).status()

    def members(self) -> list[dict[str, Any]]:
        return self.colony.core(0).membership.describe()

    def peers(self) -> list[dict[str, Any]]:
        return []

    def records(self, kind: str | None, limit: int) -> list[dict[str, Any]]:
        from colonynode.node.core.service import records

        return records(self.colony.core(0), kind, limit)

    def list_processes(self, state: str | None, limit: int, offset: int,
                       filters: dict[str, str]) -> list[dict[str, Any]]:  # fmt: skip
        from colonynode.node.core.service import list_processes

        return list_processes(self.colony.core(0), state, limit, offset, filters)

    def metrics_text(self) -> str:
        return ""

    def process_counts(self) -> dict[str, int]:
        return self.colony.core(0).book.count_by_state()

    async def colonies_env(self) -> dict[str, str]:
        raise ColonyError("this node serves no Colonies API: start it with --colonies-port PORT")

    @property
    def core(self) -> Any:  # what the Colonies gateway reads (tests/fuzz/test_colonies.py)
        return self.colony.core(0)

    @property
    def identity(self) -> Any:
        return self.colony.identities[0]

    def now_s(self) -> float:
        return self.colony.net.t

    def unix_ns(self) -> int:
        return T0_NS + int(self.colony.net.t * 1e9)


def local_api() -> tuple[LocalApi, list[tuple[str, list[str]]]]:
    colony = Colony(4)
    node = SteppedNode(colony)
    routes = api_routes(node, me=colony.identities[0].node_id, clock=node)  # type: ignore[arg-type]
    return LocalApi(routes, "token"), [(path, methods) for path, _, methods in routes]


_API, _ROUTES = local_api()
PARAM = re.compile(r"\{(\w+)\}")
HEX = st.binary(min_size=16, max_size=16).map(bytes.hex)


SEGMENT = st.text(max_size=8).filter(lambda t: "/" not in t and "?" not in t)
QUERIES = ["", "?limit=5", "?timeout_s=0", "?state=RUNNING", "?limit=x", "?timeout_s=-1e400",
           "?after=9&wait_s=0"]  # fmt: skip
BODIES = (
    json_values
    | bent({"spec": SPEC, "wait_s": 0})
    | bent({"specs": [SPEC]})
    | bent({"processids": ["ab" * 16], "timeout_s": 0})
    | bent({"name": "e", "executortype": "py", "slots": 2})
)


@st.composite
def requests(draw: st.DrawFn) -> list[Any]:
    path, methods = draw(st.sampled_from(_ROUTES))
    path = PARAM.sub(lambda m: draw(HEX | SEGMENT), path)
    query = draw(st.sampled_from(QUERIES))
    text = json.dumps(draw(BODIES))
    raws = [text.encode(), b"", b"{", b"NaN", b'{"a": NaN}',
            text.replace("1", "Infinity", 1).encode()]  # fmt: skip
    raw = draw(st.sampled_from(raws))
    method = draw(st.sampled_from([*methods, "GET", "POST", "PUT"]))
    return [method, path + query, raw if draw(st.booleans()) else None]


@settings(max_examples=max(EXAMPLES * 3, 300), deadline=None, suppress_health_check=SLOW)
@given(requests() | plain)
def test_any_request_to_the_local_api_gets_an_answer_never_a_5xx(request: Any) -> None:
    status, media, body = run(_API._answer(request))
    assert status in (200, 400, 401, 403, 404, 405), (status, body)
    if media == "json":
        json.loads(body)  # the answer is JSON
    status, _, _ = run(_API._request(["GET", "/v1/status", None]))
    assert status == 200  # the node serves on


class Bytes:
    """A stream that hands out `data` in chunks of `size`."""

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size = data, max(1, size)

    async def receive_some(self, n: int) -> bytes:
        chunk, self.data = self.data[: self.size], self.data[self.size :]
        return chunk


def frame(value: Any) -> bytes:
    payload = msgpack.packb(value, use_bin_type=True)
    return len(payload).to_bytes(4, "big") + payload


@FUZZ
@given(st.binary(max_size=200) | st.just(frame(["GET", "/v1/status", None])).flatmap(mutated),
       st.integers(1, 64))  # fmt: skip
def test_the_local_sockets_frames_are_values_or_a_bad_frame(data: bytes, size: int) -> None:
    frames = _Frames(Bytes(data, size))  # type: ignore[arg-type]

    async def read_all() -> None:  # (in trio: a frame's read has a deadline)
        try:
            while await frames.read() is not None:
                pass
        except BadFrame:
            pass

    trio.run(read_all)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_a_spec_with_a_nan_is_a_bad_request_and_is_never_submitted(value: str) -> None:
    """Found by this fuzz: a spec whose args held Infinity was submitted, and every
    answer that named the process (its own, `ps`) failed to be written as JSON, closing
    the local socket's connection: Python's json reads NaN and Infinity, JSON has none."""
    spec = '{"funcname": "f", "args": [VALUE], "conditions": {"executortype": "py"}}'
    raw = ('{"spec": ' + spec.replace("VALUE", value) + "}").encode()
    before = run(_API._request(["GET", "/v1/processes", None]))[2]
    status, _, body = run(_API._request(["POST", "/v1/processes", raw]))
    assert status == 400 and b"not JSON" in body, body
    with pytest.raises(ColonyError, match="not a JSON number"):  # nor from a peer's record
        parse_spec({"funcname": "f", "args": [float(value)], "conditions": {"executortype": "py"}})
    status, _, listed = run(_API._request(["GET", "/v1/processes", None]))
    # (the node is the fuzz's above: what it submitted is still there, nothing more)
    assert status == 200 and json.loads(listed) == json.loads(before)


def test_an_endpoint_that_fails_fails_its_request_not_the_socket() -> None:
    async def broken(request: Any) -> Any:
        raise KeyError("a bug")

    async def fine(request: Any) -> Any:
        return {"ok": True}

    api = LocalApi([("/broken", broken, ["GET"]), ("/fine", fine, ["GET"])], "token")
    status, _, body = run(api._answer(["GET", "/broken", None]))
    assert status == 500 and api.counters["errors"] == 1, body
    assert run(api._answer(["GET", "/fine", None]))[0] == 200


@pytest.mark.parametrize("path", ["/v1/processes/batch", "/v1/processes/wait"])
def test_brief_is_true_or_false_or_a_bad_request(path: str) -> None:
    body = {"specs": [SPEC], "processids": ["00" * 16], "timeout_s": 0, "brief": "yes"}
    status, _, answer = run(_API._request(["POST", path, json.dumps(body).encode()]))
    assert status == 400 and b"brief must be true or false" in answer, answer
