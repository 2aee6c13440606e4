"""colonynode.sdk: write functions for a colony (`@function`) and talk to a node (`Client`).

from colonynode.sdk import function, log

@function
def add(a: int, b: int) -> int:
    log("adding", a, b)          # shows in `colonynode logs PID` (so does print)
    return a + b
"""

from colonynode.sdk.client import Client, ProcessFailed, WaitTimeout
from colonynode.sdk.context import ProcessContext, current, log, set_attribute
from colonynode.sdk.functions import FunctionError, function, load_functions, run_function

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
