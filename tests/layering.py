"""The layering rules of DESIGN.md §1, checked on source text (AST), not by importing.

Used by tests/test_layering.py on the repository and on planted violations.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Which of our packages each package may import (arrows point down).
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "storage": frozenset({"core"}),
    "gossip": frozenset({"core", "storage"}),
    "dht": frozenset({"core", "storage"}),
    "consensus": frozenset({"core", "storage"}),
    "node": frozenset({"core", "storage", "gossip", "dht", "consensus"}),
    "sdk": frozenset({"core", "node"}),
    "cli": frozenset({"core", "storage", "node", "sdk", "simulations"}),
    "simulations": frozenset({"core", "storage", "gossip", "dht", "consensus", "node"}),
}
# simulations/ may reach into node/ only for the sans-IO NodeCore package.
SIMULATION_NODE_PACKAGE = "colonynode.node.core"

# Sans-IO packages: no I/O libraries, no wall clock, no unseeded randomness. NodeCore's
# package (node/core/) obeys the same rule: the simulator runs it.
SANS_IO = ("core", "gossip", "dht", "consensus")
SANS_IO_DIRS = ("node/core/",)
IO_MODULES = frozenset(
    {"trio", "libp2p", "lmdb", "socket", "asyncio", "hypercorn", "httpx", "multiaddr"}
)
WALL_CLOCK = frozenset(
    {
        ("time", "time"),
        ("time", "monotonic"),
        ("time", "perf_counter"),
        ("time", "time_ns"),
        ("time", "monotonic_ns"),
        ("time", "sleep"),
        ("datetime", "now"),
        ("datetime", "utcnow"),
        ("datetime", "today"),
    }
)
# node/__init__.py is imported by the simulator and the CLI: nothing heavy there.
LIGHT_FILES = ("node/__init__.py",)


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}"


def _imports(tree: ast.AST, package: str) -> Iterator[tuple[int, str]]:
    """Every module name imported, relative imports resolved inside colonynode.<package>."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                yield node.lineno, f"colonynode.{package}"
                continue
            base = node.module or ""
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _wall_clock_uses(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in WALL_CLOCK:
                yield node.lineno, f"{node.value.id}.{node.attr}"
            if node.value.id == "random" and node.attr not in ("Random", "SystemRandom"):
                yield node.lineno, f"random.{node.attr} (use an injected random.Random(seed))"
        elif isinstance(node, ast.ImportFrom) and node.module in ("time", "random"):
            for alias in node.names:
                if (node.module, alias.name) in WALL_CLOCK or (
                    node.module == "random" and alias.name != "Random"
                ):
                    yield node.lineno, f"from {node.module} import {alias.name}"


def check_tree(root: Path) -> list[Violation]:
    """All layering violations in the repository rooted at `root`."""
    found: list[Violation] = []
    for package, allowed in ALLOWED.items():
        folder = root / package
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
            sans_io = package in SANS_IO or rel.startswith(SANS_IO_DIRS)
            light = rel in LIGHT_FILES
            for line, name in _imports(tree, package):
                top = name.split(".")[0]
                if (sans_io or light) and top in IO_MODULES:
                    found.append(Violation(rel, line, f"sans-IO code imports {top}"))
                if top != "colonynode":
                    continue
                parts = name.split(".")
                if len(parts) < 2 or parts[1] == package:
                    continue
                target = parts[1]
                if target not in allowed:
                    found.append(Violation(rel, line, f"{package}/ may not import {target}/"))
                elif (
                    package == "simulations"
                    and target == "node"
                    and len(parts) > 2
                    and ".".join(parts[:3]) != SIMULATION_NODE_PACKAGE
                ):
                    found.append(
                        Violation(rel, line, f"simulations/ may import only NodeCore, not {name}")
                    )
            if sans_io:
                for line, what in _wall_clock_uses(tree):
                    found.append(Violation(rel, line, f"sans-IO code uses the wall clock: {what}"))
    return found
