"""The Colonies-compatible API (issue 16) with pycolonies itself: its programs, each a
separate process, against a 3-node colony whose nodes all serve the API. Executors attach
through one node's gateway, submitters use another's; identities are secp256k1 keys the
owner-signed roster carries."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from colonynode.node.daemon.colonies.keys import key_id
from colonynode.sdk import Client
from tests.integration.harness import (
    Colony,
    Daemon,
    Executors,
    cli,
    cli_json,
    wait_until,
)

pytestmark = pytest.mark.integration

# A ColonyOS executor written with pycolonies' public API, as its examples are: a fresh
# key added and approved with the colony key, one function registered, then assign in a
# loop. It runs what it is given: `echo` returns its args, `sum` adds its args and its
# input (a workflow parent's output), `spawn` adds a `sum` step after itself to its
# workflow (addchild), `hang` never returns on an executor its args name
# (elsewhere it echoes), and code shipped in `env.code` (func_spec(func=<a function>)) is
# run.
EXECUTOR = """
import base64, os, sys, threading
from pycolonies import Crypto, colonies_client, func_spec

colonies, colonyname, colony_prvkey, _, _ = colonies_client()
name, executortype = sys.argv[1], sys.argv[2]
crypto = Crypto()
prvkey = crypto.prvkey()
colonies.add_executor({"executorname": name, "executorid": crypto.id(prvkey),
                       "colonyname": colonyname, "executortype": executortype}, colony_prvkey)
colonies.approve_executor(colonyname, name, colony_prvkey)
colonies.add_function(colonyname, name, "echo", prvkey)
print("registered", flush=True)
while True:
    try:
        process = colonies.assign(colonyname, 10, prvkey)
    except Exception as err:
        if "No process available" not in str(err):
            print("assign:", err, flush=True)
        continue
    spec = process.spec
    print("assigned", process.processid, spec.funcname, flush=True)
    colonies.add_log(process.processid, f"{name} runs {spec.funcname}", prvkey)
    if spec.funcname == "hang" and name in spec.args:
        threading.Event().wait()  # a run that never ends, until the test kills it
    if "code" in spec.env:
        exec(base64.b64decode(spec.env["code"]).decode())
        out = [eval(spec.funcname)(*spec.args)]
    elif spec.funcname == "sum":
        out = [sum(int(x) for x in list(spec.args) + list(process.input or []))]
    elif spec.funcname == "spawn":  # a step after this one, in its workflow
        later = func_spec(func="sum", args=[100], colonyname=colonyname,
                          executortype=executortype, maxexectime=30, maxretries=3)
        colonies.add_child(process.processgraphid, process.processid, "", later, "later",
                           False, prvkey)
        out = [1]
    elif spec.funcname == "fail":
        colonies.fail(process.processid, ["failed on purpose"], prvkey)
        continue
    else:
        out = list(spec.args)
    colonies.close(process.processid, out, prvkey)
"""

# A submitter: one function spec, waited for over /pubsub, its output printed as JSON.
SUBMIT = """
import json, sys
from pycolonies import colonies_client, func_spec

colonies, colonyname, _, _, prvkey = colonies_client()
funcname, executortype, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
spec = func_spec(func=funcname, args=args, colonyname=colonyname,
                 executortype=executortype, maxexectime=int(sys.argv[4]), maxretries=5)
process = colonies.submit_func_spec(spec, prvkey)
process = colonies.wait(process, 60, prvkey)
logs = colonies.get_process_log(colonyname, process.processid, 100, 0, prvkey)
print(json.dumps({"processid": process.processid, "state": process.state,
                  "output": process.output, "logs": [ln["message"] for ln in logs],
                  "initiator": process.initiatorname}))
"""

# Code shipping, as pycolonies' python_executor example does it.
SHIP = """
import json
from pycolonies import colonies_client, func_spec

def mul(a, b):
    return a * b

colonies, colonyname, _, _, prvkey = colonies_client()
spec = func_spec(func=mul, args=[6, 7], colonyname=colonyname, executortype="pycol",
                 maxexectime=30, maxretries=3)
process = colonies.wait(colonies.submit_func_spec(spec, prvkey), 60, prvkey)
print(json.dumps({"output": process.output}))
"""

# A workflow of two steps: the child sums its args and its parent's output.
WORKFLOW = """
import json
from pycolonies import Workflow, colonies_client, func_spec

colonies, colonyname, _, _, prvkey = colonies_client()
parent = func_spec(func="sum", args=[1, 2], colonyname=colonyname, executortype="pycol",
                   maxexectime=30, maxretries=3)
child = func_spec(func="sum", args=[10], colonyname=colonyname, executortype="pycol",
                  maxexectime=30, maxretries=3)
parent.nodename, child.nodename = "parent", "child"
child.conditions.dependencies.append("parent")
graph = colonies.submit_workflow(Workflow(colonyname=colonyname, functionspecs=[parent, child]),
                                 prvkey)
found = colonies.find_process("child", graph.processids, prvkey)
found = colonies.wait(found, 60, prvkey)
print(json.dumps({"graph": graph.processgraphid, "roots": graph.rootprocessids,
                  "input": found.input, "output": found.output,
                  "state": colonies.get_processgraph(graph.processgraphid, prvkey).state}))
"""

FUNCTIONS = """
from colonynode.sdk import function

@function
def add(a, b):
    return a + b
"""


def gateway_env(d: Daemon) -> dict[str, str]:
    env: dict[str, str] = cli_json("gateway", "env", "--data-dir", str(d.dir))
    return env


def python(env: dict[str, str], code: str, *args: str, timeout_s: float = 90) -> Any:
    """Run a pycolonies program (a file: code shipping reads its source) to its end; its
    last line of output, as JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "program.py"
        path.write_text(code)
        argv = [sys.executable, str(path), *args]
        done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env},
                              timeout=timeout_s, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout.strip().splitlines()[-1])


class PyExecutors:
    """pycolonies executors (EXECUTOR), each its own process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, env: dict[str, str], name: str, executortype: str = "pycol") -> None:
        log = (self.root / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-c", EXECUTOR, name, executortype], env={**os.environ, **env},
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        wait_until(f"{name} registered", lambda: "registered" in self.log(name), timeout_s=30)

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        for p in self.procs.values():
            p.kill()
            p.wait(timeout=10)


@pytest.fixture
def gateways(colony: Colony, tmp_path: Path) -> Iterator[tuple[list[Daemon], PyExecutors]]:
    """a (owner), b, c: three voters, each serving the Colonies API on a free port."""
    a = colony.daemon("a")
    a.init("lab")
    a.extra = ["--colonies-port", "0"]
    a.start()
    nodes = [a]
    for name in ("b", "c"):
        d = colony.daemon(name)
        d.extra = ["--colonies-port", "0"]
        d.join(a.addr(), a.invite())
        nodes.append(d)
    cli("voters", "set", "a", "b", "c", "--data-dir", str(a.dir))
    for d in nodes:
        wait_until(f"{d.name}: 3 voters", lambda d=d: sum(m["voter"] for m in d.members()) == 3)
        wait_until(f"{d.name}: mesh", lambda d=d: d.status()["connected_peers"] == 2)
    ex = PyExecutors(tmp_path)
    try:
        yield nodes, ex
    finally:
        ex.stop_all()


def with_colony_key(env: dict[str, str], owner: dict[str, str]) -> dict[str, str]:
    """A non-owner node's exports plus the colony key (only the owner's node prints it:
    the user copies it, as a ColonyOS user copies theirs)."""
    return {**env, "COLONIES_COLONY_PRVKEY": owner["COLONIES_COLONY_PRVKEY"]}


def test_pycolonies_programs_run_unmodified_across_gateways(
    gateways: tuple[list[Daemon], PyExecutors], tmp_path: Path
) -> None:
    (a, b, c), ex = gateways
    env_a, env_b, env_c = gateway_env(a), gateway_env(b), gateway_env(c)
    assert "COLONIES_COLONY_PRVKEY" in env_a and "COLONIES_COLONY_PRVKEY" not in env_b
    assert env_b["COLONIES_COLONY_NAME"] == "lab" and env_b["COLONIES_SERVER_TLS"] == "false"
    ex.start(with_colony_key(env_b, env_a), "py-b")  # added and approved through b
    got = python(env_c, SUBMIT, "echo", "pycol", '["helloworld"]', "30")  # submitted via c
    assert got["output"] == ["helloworld"] and got["state"] == 2
    assert got["logs"] == ["py-b runs echo"] and got["initiator"] == "c-user"
    # The same process in the colony's own view, on the node that neither served it.
    view = Client(a.dir).get(got["processid"])
    assert view["state"] == "SUCCESS" and view["executor"] == "py-b"
    assert view["initiator"] == {"id": key_id(env_c["COLONIES_PRVKEY"]), "name": "c-user"}
    # Code shipping (python_executor's way) and a workflow whose child gets its parent's
    # output as input.
    assert python(env_c, SHIP) == {"output": [42]}
    flow = python(env_a, WORKFLOW)
    assert flow["input"] == [3] and flow["output"] == [13] and flow["state"] == 2
    assert len(flow["roots"]) == 1
    # The roster carries the executor: every gateway lists it, approved.
    for env in (env_a, env_c):
        listed = rpc(env, "getexecutorsmsg", {"colonyname": "lab"}, env["COLONIES_PRVKEY"])
        assert [(e["executorname"], e["state"]) for e in listed] == [("py-b", 1)]


def test_gateway_and_native_processes_cross_over(
    gateways: tuple[list[Daemon], PyExecutors], tmp_path: Path
) -> None:
    """A process submitted with colonynode's SDK runs on a pycolonies executor, and one
    submitted with pycolonies on a `colonynode executor run` executor."""
    (a, b, c), ex = gateways
    ex.start(with_colony_key(gateway_env(b), gateway_env(a)), "py-b")
    native = Executors(tmp_path, FUNCTIONS)
    try:
        native.start(c)
        with Client(a.dir) as client:
            done = client.run("echo", "from-sdk", executortype="pycol", timeout_s=60)
            assert done["output"] == ["from-sdk"] and done["executor"] == "py-b"
        got = python(gateway_env(b), SUBMIT, "add", "py", "[2, 3]", "30")
        assert got["output"] == [5] and got["state"] == 2
    finally:
        native.stop_all()


def rpc(env: dict[str, str], msgtype: str, msg: dict[str, Any], prvkey: str,
        signature: str | None = None, payloadtype: str | None = None) -> Any:  # fmt: skip
    """One signed Colonies RPC with pycolonies' own signer; the payload on success, else
    raises RpcFailed with the status and message."""
    from crypto import Crypto  # pycolonies' signer (a top-level module of its package)

    payload = base64.b64encode(json.dumps({**msg, "msgtype": msgtype}).encode()).decode()
    if signature is None:
        signature = Crypto().sign(payload, prvkey)
    body = {"payloadtype": payloadtype or msgtype, "payload": payload, "signature": signature}
    url = f"http://{env['COLONIES_SERVER_HOST']}:{env['COLONIES_SERVER_PORT']}/api"
    return _reply(requests.post(url, data=json.dumps(body), timeout=30))


class RpcFailed(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


def _reply(resp: requests.Response) -> Any:
    body = json.loads(resp.content)
    payload = json.loads(base64.b64decode(body["payload"]))
    if body["error"]:
        assert resp.status_code == payload["status"]
        raise RpcFailed(payload["status"], payload["message"])
    assert resp.status_code == 200
    return payload


def test_strangers_forgeries_and_bad_requests_are_refused_and_counted(
    gateways: tuple[list[Daemon], PyExecutors],
) -> None:
    from crypto import Crypto

    (_, b, _), _ = gateways
    env = gateway_env(b)
    spec = {"funcname": "echo", "args": [], "conditions": {"colonyname": "lab",
            "executortype": "pycol"}}  # fmt: skip
    stranger = Crypto().prvkey()
    with pytest.raises(RpcFailed) as refused:
        rpc(env, "submitfuncspecmsg", {"spec": spec}, stranger)
    assert refused.value.status == 403 and "not a member" in refused.value.message
    # A stranger cannot add an executor either (only the colony key can).
    executor = {"executorname": "x", "executorid": Crypto().id(stranger), "colonyname": "lab",
                "executortype": "pycol"}  # fmt: skip
    with pytest.raises(RpcFailed) as refused:
        rpc(env, "addexecutormsg", {"executor": executor}, stranger)
    assert refused.value.status == 403
    # A signature made by the user's key over other bytes recovers another key (a forgery
    # of the user): refused; one that is no signature at all too.
    user = env["COLONIES_PRVKEY"]
    forged = Crypto().sign("c29tZXRoaW5nIGVsc2U=", user)
    with pytest.raises(RpcFailed) as refused:
        rpc(env, "submitfuncspecmsg", {"spec": spec}, user, signature=forged)
    assert refused.value.status == 403
    with pytest.raises(RpcFailed) as refused:
        rpc(env, "submitfuncspecmsg", {"spec": spec}, user, signature="00" * 65)
    assert refused.value.status == 403
    with pytest.raises(RpcFailed) as bad:
        rpc(env, "submitfuncspecmsg", {"spec": spec}, user, payloadtype="getprocessmsg")
    assert bad.value.status == 400 and "does not match" in bad.value.message
    with pytest.raises(RpcFailed) as bad:
        rpc(env, "removeallprocessesmsg", {"colonyname": "lab"}, user)
    assert bad.value.status == 400 and "removeallprocessesmsg" in bad.value.message
    url = f"http://{env['COLONIES_SERVER_HOST']}:{env['COLONIES_SERVER_PORT']}/api"
    with pytest.raises(RpcFailed) as bad:
        _reply(requests.post(url, data=b"{not json", timeout=30))
    assert bad.value.status == 400
    with pytest.raises(RpcFailed) as bad:  # over 1 MiB: refused before it is read whole
        _reply(requests.post(url, data=b"x" * (2 << 20), timeout=30))
    assert bad.value.status == 400 and "over" in bad.value.message
    # /pubsub: a stranger's subscription and a frame that is no JSON get an error frame.
    from websocket import create_connection

    ws_url = f"ws://{env['COLONIES_SERVER_HOST']}:{env['COLONIES_SERVER_PORT']}/pubsub"
    sub = {"msgtype": "subscribeprocessmsg", "processid": "ab" * 16, "state": 2, "timeout": 5,
           "colonyname": "lab", "executortype": "pycol"}  # fmt: skip
    payload = base64.b64encode(json.dumps(sub).encode()).decode()
    for frame, status in ((json.dumps({"payloadtype": "subscribeprocessmsg", "payload": payload,
                                       "signature": Crypto().sign(payload, stranger)}), 403),
                          ("{", 400)):  # fmt: skip
        ws = create_connection(ws_url, timeout=30)
        ws.send(frame)
        reply = json.loads(ws.recv())
        ws.close()
        assert reply["error"] and json.loads(base64.b64decode(reply["payload"]))["status"] == status
    # Nothing was submitted, and the node counted each refusal and serves on.
    assert Client(b.dir).list() == []
    counters = b.status()["colonies"]
    assert counters["denied"] >= 4 and counters["bad_signatures"] >= 1
    assert counters["bad_requests"] >= 5 and counters["unserved"] == 1
    assert rpc(env, "getcolonymsg", {"colonyname": "lab"}, user)["name"] == "lab"
    assert requests.get(url.replace("/api", "/health"), timeout=30).status_code == 200


def test_a_killed_gateway_executor_s_process_finishes_elsewhere(
    gateways: tuple[list[Daemon], PyExecutors],
) -> None:
    """The gateway heartbeats for a pycolonies executor only within the run's
    maxexectime: one SIGKILLed mid-run loses its lease, and the process is retried on
    another executor and commits once."""
    (a, b, c), ex = gateways
    env_a = gateway_env(a)
    ex.start(with_colony_key(gateway_env(b), env_a), "doomed", executortype="hangs")
    with Client(c.dir) as client:
        pid = client.submit(
            {
                "funcname": "hang",
                "args": ["doomed"],
                "maxexectime": 3,
                "maxretries": 5,
                "conditions": {"executortype": "hangs"},
            }
        )["processid"]
        wait_until("the hang runs", lambda: f"assigned {pid}" in ex.log("doomed"), timeout_s=30)
        ex.procs["doomed"].send_signal(signal.SIGKILL)
        ex.procs["doomed"].wait(timeout=10)
        ex.start(env_a, "rescuer", executortype="hangs")
        done = client.wait(pid, timeout_s=90)
        assert done["state"] == "SUCCESS" and done["output"] == ["doomed"]
        assert done["executor"] == "rescuer" and done["retries"] >= 1
        assert ex.log("rescuer").count(f"assigned {pid}") == 1


SPAWN = """
import json
from pycolonies import Workflow, colonies_client, func_spec

colonies, colonyname, _, _, prvkey = colonies_client()
step = func_spec(func="spawn", args=[], colonyname=colonyname, executortype="pycol",
                 maxexectime=30, maxretries=3)
graph = colonies.submit_workflow(Workflow(colonyname=colonyname, functionspecs=[step]), prvkey)
colonies.wait(colonies.get_process(graph.processids[0], prvkey), 60, prvkey)
steps = colonies.get_processes_for_workflow(graph.processgraphid, colonyname, prvkey)
later = [s for s in steps if s["spec"]["nodename"] == "later"][0]
later = colonies.wait(colonies.get_process(later["processid"], prvkey), 60, prvkey)
print(json.dumps({"steps": len(steps), "input": later.input, "output": later.output,
                  "parents": later.parents}))
"""


def test_a_pycolonies_executor_adds_a_step_to_its_running_workflow(
    gateways: tuple[list[Daemon], PyExecutors],
) -> None:
    (a, b, c), ex = gateways
    ex.start(with_colony_key(gateway_env(b), gateway_env(a)), "py-b")
    got = python(gateway_env(c), SPAWN)
    assert got["steps"] == 2 and got["input"] == [1] and got["output"] == [101]
    assert len(got["parents"]) == 1


CRON = """
import json, sys
from pycolonies import Workflow, colonies_client, func_spec

colonies, colonyname, _, _, prvkey = colonies_client()
step = func_spec(func="echo", args=["tick"], colonyname=colonyname, executortype="pycol",
                 maxexectime=30, maxretries=3)
step.nodename = "tick"
workflow = Workflow(colonyname=colonyname, functionspecs=[step])
if sys.argv[1] == "add":
    cron = colonies.add_cron("ticker", "0/1 * * * * *", False, workflow, colonyname, prvkey)
    print(json.dumps({"cronid": cron["cronid"], "name": cron["name"],
                      "listed": [c["name"] for c in colonies.get_crons(colonyname, 10, prvkey)]}))
else:
    colonies.del_cron(sys.argv[2], prvkey)
    print(json.dumps({"listed": [c["name"] for c in colonies.get_crons(colonyname, 10, prvkey)]}))
"""


def test_a_pycolonies_cron_fires_on_the_colony_and_is_removed(
    gateways: tuple[list[Daemon], PyExecutors],
) -> None:
    (a, b, c), ex = gateways
    env_b = gateway_env(b)
    ex.start(with_colony_key(env_b, gateway_env(a)), "py-b")
    added = python(gateway_env(c), CRON, "add")
    assert added["name"] == "ticker" and added["listed"] == ["ticker"]
    with Client(a.dir) as client:

        def ticked() -> list[dict[str, Any]]:
            return [p for p in client.list("SUCCESS") if p.get("cronid") == added["cronid"]]

        done = wait_until("a tick ran", ticked, timeout_s=30)
        assert done[0]["output"] == ["tick"] and done[0]["executor"] == "py-b"
    assert python(env_b, CRON, "remove", added["cronid"])["listed"] == []
