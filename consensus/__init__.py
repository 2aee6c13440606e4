"""colonynode.consensus: the sans-IO lease-register core (DESIGN.md §6). Not built yet (issue 8)."""
