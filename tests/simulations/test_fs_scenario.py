"""The `fs` scenario on small colonies: acknowledged files stay readable under churn, kills
and network faults, repair brings every chunk back to R copies, planted bugs are caught,
and a seed replays exactly (the 1,000-node figures come from `colonynode simulate`)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from colonynode.core.effects import LAZY
from colonynode.core.ids import NodeId
from colonynode.node.core.fs import REPLICAS, placement, plan_repair
from colonynode.simulations._fs_messages import Booted, ChunksDurable, FlushChunks, StoreChunks
from colonynode.simulations.fs_scenario import FsChunkCore, FsSimConfig, SharedFs
from colonynode.simulations.runner import RunResult, RunSpec, run_seed
from colonynode.storage.memory import MemoryStore

NODES = 60
SMALL = {"puts": 150, "reads": 150, "kill": 0.1}  # 6 of 60 nodes killed for good
COLONYNODE = Path(sys.executable).parent / "colonynode"


def _why(result: RunResult) -> str:
    return "\n".join([*map(str, result.violations), result.replay])


@pytest.mark.parametrize(
    ("faults", "seed"),
    [("crashes", 1), ("chaos", 2), ("seed", 3), ("seed", 4), ("partitions", 5), ("lossy", 6)],
)
def test_files_stay_readable_and_repair_restores_r_copies(faults: str, seed: int) -> None:
    result = run_seed(RunSpec("fs", seed=seed, nodes=NODES, faults=faults, params=SMALL))
    m = result.metrics
    assert result.ok, _why(result)
    assert result.converged_s is not None
    assert m["kills"] == 6 and isinstance(m["churn_crashes"], int) and m["churn_crashes"] > 0
    assert isinstance(m["revisions_acknowledged"], int) and m["revisions_acknowledged"] > 50
    assert isinstance(m["reads_ok"], int) and m["reads_ok"] > 50
    assert isinstance(m["chunks_repaired"], int) and m["chunks_repaired"] > 0
    assert m["under_replicated_at_end"] == 0


@pytest.mark.parametrize(
    ("bug", "checker"),
    [
        ("skip_copy", "liveness"),  # repair asks Has but never copies
        ("ignore_alive", "liveness"),  # repair places over dead members too
        ("read_first_only", "fs-readable"),  # a read asks the first of the placement only
    ],
)
def test_a_planted_bug_is_caught(bug: str, checker: str) -> None:
    spec = RunSpec("fs", seed=1, nodes=NODES, faults="none", params=SMALL, liveness_s=20.0)
    assert run_seed(spec).ok  # the same world without the bug holds
    buggy = RunSpec("fs", seed=1, nodes=NODES, faults="none", params={**SMALL, "planted_bug": bug},
                    liveness_s=20.0)  # fmt: skip
    result = run_seed(buggy)
    assert [v.checker for v in result.violations] == [checker], _why(result)


def _json(args: list[str], hash_seed: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run([str(COLONYNODE), "simulate", *args, "--json"], capture_output=True,
                          text=True, timeout=120, env=env, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    assert isinstance(report.pop("wall_s"), float)
    return report


def test_a_seed_replays_exactly_across_processes() -> None:
    args = ["--scenario", "fs", "--nodes", "40", "--seed", "4", "--faults", "chaos",
            "--param", "puts=100", "--param", "reads=100", "--param", "kill=0.1"]  # fmt: skip
    first = _json(args, "0")
    assert first == _json(args, "12345")
    metrics = first["metrics"]
    assert isinstance(metrics, dict) and metrics["revisions_acknowledged"]


def _ids(rng: random.Random, n: int) -> list[NodeId]:
    return [NodeId(rng.randbytes(32)) for _ in range(n)]


def test_the_rank_prefix_gives_nodecores_own_answers() -> None:
    """placement and plan_repair over the first RANK_PREFIX candidates in a chunk's order
    over every member answer as they do over every candidate."""
    rng = random.Random(7)
    members = _ids(rng, 120)
    shared = SharedFs(members)
    for _ in range(300):
        cid = rng.randbytes(32)
        among = rng.sample(members, rng.choice((1, 2, 3, 4, 9, 60, 120)))
        me = rng.choice(among)
        prefix = shared.prefix(cid, set(among))
        assert plan_repair(cid, me, prefix, ()) == plan_repair(cid, me, among, ())
        r = min(REPLICAS, len(among))
        assert placement(cid, prefix, r) == placement(cid, among, r)


def test_whole_runs_agree_with_exact_placement() -> None:
    params = {"puts": 80, "reads": 80, "kill": 0.1}
    fast = run_seed(RunSpec("fs", seed=5, nodes=40, faults="chaos", params=params))
    exact = run_seed(RunSpec("fs", seed=5, nodes=40, faults="chaos",
                             params={**params, "exact_placement": True}))  # fmt: skip
    assert fast.ok and fast.metrics == exact.metrics


def _step(core: FsChunkCore, store: MemoryStore) -> list[object]:
    """What SimNode does with one step's effects: persist (a LAZY batch unsynced), then
    hand back the events."""
    fx = core.take_effects()
    store.apply(fx.writes, sync=fx.durability != LAZY)
    return list(fx.events)


def _core(store: MemoryStore, members: list[NodeId]) -> FsChunkCore:
    return FsChunkCore(members[0], store, SharedFs(members), FsSimConfig(),
                       lambda: members[1:], lambda m: m != members[0])  # fmt: skip


def test_a_crash_keeps_flushed_chunks_and_loses_the_others() -> None:
    members = _ids(random.Random(1), 3)
    peer = members[1]
    store = MemoryStore()
    core = _core(store, members)
    _step(core, store)
    kept, lost = b"k" * 32, b"l" * 32
    core.on_message(0.0, peer, StoreChunks(1, (kept,)))
    _step(core, store)
    core.on_message(0.1, peer, FlushChunks(2))
    assert ChunksDurable((kept,)) in _step(core, store)
    core.on_message(0.2, peer, StoreChunks(3, (lost,)))
    _step(core, store)
    assert set(core.held) == {kept, lost}
    store.crash()
    again = _core(store, members)
    assert _step(again, store) == [Booted((kept,))]
