"""The distribution installs as `colonynode.<folder>`, editable and not, and its script runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(sys.executable).parent
PACKAGES = ("core", "storage", "gossip", "dht", "consensus", "node", "cli", "simulations", "sdk")


def _run(*cmd: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=300, env=env, check=False
    )


def test_editable_console_script_prints_version() -> None:
    result = _run(SCRIPTS / "colonynode", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("colonynode 0."), result.stdout


def test_help_lists_the_command_and_exits_zero() -> None:
    result = _run(SCRIPTS / "colonynode", "--help")
    assert result.returncode == 0, result.stderr
    assert "colonynode" in result.stdout
    assert "--version" in result.stdout


@pytest.mark.slow
def test_non_editable_install_maps_folders_under_colonynode(tmp_path: Path) -> None:
    target = tmp_path / "site"
    result = _run(
        sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target, ROOT
    )
    assert result.returncode == 0, result.stderr
    top = sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info"))
    # Nothing generic (node, cli, storage, ...) at the top of site-packages.
    assert top == ["bin", "colonynode"], top
    for package in PACKAGES:
        assert (target / "colonynode" / package / "__init__.py").is_file(), package
        assert (target / "colonynode" / package / "py.typed").is_file(), package
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = _run(sys.executable, "-c", "import colonynode.core as c; print(c.__file__)", env=env)
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(target)), where.stdout
    script = _run(sys.executable, target / "bin" / "colonynode", "--version", env=env)
    assert script.returncode == 0, script.stderr
    assert script.stdout.startswith("colonynode 0."), script.stdout
