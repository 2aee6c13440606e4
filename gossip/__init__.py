"""colonynode.gossip: the sans-IO gossip core (DESIGN.md §7). Not built yet (issue 6)."""
