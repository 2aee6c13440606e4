"""colonynode.dht: the sans-IO Kademlia core (DESIGN.md §8). Not built yet (issue 7)."""
