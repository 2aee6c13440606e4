"""colonynode.simulations: many nodes of the real protocol cores in one process (DESIGN.md §11)."""
