"""The local API over the data dir's Unix socket: the same answers as over HTTP, a bad
token or frame is refused and counted, and the node serves on (real daemon)."""

from __future__ import annotations

import json
import socket
import stat

import msgpack
import pytest

from colonynode.node.apiclient import ApiClient, ApiError
from tests.integration.harness import Colony, Daemon, wait_until

SPEC = {"funcname": "add", "args": [1, 2], "conditions": {"executortype": "nobody"}}


@pytest.fixture
def founder(colony: Colony) -> Daemon:
    return colony.founder("a")


def clients(d: Daemon) -> tuple[ApiClient, ApiClient]:
    """The daemon's socket client (as the CLI and SDK make it) and an HTTP one."""
    handle = json.loads((d.dir / "api.json").read_text())
    over_socket = ApiClient.for_data_dir(d.dir)
    assert over_socket.socket_path == str(d.dir / "api.sock") == handle["socket"]
    return over_socket, ApiClient(handle["url"], handle["token"])


def frame(value: object) -> bytes:
    payload = msgpack.packb(value, use_bin_type=True)
    return len(payload).to_bytes(4, "big") + payload


def read_frame(sock: socket.socket) -> object:
    def exactly(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    return msgpack.unpackb(exactly(int.from_bytes(exactly(4), "big")), raw=False)


def test_the_socket_answers_as_http_does(founder: Daemon) -> None:
    path = founder.dir / "api.sock"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    over_socket, over_http = clients(founder)
    before = over_socket.get("/v1/status")["local_api"]["requests"]
    # A process submitted over one is read over the other, in the same words.
    proc = over_socket.post("/v1/processes", {"spec": SPEC})
    assert proc["state"] == "WAITING"
    pid = proc["processid"]
    assert (
        over_http.get(f"/v1/processes/{pid}")["spec"]
        == over_socket.get(f"/v1/processes/{pid}")["spec"]
    )
    listed = over_socket.get("/v1/processes", state="WAITING")
    assert pid in [p["processid"] for p in listed]
    waited = over_socket.get(f"/v1/processes/{pid}/wait", timeout_s=0.2)
    assert waited["state"] == "WAITING"
    # Errors keep their status, code and message.
    for client in (over_socket, over_http):
        with pytest.raises(ApiError) as not_found:
            client.get(f"/v1/processes/{'ab' * 16}")
        assert not_found.value.status == 404
        with pytest.raises(ApiError) as bad:
            client.post("/v1/processes", {"spec": {"funcname": ""}})
        assert bad.value.status == 400 and "funcname" in str(bad.value)
        with pytest.raises(ApiError) as no_route:
            client.get("/v1/nowhere")
        assert no_route.value.status == 404
    assert "colonynode" in over_socket.get_text("/metrics")
    after = over_socket.get("/v1/status")["local_api"]["requests"]
    assert after - before == 9  # status, submit, get, list, wait, 3 errors, metrics
    over_socket.close()
    founder.stop()
    assert not path.exists()


def test_a_bad_token_or_frame_is_refused_and_counted_and_the_node_serves_on(
    founder: Daemon,
) -> None:
    path = str(founder.dir / "api.sock")
    over_socket, _ = clients(founder)
    with socket.socket(socket.AF_UNIX) as s:  # a wrong token: 401, closed
        s.connect(path)
        s.sendall(frame(["hello", "not-the-token"]))
        status, _, body = read_frame(s)  # type: ignore[misc]
        assert status == 401 and b"token" in body
        with pytest.raises(EOFError):
            read_frame(s)
    token = json.loads((founder.dir / "api.json").read_text())["token"]
    with socket.socket(socket.AF_UNIX) as s:  # a request of the wrong shape: 400
        s.connect(path)
        s.sendall(frame(["hello", token]))
        assert read_frame(s)[0] == 200  # type: ignore[index]
        s.sendall(frame({"GET": "/v1/status"}))
        assert read_frame(s)[0] == 400  # type: ignore[index]
        s.sendall(frame(["GET", "/v1/status", None]))  # the connection still serves
        status, media, body = read_frame(s)  # type: ignore[misc]
        assert status == 200 and media == "json" and json.loads(body)["name"] == "a"
        s.sendall((1 << 30).to_bytes(4, "big"))  # a frame over the cap: closed
        with pytest.raises(EOFError):
            read_frame(s)
    with socket.socket(socket.AF_UNIX) as s:  # not msgpack: closed
        s.connect(path)
        s.sendall(frame(["hello", token]))
        read_frame(s)
        s.sendall(b"\x00\x00\x00\x02\xc1\xc1")
        with pytest.raises(EOFError):
            read_frame(s)
    counters = wait_until(
        "the bad frames counted",
        lambda: (c := over_socket.get("/v1/status")["local_api"])["bad_frames"] == 2 and c,
    )
    assert counters["unauthorized"] == 1 and counters["bad_requests"] == 1
    assert over_socket.post("/v1/processes", {"spec": SPEC})["state"] == "WAITING"


def test_a_client_made_before_a_restart_is_refused_and_a_new_one_served(colony: Colony) -> None:
    a = colony.founder("a")
    before = ApiClient.for_data_dir(a.dir)
    assert before.get("/v1/status")["name"] == "a"
    a.stop()
    a.start()
    # Its connection is gone: the next request opens another, with the old token,
    # which the restarted daemon (a new token) refuses; a client made now is served.
    with pytest.raises(ApiError) as refused:
        before.get("/v1/status")
    assert refused.value.status == 401
    assert ApiClient.for_data_dir(a.dir).get("/v1/status")["name"] == "a"
