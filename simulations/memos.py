"""Memos the simulator shares between its nodes: the same answers a node's own check
or decoder gives (each is a pure function of exact bytes or of one object), computed
once instead of once per node. A simulation speed-up, not a shortcut in the cores: a
thousand nodes otherwise decode and parse every record a thousand times.

- `VerifyMemo` (gossip_scenario.py): record signatures, by the envelope's exact bytes;
- `OpenMemo`: record bodies, by the exact signed payload (a bad one raises every time);
- `SpecMemo`: process specs parsed from a body, by the identity of the JSON object the
  `OpenMemo` handed out (the memo keeps the object, so its identity stays its own).
"""

from __future__ import annotations

from typing import Any

from colonynode.core.envelope import Envelope
from colonynode.core.process import FunctionSpec, parse_spec
from colonynode.gossip.records import RecordBody, open_body

__all__ = ["MEMO_MAX", "OpenMemo", "SpecMemo"]

MEMO_MAX = 1_000_000  # entries per memo; cleared when full (still correct)


class OpenMemo:
    def __init__(self) -> None:
        self.memo: dict[bytes, RecordBody] = {}
        self.real = 0

    def __call__(self, env: Envelope) -> RecordBody:
        body = self.memo.get(env.payload)
        if body is None:
            body = open_body(env)  # raises DecodeError for a bad payload: not kept
            self.real += 1
            if len(self.memo) >= MEMO_MAX:
                self.memo.clear()
            self.memo[env.payload] = body
        return body


class SpecMemo:
    def __init__(self) -> None:
        self.memo: dict[int, tuple[Any, FunctionSpec]] = {}
        self.real = 0

    def __call__(self, value: Any) -> FunctionSpec:
        held = self.memo.get(id(value))
        if held is not None and held[0] is value:
            return held[1]
        spec = parse_spec(value)  # raises ValidationError for a bad spec: not kept
        self.real += 1
        if len(self.memo) >= MEMO_MAX:
            self.memo.clear()
        self.memo[id(value)] = (value, spec)
        return spec
