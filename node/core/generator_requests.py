"""A generator's requests (DESIGN.md §12): add, pack, remove, and how one reads in the
API; generators.py holds the generators and fires their batches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from colonynode.core.errors import ColonyError, ValidationError
from colonynode.core.process import spec_to_json
from colonynode.node.core.crons import hold_definition, initiator, may_submit
from colonynode.node.core.generator_defs import Generator, parse_generator
from colonynode.node.core.generators import (
    ARG_CHARS_MAX,
    GENERATOR_ARG_KIND,
    GENERATOR_KIND,
    GENERATOR_REMOVED_KIND,
    GENERATORS_MAX,
    Generators,
)

__all__ = ["add", "as_json", "pack", "remove"]


def add(gens: Generators, body: dict[str, Any],
        then: Callable[[ColonyError | None, Any], None]) -> None:  # fmt: skip
    core = gens.core
    may_submit(core)
    if len(gens.generators) >= GENERATORS_MAX:
        raise ColonyError(f"this colony has {GENERATORS_MAX} generators; remove some first")
    gid = core.rng.randbytes(16)
    record = {**body, "generatorid": gid.hex(), "created_ns": core.unix_ns()}
    _, _, specs = parse_generator(record)
    record["workflowspec"] = {"functionspecs": [spec_to_json(s) for s in specs]}
    env = core.publish(GENERATOR_KIND, record)
    gens.on_record(core.node_id, GENERATOR_KIND, record)

    def held(error: ColonyError | None) -> None:
        gen = gens.generators.get(gid)
        then(error, None if error or gen is None else as_json(gens, gen))

    hold_definition(core, gid, env, record["created_ns"], f"generator {gid.hex()}", held)


def pack(gens: Generators, gid: bytes, arg: str,
         then: Callable[[ColonyError | None, Any], None]) -> None:  # fmt: skip
    """Queue `arg`; answered once a majority of voters holds it."""
    core = gens.core
    may_submit(core)
    gens.get(gid)
    if not isinstance(arg, str) or len(arg) > ARG_CHARS_MAX:
        raise ValidationError(f"arg: a string of at most {ARG_CHARS_MAX} characters")
    argid, packed_ns = core.rng.randbytes(16), core.unix_ns()
    record = {"generatorid": gid.hex(), "argid": argid.hex(), "arg": arg,
              "packed_ns": packed_ns}  # fmt: skip
    env = core.publish(GENERATOR_ARG_KIND, record)
    gens.counters["args_packed"] += 1

    def held(error: ColonyError | None) -> None:
        if error is None:  # queued only once a majority holds it: then it may fire
            gens.on_record(core.node_id, GENERATOR_ARG_KIND, record)
        then(error, None if error else {"generatorid": gid.hex(), "argid": argid.hex()})

    # A batch claims the arg's register: unlimited retries, since a lease that ran out
    # (its taker died) must not make the arg unclaimable for good. A register of the
    # generator's series: compacted once its batch's workflow is held (pins).
    hold_definition(core, argid, env, packed_ns, f"arg {argid.hex()}", held, maxretries=-1,
                    series=gid)  # fmt: skip


def remove(gens: Generators, gid: bytes) -> None:
    may_submit(gens.core)
    gens.get(gid)
    body = {"generatorid": gid.hex()}
    gens.core.publish(GENERATOR_REMOVED_KIND, body)
    gens.on_record(gens.core.node_id, GENERATOR_REMOVED_KIND, body)


def as_json(gens: Generators, gen: Generator) -> dict[str, Any]:
    return {
        "generatorid": gen.generatorid.hex(),
        "name": gen.name,
        "colonyname": gens.core.colony(),
        "trigger": gen.trigger,
        "timeout": gen.body.get("timeout", -1),
        "workflowspec": gen.body.get("workflowspec"),
        "queued": len(gen.open_args()),
        "used": sum(a.batch is not None for a in gen.args.values()),
        "processgraphids": list(gen.graphs),
        **initiator(gens.core, gen.author),
    }
