"""Functions files: @function discovery, clear errors, ColonyOS output shaping."""

from __future__ import annotations

from pathlib import Path

import pytest

from colonynode.sdk import FunctionError, function, load_functions, run_function

FILE = """
from colonynode.sdk import function

@function
def add(a: int, b: int) -> int:
    return a + b

@function(name="pair")
def make_pair(x):
    return (x, x)

@function
def boom():
    raise ValueError("it broke")

def helper():
    return "not exported"
"""


def test_functions_file_is_loaded_by_decorated_name(tmp_path: Path) -> None:
    path = tmp_path / "functions.py"
    path.write_text(FILE)
    fns = load_functions(path)
    assert sorted(fns) == ["add", "boom", "pair"]
    assert run_function(fns["add"], [1, 2], {}) == [3]
    assert run_function(fns["pair"], [], {"x": "y"}) == ["y", "y"]
    with pytest.raises(ValueError, match="it broke"):
        run_function(fns["boom"], [], {})


def test_non_json_results_are_refused() -> None:
    @function
    def odd() -> object:
        return {1, 2}

    with pytest.raises(FunctionError, match="not JSON"):
        run_function(odd, [], {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("def f(:\n", "syntax error"),
        ("raise RuntimeError('nope')\n", "failed to load: RuntimeError: nope"),
        ("x = 1\n", "has no @function"),
    ],
)
def test_bad_functions_files_give_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.py"
    path.write_text(text)
    with pytest.raises(FunctionError, match=message) as err:
        load_functions(path)
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FunctionError, match="no functions file"):
        load_functions(tmp_path / "nope.py")
