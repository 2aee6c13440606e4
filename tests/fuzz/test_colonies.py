"""The Colonies gateway under fuzzed requests (issues 16 and 18): whatever arrives at
`POST /api` (bytes, JSON, well-signed requests of every RPC with bent fields, forged
signatures), the answer is a ColonyOS reply, no request fails with a bug, and the node
serves on. The gateway runs over node 0 of a stepped colony (the daemon's API view)."""

from __future__ import annotations

import base64
import json
from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from colonynode.node.core import requests as rq
from colonynode.node.daemon.colonies import ColoniesGateway, keys
from colonynode.node.daemon.colonies.rpc import RPCS
from colonynode.node.daemon.colonies.schedules import SCHEDULE_RPCS
from tests.fuzz.strategies import EXAMPLES, json_values
from tests.fuzz.test_inputs import SLOW, SPEC, SteppedNode, bent
from tests.node.colony import Colony

COLONY_KEY, STRANGER_KEY, EXECUTOR_KEY = "11" * 32, "22" * 32, "33" * 32
MSG = {"colonyname": "lab", "processid": "ab" * 16, "timeout": -1, "count": 5, "state": 0,
       "spec": {**SPEC, "conditions": {**SPEC["conditions"], "colonyname": "lab"}},
       "executor": {"executorname": "e", "executorid": "ee" * 32, "colonyname": "lab",
                    "executortype": "py"},
       "executorname": "e", "fun": {"executorname": "e", "colonyname": "lab", "funcname": "f"},
       "out": [1], "errors": ["x"], "message": "m", "since": 0, "processgraphid": "g",
       "attribute": {"key": "k", "value": "v", "targetid": "ab" * 16, "attributetype": 1},
       "attributeid": "aa", "parentprocessid": "ab" * 16, "insert": False,
       "cronid": "cc" * 16, "generatorid": "dd" * 16, "arg": "a",
       "cron": {"name": "c", "colonyname": "lab", "cronexpression": "0/5 * * * * *",
                "interval": -1, "workflowspec": json.dumps({"functionspecs": [SPEC]})},
       "generator": {"name": "g", "colonyname": "lab", "trigger": 2, "timeout": -1,
                     "workflowspec": {"functionspecs": [SPEC]}}}  # fmt: skip


def gateway() -> ColoniesGateway:
    colony = Colony(4)
    node = SteppedNode(colony)
    owner = colony.identities[0].node_id
    colony_id = keys.key_id(COLONY_KEY)
    colony.result(0, rq.ColoniesKeyChange("add_colony", colony_id, "lab", member=owner))
    executor = rq.ColoniesKeyChange("add_executor", keys.key_id(EXECUTOR_KEY), "e", "py",
                                    signer=colony_id)  # fmt: skip
    colony.result(0, executor)
    colony.result(0, rq.ColoniesKeyChange("approve", name="e", signer=colony_id))
    return ColoniesGateway(node)  # type: ignore[arg-type]


_GATEWAY = gateway()


def often(draw: st.DrawFn, p_in_10: int) -> bool:
    return draw(st.integers(0, 9)) < p_in_10


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Mostly well-formed, well-signed requests of every RPC, one field bent; now and
    then a forged signature, another payload type, a damaged payload or envelope."""
    served = [*RPCS, *SCHEDULE_RPCS]
    msgtype = draw(st.sampled_from([*served, "subscribeprocessmsg", "removeprocessmsg", ""]))
    msg = draw(bent(MSG)) if often(draw, 8) else draw(json_values)
    if isinstance(msg, dict) and often(draw, 9):
        msg = {**msg, "msgtype": msgtype}
    payload = base64.b64encode(json.dumps(msg).encode()).decode()
    if not often(draw, 9):
        payload = draw(st.text(max_size=40))
    key = draw(st.sampled_from([COLONY_KEY, EXECUTOR_KEY])) if often(draw, 8) else STRANGER_KEY
    signature = keys.sign(payload, key) if often(draw, 9) else draw(
        st.sampled_from(["", "00" * 65, "zz", keys.sign(payload + "x", key)]))  # fmt: skip
    payloadtype = msgtype if often(draw, 9) else draw(st.sampled_from([*served, "x"]))
    envelope: Any = {"payloadtype": payloadtype, "payload": payload, "signature": signature}
    if not often(draw, 9):
        envelope = draw(bent(envelope) | json_values)
    raw = json.dumps(envelope).encode()
    if often(draw, 9):
        return raw
    return draw(st.sampled_from([raw[: len(raw) // 2], b"", b"{", b"\xff\xfe"]))


@settings(max_examples=max(EXAMPLES * 2, 300), deadline=None, suppress_health_check=SLOW)
@given(bodies())
def test_any_request_to_the_colonies_api_gets_a_colonyos_reply_and_no_bug(raw: bytes) -> None:
    response = trio.run(_GATEWAY.answer, raw)
    reply = json.loads(bytes(response.body))
    payload = json.loads(base64.b64decode(reply["payload"]))
    if reply["error"]:
        assert reply["payloadtype"] == "error" and payload["status"] == response.status_code
        assert response.status_code in (400, 403, 404, 500) and payload["message"]
    else:
        assert response.status_code == 200
    assert _GATEWAY.counters["errors"] == 0  # no request failed with a bug
    ok = trio.run(_GATEWAY.answer, _version())
    assert ok.status_code == 200  # the node serves on


def _version() -> bytes:
    payload = base64.b64encode(json.dumps({"msgtype": "versionmsg"}).encode()).decode()
    return json.dumps({"payloadtype": "versionmsg", "payload": payload, "signature": ""}).encode()
