"""A chaos run against real daemons (issue 18): `make chaos`, or

    .venv/bin/python -m tests.chaos [--seed N] [--duration-s 120] [--nodes 5] [--voters 3]
                                    [--faults kill,pause,cut,slow,exec-kill,exec-pause]

Sets up a colony of `--nodes` daemons (each in a network namespace of its own where the
machine allows it: tests/chaos/netns.py), `--voters` of them voters, and an executor on
each; clients submit calls through random nodes while the nemesis (nemesis.py) kills,
pauses, cuts and slows them; then every fault is ended, the colony is given
`--heal-s` to finish, and the checker (check.py) judges the history against every
node's view and a majority read, and a cron added at the start (every 2 s) against
firing a tick twice or stopping. Prints what was injected and what was found; exits 1
on a violation, leaving the data dirs and logs and a one-line replay hint.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from colonynode.node.core.processes import iso_time
from tests.chaos import check as checker
from tests.chaos.check import CRON_INTERVAL_S
from tests.chaos.files import Filer, all_listed, read_files
from tests.chaos.nemesis import KINDS, Nemesis
from tests.chaos.netns import Net
from tests.chaos.workload import (
    FUNCTIONS,
    Packer,
    Workload,
    add_cron,
    add_generator,
    all_done,
    batched,
    read_final,
    ticked_since,
)
from tests.integration.harness import Colony, Daemon, Executors, cli, wait_until

NET_KINDS = ("cut", "slow")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=None, help="the nemesis's seed (default: random)")
    p.add_argument("--duration-s", type=float, default=120.0, help="seconds of faults")
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--voters", type=int, default=3, choices=(1, 3, 5))
    p.add_argument("--rate", type=float, default=8.0, help="submissions a second, in all")
    p.add_argument("--faults", default=",".join(KINDS), help="kinds, comma-separated")
    p.add_argument("--heal-s", type=float, default=120.0, help="time to finish after healing")
    p.add_argument("--no-netns", action="store_true", help="loopback only: kills and pauses")
    p.add_argument("--dir", type=Path, default=None, help="where the data dirs go (kept)")
    p.add_argument("--json", action="store_true", help="the result as one JSON line too")
    p.add_argument(
        "--retention-s",
        type=float,
        default=None,
        help="the voters' and views' retention (node.json; default: the node's)",
    )
    args = p.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1, 1 << 31)
    if args.voters > args.nodes:
        p.error("--voters cannot exceed --nodes")
    unknown = set(args.faults.split(",")) - set(KINDS)
    if unknown:
        p.error(f"unknown faults {sorted(unknown)}; known: {', '.join(KINDS)}")
    return args


def say(what: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {what}", flush=True)


def build(root: Path, names: list[str], voters: list[str], net: Net | None,
          retention_s: float | None = None) -> Colony:  # fmt: skip
    """The colony: names[0] founds it, the others join through it; `voters` set; with
    `retention_s`, every node restarted with it (compaction under the faults)."""
    colony = Colony(root)

    def placed(name: str) -> Daemon:
        d = colony.daemon(name)
        if net is not None:
            d.prefix, d.listen = net.prefix(name), net.listen(name)
        return d

    first = placed(names[0])
    first.init("chaos")
    first.start()
    for name in names[1:]:
        placed(name).join(first.addr(), first.invite())
    cli("voters", "set", *voters, "--data-dir", str(first.dir))
    for d in colony.daemons.values():
        wait_until(f"{d.name}: {len(voters)} voters",
                   lambda d=d: sum(m["voter"] for m in d.members()) == len(voters), 60)  # fmt: skip
    if retention_s is not None:
        short = {"retention_s": retention_s, "view_retention_s": retention_s}
        for d in colony.daemons.values():
            d.stop()
            settings = json.loads((d.dir / "node.json").read_text())
            (d.dir / "node.json").write_text(json.dumps({**settings, **short}))
            d.start()
    return colony


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = args.dir or Path(tempfile.mkdtemp(prefix="chaos-"))
    root.mkdir(parents=True, exist_ok=True)
    names = [chr(ord("a") + k) for k in range(args.nodes)]
    kinds = tuple(args.faults.split(","))
    net, network = (None, "--no-netns: loopback") if args.no_netns else Net.make(names)
    if net is None:
        kinds = tuple(k for k in kinds if k not in NET_KINDS)
        network += "; network faults left out, kills and pauses only"
    rng = random.Random(args.seed)
    result: dict[str, Any] = {"seed": args.seed, "nodes": args.nodes, "voters": args.voters,
                              "duration_s": args.duration_s, "network": network,
                              "retention_s": args.retention_s, "dir": str(root)}  # fmt: skip
    print(f"chaos: seed {args.seed}, {args.nodes} nodes, {args.voters} voters, "
          f"{args.duration_s:g} s of {', '.join(kinds)}; {network}", flush=True)  # fmt: skip
    colony = executors = None
    try:
        colony = build(root, names, names[: args.voters], net, args.retention_s)
        say(f"colony up: {', '.join(names)}; voters {', '.join(names[: args.voters])}")
        executors = Executors(root, FUNCTIONS, concurrency=2)
        for d in colony.daemons.values():
            executors.start(d)
        result.update(_inject(args, rng, colony, executors, kinds, net, root))
    finally:
        if executors is not None:
            executors.stop_all()
        if colony is not None:
            colony.stop_all()
        if net is not None:
            net.remove()
    if not result["violations"] and args.dir is None:
        shutil.rmtree(root, ignore_errors=True)
    return result


def _inject(args: argparse.Namespace, rng: random.Random, colony: Colony, ex: Executors,
            kinds: tuple[str, ...], net: Net | None, root: Path) -> dict[str, Any]:  # fmt: skip
    daemons = colony.daemons
    exec_log = str(root / "executions.log")
    nemesis = Nemesis(rng, daemons, ex, set(sorted(daemons)[: args.voters]), kinds, net,
                      down_max=(args.nodes - 1) // 2)  # fmt: skip
    load = Workload(daemons, exec_log, args.rate, threads=4, seed=args.seed,
                    avoid=nemesis.killed)  # fmt: skip
    first = daemons[sorted(daemons)[0]]
    cronid, generatorid = add_cron(first), add_generator(first)
    packer = Packer(daemons, generatorid, rate=2.0, seed=args.seed, avoid=nemesis.killed)
    filer = Filer(daemons, root, rate=1.0, seed=args.seed, avoid=nemesis.killed)
    started = time.monotonic()
    load.start()
    packer.start()
    filer.start()
    nemesis.run(until_s=started + args.duration_s)
    load.stop()
    packer.stop()
    filer.stop()
    say(f"faults over ({len(nemesis.log)} injected); every fault ended, healing")
    restarted = nemesis.restarted + _heal(daemons, ex)
    healed_at = iso_time(time.time_ns())  # the views' clock: the cron's ticks are wall time
    say("every daemon ready, every executor running; waiting for the calls to settle")
    acked = {s.pid for s in load.history if s.pid is not None}
    heal_started = time.monotonic()
    try:
        wait_until("every acknowledged call SUCCESS on every node",
                   lambda: all_done(daemons, acked), args.heal_s)  # fmt: skip
        settled_s: float | None = round(time.monotonic() - heal_started, 1)
    except AssertionError:
        settled_s = None
    say(f"settled after {settled_s} s" if settled_s is not None else
        f"not settled after {args.heal_s:g} s; reading the views")  # fmt: skip
    wait_s = 30 + 3 * CRON_INTERVAL_S
    try:
        wait_until("a cron tick after the healing",
                   lambda: ticked_since(daemons, cronid, healed_at), wait_s)  # fmt: skip
    except AssertionError:
        pass  # check_cron reports it
    acked_args = {p.arg for p in packer.packs if p.ok}
    try:
        wait_until("every acknowledged arg in a batch",
                   lambda: batched(daemons, generatorid, acked_args), wait_s)  # fmt: skip
    except AssertionError:
        pass  # check_generator reports it
    acked_files = {p.name: p.sha256 for p in filer.puts if p.fileid}
    try:
        wait_until("every acknowledged file listed on every node",
                   lambda: all_listed(daemons, acked_files), wait_s)  # fmt: skip
    except AssertionError:
        pass  # check_files reports it
    files_final = read_files(daemons, filer.puts, root, rng)
    final = read_final(daemons, sorted(acked), rng)
    final.retention = args.retention_s is not None
    compaction = _compaction(daemons)
    log = Path(exec_log)
    executions = checker.read_executions(log.read_text() if log.exists() else "")
    violations = checker.check(load.history, executions, final)
    cron_found, ticks = checker.check_cron(cronid, final.views, healed_at)
    gen_found, batches = checker.check_generator(generatorid, packer.packs, final.views)
    violations += cron_found + gen_found + checker.check_files(filer.puts, files_final)
    runs = sum(len(v) for v in executions.values())
    return {
        "injected": dict(sorted(nemesis.counts().items())),
        "faults": [f.__dict__ for f in nemesis.log],
        "submitted": len(load.history),
        "acknowledged": len(acked),
        "unknown": len(load.history) - len(acked),
        "executions": runs,
        "executors_restarted": restarted,
        "settled_after_heal_s": settled_s,
        "cron_ticks": ticks,
        "args_packed": len(packer.packs),
        "args_acknowledged": len(acked_args),
        "generator_batches": batches,
        "files_put": len(filer.puts),
        "files_acknowledged": len(acked_files),
        "calls_compacted": final.dropped,  # acknowledged calls the voters had dropped
        **compaction,
        "violations": violations,
    }


def _compaction(daemons: dict[str, Daemon]) -> dict[str, int]:
    """What the voters hold (`status` retention): the most registers one node holds,
    the most it dropped since its last start, and its series horizons (a cron, a
    generator: one number each, not a register a tick or an arg)."""
    stats = []
    for d in daemons.values():
        try:
            stats.append(d.status()["retention"])
        except Exception:  # (a node that does not answer is reported by the checker)
            continue
    most = {key: max((s.get(key, 0) for s in stats), default=0)
            for key in ("registers_dropped", "registers", "series_horizons")}  # fmt: skip
    return {f"voter_{key}": value for key, value in most.items()}


def _heal(daemons: dict[str, Daemon], ex: Executors) -> int:
    """Every daemon up and every executor running again; how many executors had exited
    (an executor exits when its node goes away) and were started again."""
    for d in daemons.values():
        if d.proc is None or d.proc.poll() is not None:
            d.start(wait=False)
    for d in daemons.values():
        d.wait_ready(60)
    restarted = 0
    for name, d in daemons.items():
        proc = ex.procs.get(name)
        if proc is None or proc.poll() is not None:
            ex.start(d)
            restarted += 1
    return restarted


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    inj = ", ".join(f"{k} {v}" for k, v in result.get("injected", {}).items()) or "none"
    print(f"injected: {inj}")
    print(f"submitted {result.get('submitted')}: {result.get('acknowledged')} acknowledged, "
          f"{result.get('unknown')} unknown; {result.get('executions')} executions; "
          f"{result.get('executors_restarted')} executors restarted; settled "
          f"{result.get('settled_after_heal_s')} s after healing; the cron fired "
          f"{result.get('cron_ticks')} ticks; {result.get('args_acknowledged')} of "
          f"{result.get('args_packed')} packed args acknowledged, in "
          f"{result.get('generator_batches')} batches; {result.get('files_acknowledged')} of "
          f"{result.get('files_put')} ColonyFS puts acknowledged; at the end a voter held "
          f"at most {result.get('voter_registers')} registers and "
          f"{result.get('voter_series_horizons')} series horizons, and the voters had "
          f"dropped {result.get('calls_compacted')} acknowledged calls' registers")  # fmt: skip
    violations = result.get("violations", [])
    if not violations:
        print("found: no violation")
    else:
        print(f"found: {len(violations)} violations")
        for v in violations[:50]:
            print(f"  {v}")
        print(f"logs and data dirs: {result['dir']}")
        print(f"replay: .venv/bin/python -m tests.chaos --seed {args.seed} "
              f"--duration-s {args.duration_s:g} --nodes {args.nodes} --voters {args.voters} "
              f"--faults {args.faults}")  # fmt: skip
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "faults"}))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)

    def terminated(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: let the clean-up finish
        raise KeyboardInterrupt  # so the daemons stop and the namespaces go

    signal.signal(signal.SIGTERM, terminated)
    result = run(args)
    report(result, args)
    return 1 if result["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
