"""The Colonies gateway's pieces that need no daemon: ColonyOS keys and signatures
against pycolonies' own signer, and our answers in the shapes pycolonies' models accept."""

from __future__ import annotations

import pytest
from crypto import Crypto  # pycolonies' pure-Python secp256k1 (a top-level module of it)
from model import Process, ProcessGraph  # pycolonies' pydantic models

from colonynode.core.process import parse_spec, spec_to_json
from colonynode.node.daemon.colonies import keys, shapes

SPEC = spec_to_json(parse_spec({"funcname": "add", "args": [1, 2], "priority": 3,
                                "conditions": {"executortype": "py"}}))  # fmt: skip


def test_ids_and_signatures_agree_with_pycolonies() -> None:
    theirs = Crypto()
    prvkey = theirs.prvkey()
    assert keys.key_id(prvkey) == theirs.id(prvkey)
    payload = "eyJtc2d0eXBlIjogInZlcnNpb25tc2cifQ=="
    assert keys.recover_id(payload, theirs.sign(payload, prvkey)) == theirs.id(prvkey)
    assert keys.sign(payload, prvkey) == theirs.sign(payload, prvkey)  # RFC 6979: the same
    other = keys.recover_id(payload + "x", theirs.sign(payload, prvkey))
    assert other != theirs.id(prvkey)  # the signature of other bytes names another key


@pytest.mark.parametrize("signature", ["", "zz" * 65, "00" * 64, "00" * 65, "ab" * 66])
def test_a_signature_that_is_none_is_refused(signature: str) -> None:
    with pytest.raises(keys.BadSignature):
        keys.recover_id("cGF5bG9hZA==", signature)


def view(state: str, **kw: object) -> dict[str, object]:
    base = {"processid": "ab" * 16, "state": state, "spec": SPEC, "output": [], "errors": [],
            "retries": 0, "executor": None, "submissiontime": "2026-12-07T02:00:00.000000001Z",
            "starttime": None, "endtime": None, "attributes": [], "processgraphid": None,
            "parents": [], "children": [], "input": []}  # fmt: skip
    return {**base, **kw}


def test_a_process_reads_as_pycolonies_process() -> None:
    done = view("SUCCESS", output=[3], executor="e1", starttime="2026-12-07T02:00:01.5Z",
                endtime="2026-12-07T02:00:02Z",
                attributes=[{"key": "k", "value": "v", "attributetype": "OUT"}])  # fmt: skip
    got = Process(**shapes.process_json(done, "lab", lambda name: "e" * 64))
    assert (got.state, got.output, got.assignedexecutorid) == (2, [3], "e" * 64)
    assert got.spec.funcname == "add" and got.spec.conditions.executortype == "py"
    assert got.prioritytime == 1_796_608_800_000_000_001 - 3 * 86_400 * 10**9
    assert got.attributes[0].attributetype == 1 and got.endtime.year == 2026
    waiting = Process(**shapes.process_json(view("WAITING"), "lab", lambda name: ""))
    assert waiting.starttime.year == 1 and not waiting.isassigned  # Go's zero time


def test_a_workflow_reads_as_pycolonies_process_graph() -> None:
    parent = view("SUCCESS", processid="01" * 16, processgraphid="g", children=["02" * 16])
    child = view("RUNNING", processid="02" * 16, processgraphid="g", parents=["01" * 16])
    graph = ProcessGraph(**shapes.graph_json("g", "lab", [parent, child]))
    assert graph.state == 1 and graph.rootprocessids == ["01" * 16]
    assert graph.processids == ["01" * 16, "02" * 16]
    failed = shapes.graph_json("g", "lab", [parent, view("FAILED", parents=["01" * 16])])
    assert failed["state"] == 3
