"""colonynode.node: the daemon. This module imports nothing heavy (DESIGN.md §1)."""
