"""colonynode.storage: the Store protocol, LMDB and in-memory stores (DESIGN.md §2, §4)."""
