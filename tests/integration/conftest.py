from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Colony


@pytest.fixture
def colony(tmp_path: Path) -> Iterator[Colony]:
    c = Colony(tmp_path)
    try:
        yield c
    finally:
        c.stop_all()
