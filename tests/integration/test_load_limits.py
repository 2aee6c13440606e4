"""A node under load keeps serving others (issue 18, resource limits), with a real
daemon: a flood of submissions gets an answer or a typed refusal for each and loses none
it acknowledged; HTTP connections that never finish a request are closed (hypercorn's
keep-alive timeout, 5 s) and a client that never reads its answers holds only its own
connection; meanwhile a status request is answered within a second or two."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import pytest

from colonynode.core.errors import ColonyError
from colonynode.node.apiclient import ApiClient
from tests.integration.harness import Colony, Daemon, cli, wait_until

pytestmark = pytest.mark.integration

STATUS_S_MAX = 3.0  # a status answer under load (~0.01 s idle); a starved node takes far more


def http_client(d: Daemon) -> ApiClient:
    handle = json.loads((d.dir / "api.json").read_text())
    return ApiClient(str(handle["url"]), str(handle["token"]))


def http_addr(d: Daemon) -> tuple[str, int]:
    url = json.loads((d.dir / "api.json").read_text())["url"]
    host, port = url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    return host, int(port)


def slowest_status(d: Daemon, busy: Any) -> float:
    """Ask for the status back to back while `busy()` is true (at least once); the
    slowest answer's time. Over HTTP: the path a flood would take too."""
    client = http_client(d)
    worst = 0.0
    while True:
        start = time.monotonic()
        assert client.get("/v1/status")["colony"] == "lab"
        worst = max(worst, time.monotonic() - start)
        if not busy():
            return worst


def test_a_submission_flood_is_answered_and_others_are_served(colony: Colony) -> None:
    a = colony.founder("a")
    specs = [{"funcname": "noop", "args": [i], "conditions": {"executortype": "none"}}
             for i in range(1000)]  # fmt: skip
    acked: list[str] = []
    refused: list[str] = []

    def flood() -> None:
        client = ApiClient.for_data_dir(a.dir)  # its own connection
        for _ in range(3):
            try:
                reply = client.post("/v1/processes/batch", {"specs": specs})
            except ColonyError as exc:  # a typed refusal of the whole request
                refused.append(str(exc))
                continue
            for proc in reply["processes"]:
                if "error" in proc:
                    assert proc["error"]["code"] and proc["error"]["message"]
                    refused.append(proc["error"]["message"])
                else:
                    assert proc["state"] == "WAITING"
                    acked.append(proc["processid"])

    threads = [threading.Thread(target=flood) for _ in range(2)]
    for t in threads:
        t.start()
    worst = slowest_status(a, lambda: any(t.is_alive() for t in threads))
    for t in threads:
        t.join()
    assert len(acked) + len(refused) == 6000 and acked
    assert worst < STATUS_S_MAX, f"a status took {worst:.2f} s during the flood"
    listed = ApiClient.for_data_dir(a.dir).get("/v1/processes", state="WAITING", limit=10_000)
    assert {p["processid"] for p in listed} == set(acked)  # none acknowledged was lost
    one = cli("run", "noop", "--executortype", "none", "--data-dir", str(a.dir))
    assert len(one.stdout.strip()) == 32  # and it takes new work


def test_stalled_and_unread_http_connections_hold_only_themselves(colony: Colony) -> None:
    a = colony.founder("a")
    host, port = http_addr(a)
    token = json.loads((a.dir / "api.json").read_text())["token"]
    stalled = []
    for _ in range(300):  # a request never finished (slowloris)
        s = socket.create_connection((host, port))
        s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
        stalled.append(s)
    unread = socket.create_connection((host, port))  # asks and asks, never reads
    ask = (f"GET /v1/processes?limit=10000 HTTP/1.1\r\nHost: x\r\n"
           f"Authorization: Bearer {token}\r\n\r\n").encode()  # fmt: skip
    unread.setblocking(False)
    sent = 0
    try:
        while sent < 200:
            unread.send(ask)
            sent += 1
    except BlockingIOError:
        pass  # its buffers are full: the node stopped reading it
    start = time.monotonic()
    assert slowest_status(a, lambda: time.monotonic() - start < 1.0) < STATUS_S_MAX

    def all_closed() -> bool:
        for s in stalled:
            s.settimeout(0.01)
            try:
                if s.recv(1) != b"":
                    return False
            except TimeoutError:
                return False
            except OSError:
                pass  # reset: closed too
        return True

    wait_until("the node to close the stalled connections", all_closed, timeout_s=15)
    assert http_client(a).get("/v1/status")["colony"] == "lab"
    for s in [*stalled, unread]:
        s.close()
