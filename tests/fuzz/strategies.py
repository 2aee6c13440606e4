"""Hypothesis strategies for the fuzz tests: wire data shaped like the messages of a
`MessageCodec` (derived from the dataclasses' type hints, so a new field is fuzzed
without a change here), plain CBOR-able data, JSON-able data and byte mutations.

`wire_of(tp)` makes values that are *mostly* of the field's type, and now and then of
another shape or out of its limits: the decoders must refuse those with a typed error.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import types
import typing
from typing import Any

from hypothesis import strategies as st

from colonynode.core.codec import MessageCodec
from colonynode.core.ids import NODE_ID_BYTES, NodeId

__all__ = [
    "EXAMPLES",
    "frames_of",
    "json_values",
    "messages_of",
    "messages_of_type",
    "mutated",
    "plain",
    "wire_of",
]

# The budget: examples a fuzz test runs (COLONYNODE_FUZZ_EXAMPLES; `make fuzz` raises it).
EXAMPLES = int(os.environ.get("COLONYNODE_FUZZ_EXAMPLES", "150"))

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | st.binary(max_size=40)
)
plain = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(st.text(max_size=6) | st.integers(-5, 5), children, max_size=6)
    ),
    max_leaves=24,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False)
    | st.text(max_size=16),
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(st.text(max_size=12), children, max_size=8),
    max_leaves=30,
)  # fmt: skip


def _typed(tp: Any, noisy: bool = True) -> st.SearchStrategy[Any]:
    """Values of field type `tp`, in their wire form (`noisy`: with wrong ones mixed in,
    at every level)."""
    if tp is Any:
        return plain
    if tp is NodeId:
        return st.binary(min_size=NODE_ID_BYTES, max_size=NODE_ID_BYTES)
    if tp is bool:
        return st.booleans()
    if tp is int:  # small ones often: sequence numbers, epochs, counts have bounds
        small = st.integers(0, 5)
        return small | small | st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1)
    if tp is float:
        return st.floats(allow_nan=True) | st.integers(-5, 5)
    if tp is str:
        return st.text(max_size=24)
    if tp is bytes:  # and the sizes of ids, hashes and keys, which decoders check
        sized = st.sampled_from([8, 16, 32, 64]).flatmap(
            lambda n: st.binary(min_size=n, max_size=n)
        )
        return st.binary(max_size=48) | sized
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        values = st.sampled_from([m.value for m in tp])
        return values | st.integers(-2, 40) if noisy else values
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass(tp, noisy)
    of = wire_of if noisy else (lambda t: _typed(t, False))
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(st.none() if a is type(None) else of(a) for a in args))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(of(args[0]), max_size=5)
        return st.tuples(*(of(a) for a in args)).map(list)
    if origin is dict:
        keys = _typed(args[0], False)
        if noisy:
            keys = st.one_of(keys, st.text(max_size=4), st.integers(-3, 3))
        return st.dictionaries(keys.filter(_hashable), of(args[1]), max_size=4)
    raise TypeError(f"no strategy for {tp!r}")


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def wire_of(tp: Any) -> st.SearchStrategy[Any]:
    """Mostly values of type `tp`; one in eight anything at all."""
    return st.deferred(lambda: st.one_of(_typed(tp), _typed(tp), _typed(tp), _typed(tp),
                                         _typed(tp), _typed(tp), _typed(tp), plain))  # fmt: skip


_DATACLASSES: dict[tuple[type, bool], st.SearchStrategy[Any]] = {}


def _dataclass(cls: type, noisy: bool = True) -> st.SearchStrategy[Any]:
    """A dataclass's wire array: its fields in order (`noisy`: now and then with
    trailing ones left off, as an older sender does, or one too many)."""
    cached = _DATACLASSES.get((cls, noisy))
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls)
    fields = [wire_of(hints[f.name]) if noisy else _typed(hints[f.name], False)
              for f in dataclasses.fields(cls)]  # fmt: skip

    def build(values: list[Any], cut: int) -> list[Any]:
        return values[: len(values) - cut] if cut >= 0 else [*values, None]

    cuts = st.sampled_from([0, 0, 0, 0, 1, 2, -1]) if noisy else st.just(0)
    strategy = st.deferred(lambda: st.builds(build, st.tuples(*fields).map(list), cuts))
    _DATACLASSES[(cls, noisy)] = strategy
    return strategy


def messages_of(codec: MessageCodec) -> st.SearchStrategy[list[Any]]:
    """One message of `codec` in its wire form: `[tag, field, ...]` (now and then an
    unknown tag)."""
    tags = codec.tags()

    def tagged(tag: int) -> st.SearchStrategy[list[Any]]:
        cls = tags.get(tag)
        if cls is None:
            body = st.lists(plain, max_size=4)
        else:  # half well-typed throughout, half with wrong values mixed in
            body = _dataclass(cls, False) | _dataclass(cls, True)
        return body.map(lambda fields: [tag, *fields])

    tag = st.sampled_from(sorted(tags)) | st.integers(-3, 60)
    return tag.flatmap(tagged)


def messages_of_type(codec: MessageCodec, cls: type) -> st.SearchStrategy[list[Any]]:
    """One message of type `cls` in wire form, half well-typed throughout."""
    tag = {c: t for t, c in codec.tags().items()}[cls]
    body = _dataclass(cls, False) | _dataclass(cls, True)
    return body.map(lambda fields: [tag, *fields])


def frames_of(codec: MessageCodec) -> st.SearchStrategy[list[list[Any]]]:
    """A frame's messages in wire form (a batch)."""
    return st.lists(messages_of(codec), max_size=6)


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` with a few bytes flipped, cut, inserted or duplicated."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("flip", "cut", "insert", "repeat")))
        if not out:
            op = "insert"
        i = draw(st.integers(0, max(0, len(out) - 1)))
        if op == "flip":
            out[i] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del out[i : i + draw(st.integers(1, 8))]
        elif op == "insert":
            out[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            out[i:i] = out[i : i + draw(st.integers(1, 16))]
    return bytes(out)
