"""The chaos run's checker: what the recorded history and the healed colony's views
must agree on (Jepsen's shape: operations recorded as they happen, judged afterwards).

Pure: it takes the history, the executions the workload function logged and each
node's final view, and returns the violations, one line each. Unit-tested with planted
anomalies (tests/chaos/test_check.py) so that each rule is known to fire.

The rules, for the workload of `work(log, i)` calls (each returns `[i * i, nonce]`, the
nonce fresh for every execution and logged by the execution before it returns):

- **None lost.** Every acknowledged submission (the node answered with its pid, so a
  majority of voters held it) is SUCCESS in every node's view and in a majority read.
  In a run with a short retention (`--retention-s`) the voters may have dropped it
  (compacted: every voter agreed on its result first): then the views' word, SUCCESS
  at every node with one output from one of its runs, stands for the read (counted).
- **The right output, committed once.** Its output is `[i * i, nonce]` for its own `i`,
  the nonce one that an execution of that `i` logged, and every view and the majority
  read hold the same output: two committed runs would show as two nonces.
- **Nothing invented.** A process of the workload in any view is one the history
  submitted (acknowledged, or left unknown by a fault), with that submission's `i`.
- **No node stuck.** Every node answered for its view after the healing, and is
  connected to every other again (a small colony is a full mesh).

And for the cron the run adds (every `CRON_INTERVAL_S`, one `tick` step a firing):

- **A tick fires once.** No two process graphs of the cron have the same tick (its
  graph's submission time), in any node's view or across them.
- **Ticks go on.** The cron fired a tick after the colony was healed.

And for the generator it adds (`GEN_TRIGGER` args a batch, or `GEN_TIMEOUT_S`), args
packed through random nodes during the faults:

- **An arg is used once.** No arg is in two batches (their graphs' root args).
- **None lost, nothing invented.** Every acknowledged arg is in a batch; every arg in a
  batch was packed (acknowledged, or left unknown by a fault).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FUNCNAME = "work"
CRON_FUNCNAME = "tick"
CRON_INTERVAL_S = 2
GEN_FUNCNAME = "batch"
GEN_TRIGGER = 4
GEN_TIMEOUT_S = 3


@dataclass
class Submission:
    """One submission of the workload: acknowledged (`pid` set) or unknown (an error or
    a timeout: it may or may not have been taken)."""

    i: int
    node: str
    start_s: float
    end_s: float
    pid: str | None = None
    error: str = ""


@dataclass
class Final:
    """What the healed colony says: each node's view (pid -> process), or why it gave
    none; and a majority read of each acknowledged pid."""

    views: dict[str, dict[str, dict[str, Any]] | None] = field(default_factory=dict)
    unanswered: dict[str, str] = field(default_factory=dict)  # node -> why
    majority: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    peers: dict[str, int] = field(default_factory=dict)  # node -> members it is connected to
    retention: bool = False  # a short retention: the voters may have dropped a result
    dropped: int = 0  # acknowledged calls whose registers were dropped (set by `check`)


def expected_output(i: int, nonce: str) -> list[Any]:
    return [i * i, nonce]


def check(history: list[Submission], executions: Mapping[int, set[str]],
          final: Final) -> list[str]:  # fmt: skip
    """Every violation of the rules above, one line each (empty: the run holds)."""
    out: list[str] = [f"node {n} gave no view after healing: {why}"
                      for n, why in sorted(final.unanswered.items())]  # fmt: skip
    mesh = len(final.views) - 1
    out += [f"node {n} is connected to {k} of its {mesh} peers after healing"
            for n, k in sorted(final.peers.items()) if k < mesh]  # fmt: skip
    by_i = {s.i: s for s in history}
    acked = {s.pid: s for s in history if s.pid is not None}
    for pid, sub in sorted(acked.items(), key=lambda kv: kv[1].i):
        out += _check_acked(pid, sub, executions.get(sub.i, set()), final)
    for node, view in sorted(final.views.items()):
        for pid, proc in sorted((view or {}).items()):
            spec = proc.get("spec") or {}
            if spec.get("funcname") != FUNCNAME:
                continue
            i = _i_of(proc)
            sub = by_i.get(i) if i is not None else None
            if sub is None:
                args = spec.get("args")
                out.append(f"{node}: process {pid} with args {args} was never submitted")
            elif sub.pid is not None and sub.pid != pid:
                out.append(f"{node}: call {i} is process {pid}, but {sub.pid} was acknowledged")
    return out


def _check_acked(pid: str, sub: Submission, nonces: set[str], final: Final) -> list[str]:
    out: list[str] = []
    outputs: dict[str, Any] = {}
    for node, view in sorted(final.views.items()):
        if view is None:
            continue
        proc = view.get(pid)
        if proc is None:
            out.append(f"acknowledged call {sub.i} ({pid}, via {sub.node}) is lost at {node}")
        elif proc.get("state") != "SUCCESS":
            out.append(f"acknowledged call {sub.i} ({pid}) is {proc.get('state')} at {node}")
        else:
            outputs[node] = proc.get("output")
    maj = final.majority.get(pid)
    answered = maj is not None and bool((maj.get("consistent") or {}).get("answered"))
    every = len(outputs) == sum(v is not None for v in final.views.values())
    if maj is not None and not (maj.get("consistent") or {}).get("committed") and (
            final.retention and answered and every and not out):  # fmt: skip
        final.dropped += 1  # (compacted at the voters: the views' word stands)
    elif maj is None or not (maj.get("consistent") or {}).get("committed"):
        got = "no answer" if maj is None else (
            f"{maj.get('state')} at epoch {maj.get('epoch')}, {maj.get('consistent')}")  # fmt: skip
        out.append(f"acknowledged call {sub.i} ({pid}) has no majority read ({got})")
    elif maj.get("state") != "SUCCESS":
        state = maj.get("state")
        out.append(f"acknowledged call {sub.i} ({pid}) is {state} in a majority read")
    else:
        outputs["majority"] = maj.get("output")
    distinct = {repr(o) for o in outputs.values()}
    if len(distinct) > 1:
        out.append(f"call {sub.i} ({pid}) has {len(distinct)} outputs: {outputs}")
    for where, got in sorted(outputs.items()):
        if not _right(sub.i, got, nonces):
            out.append(f"call {sub.i} ({pid}) at {where}: output {got!r} is not one of its runs'")
            break
    return out


def _right(i: int, got: Any, nonces: set[str]) -> bool:
    return (isinstance(got, list) and len(got) == 2 and got[1] in nonces
            and got == expected_output(i, str(got[1])))  # fmt: skip


def _i_of(proc: dict[str, Any]) -> int | None:
    """The call's `i`: its args', or, in a view compacted (no args kept), its output's
    `i * i`."""
    args = (proc.get("spec") or {}).get("args")
    if isinstance(args, list) and len(args) == 2 and isinstance(args[1], int):
        return args[1]
    out = proc.get("output")
    if proc.get("compacted") and isinstance(out, list) and out and isinstance(out[0], int):
        root = math.isqrt(out[0]) if out[0] >= 0 else -1
        return root if root * root == out[0] else None
    return None


def read_executions(text: str) -> dict[int, set[str]]:
    """The workload function's log: one `i nonce` line per execution that returned (a
    torn last line, from a run killed while writing, is skipped)."""
    runs: dict[int, set[str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            runs.setdefault(int(parts[0]), set()).add(parts[1])
    return runs


def check_cron(cronid: str, views: Mapping[str, Mapping[str, dict[str, Any]] | None],
               healed_at: str) -> tuple[list[str], int]:  # fmt: skip
    """The cron's violations, and how many ticks fired (`healed_at`: when the colony was
    healed, as the views write times: RFC 3339 UTC, which sorts as text)."""
    graphs: dict[str, str] = {}  # graph id -> its tick
    out: list[str] = []
    for node, view in sorted(views.items()):
        for proc in (view or {}).values():
            if proc.get("cronid") != cronid:
                continue
            graph, tick = (
                proc.get("processgraphid") or proc["processid"],
                proc.get("submissiontime"),
            )
            if graphs.setdefault(graph, tick) != tick:
                out.append(f"{node}: cron graph {graph} has two ticks, {graphs[graph]} and {tick}")
    by_tick: dict[str, list[str]] = {}
    for graph, tick in graphs.items():
        by_tick.setdefault(tick, []).append(graph)
    for tick, ids in sorted(by_tick.items()):
        if len(ids) > 1:
            out.append(f"cron tick {tick} fired {len(ids)} times: graphs {sorted(ids)}")
    if not any(tick >= healed_at for tick in by_tick):
        out.append(f"the cron fired no tick after the healing ({len(by_tick)} ticks before)")
    return out, len(by_tick)


@dataclass
class Pack:
    """One arg packed into the generator: acknowledged (`ok`) or unknown."""

    arg: str
    node: str
    ok: bool = False
    error: str = ""


Views = Mapping[str, Mapping[str, dict[str, Any]] | None]


def check_generator(generatorid: str, packs: list[Pack], views: Views) -> tuple[list[str], int]:
    """The generator's violations, and how many batches it made."""
    batches: dict[str, list[str]] = {}  # graph id -> its args
    for view in views.values():
        for proc in (view or {}).values():
            if proc.get("generatorid") != generatorid or proc.get("parents"):
                continue
            args = (proc.get("spec") or {}).get("args") or []
            if proc.get("compacted"):  # (no args kept: the batch returns them)
                args = proc.get("output") or []
            batches.setdefault(proc.get("processgraphid") or proc["processid"], list(args))
    out: list[str] = []
    used: dict[str, str] = {}
    for graph, args in sorted(batches.items()):
        for arg in args:
            if arg in used and used[arg] != graph:
                out.append(f"packed arg {arg!r} used by two batches: {used[arg]} and {graph}")
            used.setdefault(arg, graph)
    packed = {p.arg for p in packs}
    for graph, args in sorted(batches.items()):
        out += [f"batch {graph} has arg {arg!r}, never packed" for arg in args
                if arg not in packed]  # fmt: skip
    out += [f"acknowledged arg {p.arg!r} (via {p.node}) is in no batch"
            for p in packs if p.ok and p.arg not in used]  # fmt: skip
    return out, len(batches)


def check_files(puts: list[Any], final: Any) -> list[str]:
    """ColonyFS's violations (tests/chaos/files.py: `puts` are FilePut, `final` a
    FilesFinal): every acknowledged put listed everywhere with its checksum and read back
    byte for byte; every listed file put, with a checksum put under its name."""
    out: list[str] = []
    put_sums: dict[str, set[str]] = {}
    for p in puts:
        put_sums.setdefault(p.name, set()).add(p.sha256)
    for node, held in sorted(final.listings.items()):
        if held is None:
            out.append(f"node {node} gave no file listing after healing")
            continue
        for p in puts:
            if p.fileid and held.get(p.name) != p.sha256:
                got = held.get(p.name, "nothing")
                out.append(f"acknowledged file {p.name} (via {p.node}) is {got} at {node}")
        for name, sha in sorted(held.items()):
            if sha not in put_sums.get(name, set()):
                out.append(f"{node} lists {name} with checksum {sha[:16]}, never put")
    for p in puts:
        if not p.fileid:
            continue
        sha, where = final.reads.get(p.name, ("", "not read"))
        if sha != p.sha256:
            out.append(f"acknowledged file {p.name} read back as {sha[:16] or where}")
    return out
