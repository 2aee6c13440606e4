"""ColonyFS on a node: the chunk store, the chunk protocol and the transfers (docs/colonyfs.md)."""
