"""colonynode.sdk: write functions for a colony (`@function`) and talk to a node (`Client`).

from colonynode.sdk import function, log

@function
def add(a: int, b: int) -> int:
    log("adding", a, b)          # shows in `colonynode logs PID` (so does print)
    return a + b
"""

from typing import TYPE_CHECKING, Any

from colonynode.sdk.context import ProcessContext, current, log, set_attribute
from colonynode.sdk.functions import FunctionError, function, load_functions, run_function

if TYPE_CHECKING:
    from colonynode.sdk.client import Client, ProcessFailed, WaitTimeout

_CLIENT = ("Client", "ProcessFailed", "WaitTimeout")


def __getattr__(name: str) -> Any:
    """The client on first use: a worker process that only runs functions (`from
    colonynode.sdk import function`) never loads it (HTTP, TLS, signatures: ~10 MiB)."""
    if name in _CLIENT:
        from colonynode.sdk import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Client",
    "FunctionError",
    "ProcessContext",
    "ProcessFailed",
    "WaitTimeout",
    "current",
    "function",
    "load_functions",
    "log",
    "run_function",
    "set_attribute",
]
