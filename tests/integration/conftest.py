from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Colony, Daemon, Executors, three_voters


@pytest.fixture
def colony(tmp_path: Path) -> Iterator[Colony]:
    c = Colony(tmp_path)
    try:
        yield c
    finally:
        c.stop_all()


@pytest.fixture
def setup(
    colony: Colony, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[list[Daemon], Executors]]:
    """Three voters a, b, c, and executors (started by the test) serving the test
    module's FUNCTIONS."""
    nodes = three_voters(colony)
    ex = Executors(tmp_path, request.module.FUNCTIONS)
    try:
        yield nodes, ex
    finally:
        ex.stop_all()
