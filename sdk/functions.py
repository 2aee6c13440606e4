"""`@function`, loading a functions file, and running one call the ColonyOS way.

A process's `args` and `kwargs` are passed to the function; its return value becomes the
output: a list or tuple becomes the output list, anything else a one-element list. Values
must be JSON values. An exception fails the process with its message in `errors`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, overload

from colonynode.core.errors import ColonyError

__all__ = ["FunctionError", "function", "load_functions", "run_function"]

F = TypeVar("F", bound=Callable[..., Any])
_ATTR = "__colonynode_function__"
FUNCTIONS_MAX = 1024


class FunctionError(ColonyError):
    """A functions file that cannot be used, or a result that is not JSON."""


@overload
def function(fn: F) -> F: ...
@overload
def function(*, name: str | None = None) -> Callable[[F], F]: ...


def function(fn: F | None = None, *, name: str | None = None) -> F | Callable[[F], F]:
    """Mark a function as runnable by the colony, under its own name or `name`."""

    def mark(f: F) -> F:
        setattr(f, _ATTR, name or f.__name__)
        return f

    return mark(fn) if fn is not None else mark


def load_functions(path: str | Path) -> dict[str, Callable[..., Any]]:
    """The `@function`s of a Python file, by name."""
    file = Path(path)
    if not file.is_file():
        raise FunctionError(f"no functions file at {file}")
    digest = hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:12]
    module_name = f"colonynode_functions_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise FunctionError(f"{file} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise FunctionError(f"{file}:{exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:
        raise FunctionError(f"{file} failed to load: {type(exc).__name__}: {exc}") from None
    found: dict[str, Callable[..., Any]] = {}
    for value in vars(module).values():
        fname = getattr(value, _ATTR, None)
        if callable(value) and isinstance(fname, str):
            if fname in found and found[fname] is not value:
                raise FunctionError(f"{file}: two functions are named {fname!r}")
            found[fname] = value
    if not found:
        raise FunctionError(f"{file} has no @function (from colonynode.sdk import function)")
    if len(found) > FUNCTIONS_MAX:
        raise FunctionError(f"{file} has more than {FUNCTIONS_MAX} functions")
    return found


def run_function(
    fn: Callable[..., Any], args: list[Any] | tuple[Any, ...], kwargs: dict[str, Any]
) -> list[Any]:
    """Call `fn` and shape its result into a process output list.

    Exceptions raised by `fn` propagate (the caller fails the process with them);
    a result that is not JSON raises FunctionError.
    """
    result = fn(*args, **kwargs)
    output = list(result) if isinstance(result, list | tuple) else [result]
    try:
        json.dumps(output, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise FunctionError(
            f"the result of {getattr(fn, '__name__', fn)} is not JSON: {exc}"
        ) from None
    return output
