"""ColonyOS's cron and generator RPCs (docs/colonies-api.md), over the node's own crons
and generators (docs/crons.md). ColonyOS keeps a cron's or generator's workflow spec as
JSON text: it is parsed on the way in and written as text on the way out."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from colonynode.node.core import requests as rq
from colonynode.node.daemon.colonies.rpc import (
    COUNT_MAX,
    MEMBER,
    Caller,
    Rpc,
    RpcError,
    check_colony,
)

if TYPE_CHECKING:
    from colonynode.node.daemon.colonies.server import ColoniesGateway

__all__ = ["SCHEDULE_RPCS"]


def _workflow(value: Any, verb: str) -> Any:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise RpcError(400, f"Failed to {verb}, workflowspec is not JSON") from None
    if not isinstance(value, dict):
        raise RpcError(400, f"Failed to {verb}, workflowspec is nil")
    return value


def _id(msg: dict[str, Any], field: str, verb: str) -> bytes:
    value = msg.get(field)
    try:
        if not isinstance(value, str) or not value:
            raise ValueError
        return bytes.fromhex(value)
    except ValueError:
        raise RpcError(400, f"Failed to {verb}, invalid {field}") from None


def _out(item: dict[str, Any]) -> dict[str, Any]:
    """Ours, as ColonyOS writes it: the workflow spec as JSON text."""
    return {**item, "workflowspec": json.dumps(item.get("workflowspec") or {})}


def _count(msg: dict[str, Any]) -> int:
    count = msg.get("count", COUNT_MAX)
    if type(count) is not int or count > COUNT_MAX:
        raise RpcError(400, f"Count is larger than MaxCount limit <{COUNT_MAX}>")
    return max(count, 0)


async def add_cron(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    cron = msg.get("cron")
    if not isinstance(cron, dict):
        raise RpcError(400, "Failed to add cron, cron is nil")
    check_colony(gw, cron.get("colonyname"))
    wait = cron.get("waitforprevprocessgraph", cron.get("waitforprevprocessgrap", False))
    body = {"name": cron.get("name"), "cronexpression": cron.get("cronexpression", ""),
            "interval": cron.get("interval", -1), "random": cron.get("random", False),
            "waitforprevprocessgraph": wait is True,
            "workflowspec": _workflow(cron.get("workflowspec"), "add cron")}  # fmt: skip
    return _out(await gw.node.call(rq.AddCron(body)))


async def get_cron(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    return _out(await gw.node.call(rq.GetCron(_id(msg, "cronid", "get cron"))))


async def get_crons(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    check_colony(gw, msg.get("colonyname"))
    crons = await gw.node.call(rq.ListCrons())
    return [_out(c) for c in crons[: _count(msg)]]


async def run_cron(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    cronid = _id(msg, "cronid", "run cron")
    await gw.node.call(rq.RunCron(cronid))
    return _out(await gw.node.call(rq.GetCron(cronid)))


async def remove_cron(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    await gw.node.call(rq.RemoveCron(_id(msg, "cronid", "remove cron")))
    return {}


async def add_generator(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    gen = msg.get("generator")
    if not isinstance(gen, dict):
        raise RpcError(400, "Failed to add generator, generator is nil")
    check_colony(gw, gen.get("colonyname"))
    body = {"name": gen.get("name"), "trigger": gen.get("trigger"),
            "timeout": gen.get("timeout", -1),
            "workflowspec": _workflow(gen.get("workflowspec"), "add generator")}  # fmt: skip
    return _out(await gw.node.call(rq.AddGenerator(body)))


async def get_generator(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    gid = _id(msg, "generatorid", "get generator")
    return _out(await gw.node.call(rq.GetGenerator(gid)))


async def get_generators(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    check_colony(gw, msg.get("colonyname"))
    gens = await gw.node.call(rq.ListGenerators())
    return [_out(g) for g in gens[: _count(msg)]]


async def pack_generator(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    gid = _id(msg, "generatorid", "pack generator")
    arg = msg.get("arg")
    if not isinstance(arg, str):
        raise RpcError(400, "Failed to pack generator, arg: expected a string")
    await gw.node.call(rq.PackGenerator(gid, arg))
    return {}


async def remove_generator(gw: ColoniesGateway, caller: Caller, msg: dict[str, Any]) -> Any:
    await gw.node.call(rq.RemoveGenerator(_id(msg, "generatorid", "remove generator")))
    return {}


SCHEDULE_RPCS: dict[str, Rpc] = {
    "addcronmsg": Rpc("add cron", MEMBER, add_cron),
    "getcronmsg": Rpc("get cron", MEMBER, get_cron),
    "getcronsmsg": Rpc("get crons", MEMBER, get_crons),
    "runcronmsg": Rpc("run cron", MEMBER, run_cron),
    "removecronmsg": Rpc("remove cron", MEMBER, remove_cron),
    "addgeneratormsg": Rpc("add generator", MEMBER, add_generator),
    "getgeneratormsg": Rpc("get generator", MEMBER, get_generator),
    "getgeneratorsmsg": Rpc("get generators", MEMBER, get_generators),
    "packgeneratormsg": Rpc("pack generator", MEMBER, pack_generator),
    "removegeneratormsg": Rpc("remove generator", MEMBER, remove_generator),
}
