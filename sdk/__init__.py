"""colonynode.sdk: write functions for a colony (`@function`) and talk to a node.

from colonynode.sdk import function

@function
def add(a: int, b: int) -> int:
    return a + b
"""

from colonynode.sdk.functions import FunctionError, function, load_functions, run_function

__all__ = ["FunctionError", "function", "load_functions", "run_function"]
