"""colonynode.cli: the `colonynode` command."""
