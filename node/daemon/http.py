"""The local HTTP/JSON API (DESIGN.md §10): 127.0.0.1 only, bearer token from the data dir.

Each handler turns its request into typed arguments (a `node.core.requests` request,
validated here: ids, numbers, specs) and asks the node: `await node.call(req)` for
what NodeCore decides, or one of the node's local reads. Errors are JSON
``{"error": {"code": ..., "message": ...}}``: PermissionDenied 403, NotFound 404, any
other ColonyError (and a field of the wrong type) 400; the CLI prints the message as
one line. Documented in docs/api.md.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from colonynode.consensus import requests as lrq
from colonynode.core.errors import ColonyError, ValidationError
from colonynode.core.ids import NodeId
from colonynode.core.process import parse_spec, parse_workflow
from colonynode.node.core import NotFound, PermissionDenied
from colonynode.node.core import requests as rq
from colonynode.node.daemon._http_args import (
    API_BODY_BYTES_MAX,
    LEASE_PIDS_MAX,
    _advert,
    _body,
    _brief,
    _lease_close,
    _lease_submit,
    _number,
    _revision,
    _strings,
    nid_of,
    pid_of,
    result_json,
)

__all__ = [
    "API_BODY_BYTES_MAX",
    "ApiRoute",
    "NodeApi",
    "answer",
    "api_routes",
    "build_app",
    "nid_of",
    "pid_of",
]

RECORDS_LIST_MAX = 10_000
SUBMIT_BATCH_MAX = 1000  # specs in one POST /v1/processes/batch
CLOSES_MAX = 1000  # results in one POST /v1/executors/{eid}/closes
SUBMIT_WAIT_MAX_S = 60.0  # the longest POST /v1/processes waits with `wait_s`
CLOSED_NAMES = ("SUCCESS", "FAILED", "CANCELLED")


class NodeApi(Protocol):
    """What the daemon offers its API (node.daemon.run.Node)."""

    async def call(self, req: Any) -> Any: ...
    async def call_many(self, reqs: list[Any]) -> list[Any]: ...
    def status(self) -> dict[str, Any]: ...
    def members(self) -> list[dict[str, Any]]: ...
    def peers(self) -> list[dict[str, Any]]: ...
    def records(self, kind: str | None, limit: int) -> list[dict[str, Any]]: ...
    def list_processes(
        self, state: str | None, limit: int, offset: int, filters: dict[str, str]
    ) -> list[dict[str, Any]]: ...
    def metrics_text(self) -> str: ...
    def process_counts(self) -> dict[str, int]: ...
    async def colonies_env(self) -> dict[str, str]: ...


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


Handler = Callable[[Request], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Any]]  # a Response, or what goes out as JSON
ApiRoute = tuple[str, Endpoint, list[str]]  # path template, endpoint, methods


def _failure(status: int, code: str, message: str) -> tuple[int, Any]:
    return status, {"error": {"code": code, "message": message}}


async def answer(fn: Endpoint, request: Request) -> tuple[int, Any]:
    """Run an endpoint: (200, its result), or the error's status and JSON body. The
    HTTP app and the local socket (local_api.py) answer through this one mapping."""
    try:
        return 200, await fn(request)
    except PermissionDenied as exc:
        return _failure(403, "forbidden", str(exc))
    except NotFound as exc:
        return _failure(404, "not_found", str(exc))
    except ColonyError as exc:
        return _failure(400, type(exc).__name__, str(exc))
    except (ValueError, TypeError) as exc:  # a field of the wrong type or range
        return _failure(400, "bad_request", f"bad request: {exc}")


def build_app(node: NodeApi, token: str, *, me: NodeId, clock: Any) -> Starlette:
    """The API over HTTP: every route of `api_routes`, behind the bearer token, and the
    dashboard's page at /ui (node/daemon/ui.py: it holds no data, its script reads these
    routes with the token)."""
    expected = f"Bearer {token}".encode()

    def guarded(fn: Endpoint) -> Handler:
        async def endpoint(request: Request) -> Response:
            got = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(got, expected):
                return _error(401, "unauthorized", "missing or wrong API token")
            status, result = await answer(fn, request)
            if isinstance(result, Response):
                return result
            return JSONResponse(result, status_code=status)

        return endpoint

    from colonynode.node.daemon.ui import ui_routes

    routes = api_routes(node, me=me, clock=clock)
    guarded_routes = [Route(path, guarded(fn), methods=m) for path, fn, m in routes]
    return Starlette(routes=[*guarded_routes, *ui_routes()])


def api_routes(node: NodeApi, *, me: NodeId, clock: Any) -> list[ApiRoute]:
    """Every endpoint of the API. `me`: this node's id (the author of what the API
    publishes); `clock` gives `now_s()` (the driver's monotonic time) and `unix_ns()`."""

    def pid(request: Request) -> bytes:
        return pid_of(request.path_params["pid"])

    async def invite(request: Request) -> Any:
        body = await _body(request)
        roles = _strings(body.get("roles", ["executor", "submitter"]), "roles")
        ttl_s = body.get("ttl_s", 3600)
        if not isinstance(ttl_s, int | float) or isinstance(ttl_s, bool):
            raise ValidationError("ttl_s must be a number of seconds")
        return {"token": await node.call(rq.CreateInvite(roles, float(ttl_s)))}

    async def remove_member(request: Request) -> Any:
        who = (await _body(request)).get("member")
        if not isinstance(who, str) or not who:
            raise ValidationError("member must name a member (name or peer id)")
        return await node.call(rq.RemoveMember(who))

    async def voters(request: Request) -> Any:
        body = await _body(request)
        if body.get("auto") is True:
            never = body.get("never")
            grace = body.get("grace_s")
            if grace is not None and (
                isinstance(grace, bool) or not isinstance(grace, int | float)
            ):
                raise ValidationError("grace_s must be a number of seconds")
            return await node.call(rq.AutoVoters(
                None if never is None else _strings(never, "never"),
                None if grace is None else float(grace)))  # fmt: skip
        names = _strings(body.get("voters"), "voters")
        return await node.call(rq.SetVoters(names))

    async def publish(request: Request) -> Any:
        body = await _body(request)
        kind = body.get("kind")
        if not isinstance(kind, str) or not 0 < len(kind) <= 64:
            raise ValidationError("kind must be a string of 1..64 characters")
        return await node.call(rq.PublishRecord(kind, body.get("body")))

    async def records(request: Request) -> Any:
        kind = request.query_params.get("kind") or None
        limit = int(_number(request.query_params, "limit", 1000))
        return node.records(kind, max(0, min(limit, RECORDS_LIST_MAX)))

    async def lease_submit(request: Request) -> Any:
        req = _lease_submit(await _body(request), me, clock.unix_ns())
        return result_json(await node.call(req))

    async def lease_claim(request: Request) -> Any:
        body = await _body(request)
        pids = body.get("pids")
        if not isinstance(pids, list) or not 0 < len(pids) <= LEASE_PIDS_MAX:
            raise ValidationError(f"pids must be a list of 1..{LEASE_PIDS_MAX} hex process ids")
        lease_s = body.get("lease_s")
        req = lrq.ClaimLeases(
            tuple(pid_of(p) for p in pids), None if lease_s is None else _number(body, "lease_s", 0)
        )
        results = await node.call(rq.Lease(req))
        return {"results": [result_json(r, clock.now_s()) for r in results]}

    async def lease_close(request: Request) -> Any:
        return result_json(await node.call(_lease_close(await _body(request))))

    async def lease_read(request: Request) -> Any:
        return result_json(await node.call(rq.Lease(lrq.ReadRegister(pid(request)))))

    async def fs_add(request: Request) -> Any:
        return await node.call(_revision(await _body(request), clock.unix_ns(), me))

    async def fs_get(request: Request) -> Any:
        params = request.path_params
        return await node.call(rq.FsGet(params["label"], params["name"]))

    async def find_peer(request: Request) -> Any:
        peer_id = request.path_params["peer_id"]
        addrs = await node.call(rq.FindPeer(nid_of(peer_id)))
        return {"peer_id": peer_id, "found": bool(addrs), "addrs": list(addrs)}

    async def submit_process(request: Request) -> Any:
        """Submit; with `wait_s`, wait in the same request for the process to close (a
        call's two round trips in one): the process as it is then, closed or not."""
        body = await _body(request)
        spec = parse_spec(body.get("spec"))
        wait_s = min(_number(body, "wait_s", 0), SUBMIT_WAIT_MAX_S)
        proc = await node.call(rq.SubmitProcess(spec))
        if wait_s <= 0 or proc["state"] in CLOSED_NAMES:
            return proc
        return await node.call(rq.WaitProcess(pid_of(proc["processid"]), wait_s))

    async def submit_batch(request: Request) -> Any:
        body = await _body(request)
        specs, brief = body.get("specs"), _brief(body)
        if not isinstance(specs, list) or not 1 <= len(specs) <= SUBMIT_BATCH_MAX:
            raise ValidationError(f"specs: a list of 1..{SUBMIT_BATCH_MAX} function specs")
        reqs = []
        for i, spec in enumerate(specs):  # every spec is valid, or nothing is submitted
            try:
                reqs.append(rq.SubmitProcess(parse_spec(spec), brief))
            except ValidationError as exc:
                raise ValidationError(f"specs[{i}]: {exc}") from None
        answers = await node.call_many(reqs)
        return {"processes": [
            {"error": {"code": type(a).__name__, "message": str(a)}}
            if isinstance(a, ColonyError) else a
            for a in answers
        ]}  # fmt: skip

    async def wait_any(request: Request) -> Any:
        body = await _body(request)
        pids = body.get("processids")
        if not isinstance(pids, list):
            raise ValidationError("processids: a list of process ids")
        timeout_s = _number(body, "timeout_s", 30)
        wait = rq.WaitAny(tuple(map(pid_of, pids)), timeout_s, _brief(body))
        return {"processes": await node.call(wait)}

    async def submit_workflow(request: Request) -> Any:
        return await node.call(rq.SubmitWorkflow(tuple(parse_workflow(await _body(request)))))

    async def get_process(request: Request) -> Any:
        consistent = request.query_params.get("consistent", "") in ("1", "true", "yes")
        return await node.call(rq.GetProcess(pid(request), consistent))

    async def list_processes(request: Request) -> Any:
        q = request.query_params
        limit = _number(q, "limit", 100)
        offset = _number(q, "offset", 0)
        filters = {k: v for k, v in q.items() if k not in ("state", "limit", "offset")}
        return node.list_processes(
            q.get("state") or None,
            int(max(0, min(limit, RECORDS_LIST_MAX))),
            int(max(0, offset)),
            filters,
        )

    async def wait_process(request: Request) -> Any:
        timeout_s = _number(request.query_params, "timeout_s", 30)
        return await node.call(rq.WaitProcess(pid(request), timeout_s))

    async def process_logs(request: Request) -> Any:
        q = request.query_params
        after, wait_s = int(_number(q, "after", 0)), _number(q, "wait_s", 0)
        return await node.call(rq.ProcessLogs(pid(request), after, wait_s))

    async def cancel_process(request: Request) -> Any:
        return await node.call(rq.CancelProcess(pid(request)))

    def cronid(request: Request) -> bytes:
        return pid_of(request.path_params["cronid"], "cron id")

    async def add_cron(request: Request) -> Any:
        return await node.call(rq.AddCron(await _body(request)))

    async def list_crons(_: Request) -> Any:
        return await node.call(rq.ListCrons())

    async def get_cron(request: Request) -> Any:
        return await node.call(rq.GetCron(cronid(request)))

    async def remove_cron(request: Request) -> Any:
        return await node.call(rq.RemoveCron(cronid(request)))

    async def run_cron(request: Request) -> Any:
        return await node.call(rq.RunCron(cronid(request)))

    def gid(request: Request) -> bytes:
        return pid_of(request.path_params["gid"], "generator id")

    async def add_generator(request: Request) -> Any:
        return await node.call(rq.AddGenerator(await _body(request)))

    async def list_generators(_: Request) -> Any:
        return await node.call(rq.ListGenerators())

    async def get_generator(request: Request) -> Any:
        return await node.call(rq.GetGenerator(gid(request)))

    async def remove_generator(request: Request) -> Any:
        return await node.call(rq.RemoveGenerator(gid(request)))

    async def pack_generator(request: Request) -> Any:
        arg = (await _body(request)).get("arg")
        if not isinstance(arg, str):
            raise ValidationError("arg: expected a string")
        return await node.call(rq.PackGenerator(gid(request), arg))

    def eid(request: Request) -> str:
        return str(request.path_params["eid"])

    async def executor_register(request: Request) -> Any:
        return await node.call(_advert(await _body(request)))

    async def executor_assign(request: Request) -> Any:
        timeout_s = _number(await _body(request), "timeout_s", 10)
        return {"process": await node.call(rq.Assign(eid(request), timeout_s))}

    def close_req(executor: str, body: Any, success: bool) -> rq.CloseRun:
        if not isinstance(body, dict):
            raise ValidationError("a result is a JSON object")
        errors = body.get("errors", ())
        if not isinstance(errors, list | tuple):
            raise ValidationError("errors: a list of strings")
        elapsed = body.get("elapsed_s")
        elapsed_s = None if elapsed is None else max(0.0, _number(body, "elapsed_s", 0))
        return rq.CloseRun(executor, pid_of(body.get("processid")), success, body.get("output"),
                           tuple(str(e) for e in errors), elapsed_s)  # fmt: skip

    async def executor_close(request: Request, success: bool) -> Any:
        """Close (or fail) a run; with `next_s`, the same request then waits that long
        for the slot's next process, as `assign` would (`"next"`: it, or None). The
        close's answer stands whatever the wait brings."""
        body = await _body(request)
        next_s = _number(body, "next_s", 0)
        closed = await node.call(close_req(eid(request), body, success))
        if next_s <= 0:
            return closed
        try:
            nxt = await node.call(rq.Assign(eid(request), next_s))
        except ColonyError:
            nxt = None  # detached meanwhile: the next `assign` says so
        return {**closed, "next": nxt}

    async def executor_closes(request: Request) -> Any:
        """Many runs' results in one request, closed in one driver turn (one group
        commit, one frame a voter): `{"results": [{processid, success, output | errors,
        elapsed_s}]}`, answered with each close's answer (or its error) in order."""
        results = (await _body(request)).get("results")
        if not isinstance(results, list) or not 1 <= len(results) <= CLOSES_MAX:
            raise ValidationError(f"results: a list of 1..{CLOSES_MAX} results")
        reqs = []
        for i, result in enumerate(results):  # every result is valid, or none is taken
            success = isinstance(result, dict) and result.get("success") is True
            try:
                reqs.append(close_req(eid(request), result, success))
            except ValidationError as exc:
                raise ValidationError(f"results[{i}]: {exc}") from None
        answers = await node.call_many(reqs)
        return {"results": [
            {"processid": r.pid.hex(), "committed": False,
             "error": {"code": type(a).__name__, "message": str(a)}}
            if isinstance(a, ColonyError) else a
            for r, a in zip(reqs, answers, strict=True)
        ]}  # fmt: skip

    async def executor_fail(request: Request) -> Any:
        return await executor_close(request, False)

    async def executor_success(request: Request) -> Any:
        return await executor_close(request, True)

    async def executor_heartbeat(request: Request) -> Any:
        return await node.call(rq.Heartbeat(eid(request)))

    async def executor_detach(request: Request) -> Any:
        return await node.call(rq.Detach(eid(request)))

    async def executor_log(request: Request) -> Any:
        body = await _body(request)
        lines = _strings(body.get("lines"), "lines")
        return await node.call(rq.LogLines(eid(request), pid_of(body.get("processid")), lines))

    async def executor_attribute(request: Request) -> Any:
        body = await _body(request)
        key, value = body.get("key"), body.get("value")
        if not isinstance(key, str):
            raise ValidationError("key must be a string of 1..256 characters")
        if not isinstance(value, str):
            raise ValidationError("value must be a string of at most 16384")
        kind = str(body.get("attributetype", "OUT"))
        req = rq.AddAttribute(eid(request), pid_of(body.get("processid")), key, value, kind)
        return await node.call(req)

    def read(fn: Callable[[], Any]) -> Callable[[Request], Awaitable[Any]]:
        async def handler(_: Request) -> Any:
            return fn()

        return handler

    async def metrics(_: Request) -> Any:
        return Response(node.metrics_text(), media_type="text/plain; version=0.0.4")

    async def colonies_env(_: Request) -> Any:
        return await node.colonies_env()

    post, get = ["POST"], ["GET"]
    routes: list[ApiRoute] = [
        ("/v1/status", read(node.status), get),
        ("/v1/members", read(node.members), get),
        ("/v1/peers", read(node.peers), get),
        ("/v1/invites", invite, post),
        ("/v1/members/remove", remove_member, post),
        ("/v1/voters", voters, post),
        ("/v1/records", publish, post),
        ("/v1/records", records, get),
        ("/v1/leases/submit", lease_submit, post),
        ("/v1/leases/claim", lease_claim, post),
        ("/v1/leases/close", lease_close, post),
        ("/v1/leases/{pid}", lease_read, get),
        ("/v1/dht/fs/revisions", fs_add, post),
        ("/v1/dht/fs/{label}/{name}", fs_get, get),
        ("/v1/dht/peers/{peer_id}", find_peer, get),
        ("/v1/processes", submit_process, post),
        ("/v1/processes/batch", submit_batch, post),
        ("/v1/processes/wait", wait_any, post),
        ("/v1/processes", list_processes, get),
        ("/v1/processes/counts", read(node.process_counts), get),
        ("/v1/processes/{pid}", get_process, get),
        ("/v1/processes/{pid}/wait", wait_process, get),
        ("/v1/processes/{pid}/logs", process_logs, get),
        ("/v1/processes/{pid}/cancel", cancel_process, post),
        ("/v1/workflows", submit_workflow, post),
        ("/v1/crons", add_cron, post),
        ("/v1/crons", list_crons, get),
        ("/v1/crons/{cronid}", get_cron, get),
        ("/v1/crons/{cronid}/remove", remove_cron, post),
        ("/v1/crons/{cronid}/run", run_cron, post),
        ("/v1/generators", add_generator, post),
        ("/v1/generators", list_generators, get),
        ("/v1/generators/{gid}", get_generator, get),
        ("/v1/generators/{gid}/remove", remove_generator, post),
        ("/v1/generators/{gid}/pack", pack_generator, post),
        ("/v1/executors", executor_register, post),
        ("/v1/executors/{eid}/assign", executor_assign, post),
        ("/v1/executors/{eid}/close", executor_success, post),
        ("/v1/executors/{eid}/fail", executor_fail, post),
        ("/v1/executors/{eid}/closes", executor_closes, post),
        ("/v1/executors/{eid}/heartbeat", executor_heartbeat, post),
        ("/v1/executors/{eid}/log", executor_log, post),
        ("/v1/executors/{eid}/detach", executor_detach, post),
        ("/v1/executors/{eid}/attributes", executor_attribute, post),
        ("/v1/colonies/env", colonies_env, post),
        ("/metrics", metrics, get),
    ]
    fs = getattr(node, "fs", None)
    if fs is not None:
        from colonynode.node.daemon.fs.routes import fs_routes

        routes += fs_routes(fs)
    return routes
