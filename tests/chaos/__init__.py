"""Chaos runs against real daemons: a nemesis that kills, pauses, cuts and slows them,
a recorded history and a checker (issue 18; `make chaos`, docs/reliability.md)."""
