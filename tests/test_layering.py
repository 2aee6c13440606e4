"""DESIGN.md §1: arrows point down; core/, gossip/, dht/, consensus/ stay sans-IO."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.layering import ALLOWED, check_tree

ROOT = Path(__file__).resolve().parent.parent


def test_repository_obeys_the_layering() -> None:
    violations = check_tree(ROOT)
    assert violations == [], "\n".join(map(str, violations))


def _copy_packages(tmp_path: Path) -> Path:
    for package in ALLOWED:
        if (ROOT / package).is_dir():
            shutil.copytree(ROOT / package, tmp_path / package)
    return tmp_path


@pytest.mark.parametrize(
    ("package", "line", "expected"),
    [
        ("consensus", "import trio\n", "sans-IO code imports trio"),
        ("gossip", "from libp2p.host import basic_host\n", "sans-IO code imports libp2p"),
        ("dht", "import lmdb\n", "sans-IO code imports lmdb"),
        ("core", "import socket\n", "sans-IO code imports socket"),
        ("consensus", "import time\nnow = time.monotonic()\n", "wall clock: time.monotonic"),
        ("gossip", "import time\nnow = time.time()\n", "wall clock: time.time"),
        ("dht", "import random\nx = random.random()\n", "random.random"),
        ("core", "from colonynode.storage import api\n", "core/ may not import storage/"),
        ("gossip", "from colonynode.consensus import x\n", "gossip/ may not import consensus/"),
        ("storage", "import colonynode.node.daemon\n", "storage/ may not import node/"),
        ("node", "from colonynode.cli import main\n", "node/ may not import cli/"),
        (
            "simulations",
            "from colonynode.node.daemon import run\n",
            "simulations/ may import only NodeCore",
        ),
    ],
)
def test_planted_violation_is_caught(
    tmp_path: Path, package: str, line: str, expected: str
) -> None:
    root = _copy_packages(tmp_path)
    (root / package).mkdir(exist_ok=True)
    (root / package / "planted.py").write_text(line, encoding="utf-8")
    violations = check_tree(root)
    assert any(v.path == f"{package}/planted.py" and expected in v.rule for v in violations), (
        violations
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("import trio\n", "sans-IO code imports trio"),
        ("from libp2p.host import basic_host\n", "sans-IO code imports libp2p"),
        ("import lmdb\n", "sans-IO code imports lmdb"),
        ("import socket\n", "sans-IO code imports socket"),
        ("import time\nnow = time.time_ns()\n", "wall clock: time.time_ns"),
        ("import random\nx = random.random()\n", "random.random"),
    ],
)
def test_a_planted_violation_in_nodecore_is_caught(
    tmp_path: Path, line: str, expected: str
) -> None:
    """NodeCore (node/core/) is sans-IO: the simulator runs it (DESIGN.md §1, §10)."""
    root = _copy_packages(tmp_path)
    path = root / "node" / "core" / "nodecore.py"
    path.write_text(line + path.read_text(encoding="utf-8"), encoding="utf-8")
    violations = check_tree(root)
    assert any(v.path == "node/core/nodecore.py" and expected in v.rule for v in violations), (
        violations
    )


def test_the_simulator_may_import_nodecore_but_no_other_part_of_node(tmp_path: Path) -> None:
    root = _copy_packages(tmp_path)
    (root / "simulations" / "planted.py").write_text(
        "from colonynode.node.core import NodeCore\nfrom colonynode.node.core.nodecore import x\n",
        encoding="utf-8",
    )
    assert check_tree(root) == []
    (root / "simulations" / "planted.py").write_text(
        "from colonynode.node.datadir import DataDir\n", encoding="utf-8"
    )
    assert [v.rule for v in check_tree(root)] == [
        "simulations/ may import only NodeCore, not colonynode.node.datadir",
        "simulations/ may import only NodeCore, not colonynode.node.datadir.DataDir",
    ]


def test_seeded_random_is_allowed_in_cores(tmp_path: Path) -> None:
    root = _copy_packages(tmp_path)
    (root / "dht" / "planted.py").write_text(
        "import random\nrng = random.Random(7)\n", encoding="utf-8"
    )
    assert check_tree(root) == []
