"""Canonical CBOR with limits, and typed messages (DESIGN.md §4, STYLE.md 4).

A message is a frozen dataclass registered under an integer tag in a `MessageCodec`; on
the wire it is the array ``[tag, field1, field2, ...]`` and a frame is an array of
messages (a batch). Decoding bounds the frame size, nesting depth, array and map sizes,
string sizes and integer widths, then converts every field to its annotated type or
raises `DecodeError`: unknown tags, missing or extra fields and ill-typed values are
refused, never passed on.

Fields may be: bool, int, float (finite: a NaN or an infinity is refused, they would
reach timers and bounds), str, bytes, NodeId (32 bytes), IntEnum subclasses,
``X | None``, ``tuple[X, ...]``, ``tuple[X, Y]``, ``dict[K, V]``, nested dataclasses
(encoded as arrays without a tag) and ``Any`` (plain CBOR data, bounded by the limits).
Trailing fields with defaults may be left off by an older sender (append-only evolution).
"""

from __future__ import annotations

import dataclasses
import enum
import io
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import cbor2

from colonynode.core.errors import DecodeError, LimitExceeded
from colonynode.core.ids import NODE_ID_BYTES, NodeId
from colonynode.core.limits import WIRE, DecodeLimits

__all__ = ["MessageCodec", "decode", "decode_raw", "encode", "from_wire", "to_wire"]

T = TypeVar("T")
Converter = Callable[[Any], Any]


def encode(obj: Any) -> bytes:
    """Canonical CBOR of plain data (or of a dataclass, as its wire array)."""
    try:
        return cbor2.dumps(_canonical_wire(obj))
    except _NotPlain:
        return cbor2.dumps(to_wire(obj), canonical=True)


class _NotPlain(Exception):
    """A value `_canonical_wire` leaves to cbor2's canonical mode."""


def _key_order(item: tuple[str, Any]) -> tuple[int, str]:
    key = item[0]
    return (len(key) if key.isascii() else len(key.encode()), key)


def _canonical_wire(value: Any) -> Any:
    """`to_wire(value)` with every map's text keys in canonical order (shorter first,
    then by bytes; UTF-8 sorts as code points do), so that cbor2's plain mode writes the
    canonical bytes: a submission record in 16 µs, not 30 (cbor2's canonical mode encodes
    every key to sort it). Floats (canonical is the shortest exact width) and maps with
    other keys raise _NotPlain: cbor2's canonical mode writes those."""
    kind = type(value)
    if kind is str or kind is int or kind is bytes or kind is bool or value is None:
        return value
    if kind is dict:
        items = []
        for key, item in value.items():
            if type(key) is not str:
                raise _NotPlain
            items.append((key, _canonical_wire(item)))
        if len(items) > 1:
            items.sort(key=_key_order)
        return dict(items)
    if kind is list or kind is tuple:
        return [_canonical_wire(item) for item in value]
    names = _FIELD_NAMES.get(kind)
    if names is not None:
        return [_canonical_wire(getattr(value, name)) for name in names]
    if kind is float:
        raise _NotPlain
    wire = to_wire(value)  # enums, subclasses, a dataclass not met before
    if type(wire) is kind:
        if isinstance(value, str | bytes):
            return value  # NodeId and the like: cbor2 writes them as their base
        raise _NotPlain
    return _canonical_wire(wire)


def _no_tags(_decoder: Any, tag: Any) -> Any:
    raise DecodeError(f"CBOR tag {tag.tag} is not allowed")


def decode(data: bytes, limits: DecodeLimits = WIRE) -> Any:
    """Plain data from canonical CBOR bytes, every limit checked."""
    value = decode_raw(data, limits)
    _check_limits(value, limits)
    return value


def decode_raw(data: bytes, limits: DecodeLimits = WIRE) -> Any:
    """Plain data from CBOR bytes, its size and nesting checked but not its strings,
    integers, arrays and maps: for a typed conversion, which checks those
    (`MessageCodec`, `from_wire`)."""
    if len(data) > limits.frame_bytes_max:
        raise LimitExceeded(f"frame of {len(data)} bytes over the {limits.frame_bytes_max} cap")
    stream = io.BytesIO(data)
    try:
        decoder = cbor2.CBORDecoder(
            stream,
            tag_hook=_no_tags,
            max_depth=limits.depth_max + 1,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        )
        value = decoder.decode()
    except DecodeError:
        raise
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError) as exc:
        if "nesting depth" in str(exc) or isinstance(exc, RecursionError):
            raise LimitExceeded(f"nesting deeper than {limits.depth_max}") from None
        raise DecodeError(f"malformed CBOR: {exc}") from None
    if stream.tell() != len(data):
        raise DecodeError(f"{len(data) - stream.tell()} trailing bytes after the CBOR value")
    return value


def _check_limits(value: Any, limits: DecodeLimits) -> None:
    stack: list[tuple[Any, int]] = [(value, 0)]
    int_max = 1 << limits.int_bits_max
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is list or kind is dict:
            if depth >= limits.depth_max:
                raise LimitExceeded(f"nesting deeper than {limits.depth_max}")
            if len(item) > limits.items_max:
                raise LimitExceeded(f"{len(item)} items over the {limits.items_max} cap")
            if kind is dict:
                for k, v in item.items():
                    stack.append((k, depth + 1))
                    stack.append((v, depth + 1))
            else:
                stack.extend((v, depth + 1) for v in item)
        elif kind is str or kind is bytes:
            if len(item) > limits.str_bytes_max:
                raise LimitExceeded(f"string of {len(item)} over the {limits.str_bytes_max} cap")
        elif kind is int:
            if not -int_max < item < int_max:
                raise LimitExceeded(f"integer wider than {limits.int_bits_max} bits")
        elif kind is tuple or kind is frozenset:  # map keys that were arrays
            stack.extend((v, depth + 1) for v in item)
        elif item is None or kind is bool or kind is float:
            pass
        else:
            raise DecodeError(f"unsupported CBOR value of type {kind.__name__}")


# -- typed conversion -------------------------------------------------------------------


_PLAIN = frozenset({bytes, str, int, float, bool, type(None)})
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}  # dataclass -> its field names, in order
# type -> how to_wire converts its values (found once a type: `is_dataclass` on an enum
# class goes through EnumType.__getattr__, 8 % of a busy daemon's CPU when asked a value)
_AS_IS, _ENUM, _SEQUENCE, _MAP = range(4)
_KINDS: dict[type, int] = {}


def _kind_of(kind: type) -> int:
    if issubclass(kind, enum.Enum):
        return _ENUM
    if issubclass(kind, tuple | list):
        return _SEQUENCE
    if issubclass(kind, dict):
        return _MAP
    return _AS_IS  # bytes and str subclasses (NodeId), and whatever cbor2 takes as it is


def to_wire(obj: Any) -> Any:
    """Plain CBOR-able data for a message value (dataclasses become arrays)."""
    kind = type(obj)
    if kind in _PLAIN:
        return obj
    names = _FIELD_NAMES.get(kind)
    if names is not None:
        return [to_wire(getattr(obj, name)) for name in names]
    how = _KINDS.get(kind)
    if how is None:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            names = _FIELD_NAMES[kind] = tuple(f.name for f in dataclasses.fields(obj))
            return [to_wire(getattr(obj, name)) for name in names]
        how = _KINDS[kind] = _kind_of(kind)
    if how == _ENUM:
        return obj.value
    if how == _SEQUENCE:
        return [to_wire(v) for v in obj]
    if how == _MAP:
        return {to_wire(k): to_wire(v) for k, v in obj.items()}
    return obj


def _type_error(want: str, got: Any) -> DecodeError:
    return DecodeError(f"expected {want}, got {type(got).__name__}")


# The typed conversion checks the limits of every value it takes (strings, integers,
# arrays and maps of its fields; `Any` fields walked by `_check_limits`), so a frame of
# messages is decoded without a walk of its own (`decode_raw`): a busy daemon spent more
# time walking frames than decoding them. Each dataclass gets a converter generated once
# (plain checks inline, like dataclasses' own __init__), not a call a field.

_LIMITS = WIRE  # the limits the converters check (every protocol's: core/limits.py)
_INT_MAX = 1 << _LIMITS.int_bits_max
_FLOAT_INT_MAX = 1 << 53  # an int a float field takes exactly


def _scalar(kind: type) -> Converter:
    def convert(value: Any) -> Any:
        # bool is an int in Python: an int field refuses True, a bool field refuses 1.
        if type(value) is kind:
            if kind is float and not math.isfinite(typing.cast(float, value)):
                raise DecodeError(f"expected a finite float, got {value!r}")  # timers, bounds
            _check_limits(value, _LIMITS)  # an int's width, a string's length
            return value
        if kind is float and type(value) is int:
            if not -_FLOAT_INT_MAX <= value <= _FLOAT_INT_MAX:
                raise LimitExceeded(f"integer {value} too wide for a float field")
            return float(value)
        raise _type_error(kind.__name__, value)

    return convert


def _node_id(value: Any) -> NodeId:
    if type(value) is not bytes or len(value) != NODE_ID_BYTES:
        raise DecodeError(f"expected a {NODE_ID_BYTES}-byte node id")
    return NodeId(value)


def _any(value: Any) -> Any:
    _check_limits(value, _LIMITS)
    return value


def _items(value: Any, what: str) -> None:
    if type(value) is not list and type(value) is not dict:
        raise _type_error(what, value)
    if len(value) > _LIMITS.items_max:
        raise LimitExceeded(f"{len(value)} items over the {_LIMITS.items_max} cap")


def _converter(tp: Any, owner: str) -> Converter:
    """Build (once per field type) the function that checks and converts a wire value."""
    if tp is Any:
        return _any
    if tp is NodeId:
        return _node_id
    if tp in (bool, int, float, str, bytes):
        return _scalar(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        enum_type = tp
        members = {m.value: m for m in enum_type}

        def convert_enum(value: Any) -> Any:
            member = members.get(value) if type(value) is int else None
            if member is None:
                raise DecodeError(f"{value!r} is not a {enum_type.__name__}")
            return member

        return convert_enum
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass_converter(tp)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) != 1 or len(args) != 2:
            raise TypeError(f"{owner}: only `X | None` unions are supported, not {tp}")
        inner = _converter(options[0], owner)
        return lambda v: None if v is None else inner(v)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            item = _converter(args[0], owner)

            def convert_tuple(value: Any) -> tuple[Any, ...]:
                if type(value) is not list:
                    raise _type_error("array", value)
                _items(value, "array")
                return tuple([item(v) for v in value])

            return convert_tuple
        items = [_converter(a, owner) for a in args]

        def convert_fixed(value: Any) -> tuple[Any, ...]:
            if type(value) is not list or len(value) != len(items):
                raise _type_error(f"array of {len(items)}", value)
            return tuple(f(v) for f, v in zip(items, value, strict=True))

        return convert_fixed
    if origin is dict:
        key, val = _converter(args[0], owner), _converter(args[1], owner)

        def convert_dict(value: Any) -> dict[Any, Any]:
            if type(value) is not dict:
                raise _type_error("map", value)
            _items(value, "map")
            return {key(k): val(v) for k, v in value.items()}

        return convert_dict
    raise TypeError(f"{owner}: unsupported field type {tp!r}")


_DATACLASS_CONVERTERS: dict[type, Converter] = {}

# Inline checks of the generated converters, by field type (`v`: the wire value; a value
# that fails goes to the field's converter, which raises, or converts an int to a float).
_INLINE = {
    int: "if type(v) is not int or not -INT_MAX < v < INT_MAX: v = conv[{i}](v)",
    str: "if type(v) is not str or len(v) > STR_MAX: v = conv[{i}](v)",
    bytes: "if type(v) is not bytes or len(v) > STR_MAX: v = conv[{i}](v)",
    bool: "if type(v) is not bool: v = conv[{i}](v)",
    float: "if type(v) is not float or v - v != 0.0: v = conv[{i}](v)",  # nan, inf
    NodeId: "if type(v) is not bytes or len(v) != NODE_ID: v = conv[{i}](v)",
    Any: "if v is not None and type(v) is not bool: v = conv[{i}](v)",
}


def _inline(tp: Any, i: int, env: dict[str, Any]) -> str:
    """The check of field `i` of type `tp` as one line of the generated converter."""
    inline = _INLINE.get(tp)
    if inline is not None:
        return inline.format(i=i)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        env[f"E{i}"] = {m.value: m for m in tp}
        return (
            f"v = E{i}.get(v, v) if type(v) is int else v\n"
            f"        if type(v) is not TYPE{i}: v = conv[{i}](v)"
        )
    options = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in options:
        return f"if v is not None: v = conv[{i}](v)"
    return f"v = conv[{i}](v)"


def _dataclass_converter(cls: type) -> Converter:
    """The converter of a dataclass: a generated function that checks the arity, then
    each field (plain types inline, falling back to the field's converter, which raises
    or converts an int to a float), and builds the instance (its __post_init__ may
    refuse it); a field that fails is named in the error."""
    cached = _DATACLASS_CONVERTERS.get(cls)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    required = sum(
        1
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    names = [f.name for f in fields]
    converters: list[Converter] = []
    built: list[Converter] = []

    def convert(value: Any) -> Any:  # until the generated one exists (recursive types)
        return built[0](value)

    _DATACLASS_CONVERTERS[cls] = convert  # before recursing: self-referential types
    converters.extend(_converter(hints[f.name], f"{cls.__name__}.{f.name}") for f in fields)
    namespace: dict[str, Any] = {}
    env = {
        "type_error": _type_error, "ARRAY": f"{cls.__name__} array", "REQUIRED": required,
        "FIELDS": len(names), "conv": converters, "INT_MAX": _INT_MAX,
        "STR_MAX": _LIMITS.str_bytes_max, "DecodeError": DecodeError,
        "arity": lambda n: DecodeError(
            f"{cls.__name__} takes {required}..{len(names)} fields, got {n}"),
        "field_error": lambda i, exc: _field_error(cls, names[i], exc),
        "CLS": cls, "NAME": cls.__name__, "NODE_ID": NODE_ID_BYTES,
    }  # fmt: skip
    lines = ["def convert(value):",
             "    if type(value) is not list:",
             "        raise type_error(ARRAY, value)",
             "    n = len(value)",
             "    if n < REQUIRED or n > FIELDS:",
             "        raise arity(n)",
             "    i = 0",
             "    try:"]  # fmt: skip
    for i, f in enumerate(fields):
        tp = hints[f.name]
        if i >= required:
            lines.append(f"        if n == {i}:")
            lines.append(f"            return CLS({', '.join(f'a{j}' for j in range(i))})")
        lines.append(f"        i = {i}")
        lines.append(f"        v = value[{i}]")
        lines.append("        " + _inline(tp, i, env))
        env[f"TYPE{i}"] = tp
        lines.append(f"        a{i} = v")
    lines.append(f"        return CLS({', '.join(f'a{j}' for j in range(len(fields)))})")
    lines.append("    except DecodeError as exc:")
    lines.append("        raise field_error(i, exc) from None")
    lines.append("    except (ValueError, TypeError) as exc:  # __post_init__ validation")
    lines.append("        raise DecodeError(f'{NAME}: {exc}') from None")
    exec("\n".join(lines), env, namespace)  # source made above from the fields alone
    built.append(namespace["convert"])
    _DATACLASS_CONVERTERS[cls] = namespace["convert"]
    return built[0]


def _field_error(cls: type, name: str, exc: DecodeError) -> DecodeError:
    text = str(exc)
    if text.startswith(f"{cls.__name__}:"):
        return exc  # raised by the instance's own checks (or named already)
    out = type(exc)(f"{cls.__name__}.{name}: {text}")
    return out


def from_wire(cls: type[T], value: Any) -> T:
    """Check and convert decoded plain data into an instance of dataclass `cls`."""
    result: T = _dataclass_converter(cls)(value)
    return result


class MessageCodec:
    """The message types of one protocol, by append-only integer tag."""

    def __init__(self, name: str, types_by_tag: Mapping[int, type], limits: DecodeLimits = WIRE):
        self.name = name
        self.limits = limits
        self._by_tag: dict[int, tuple[type, Converter]] = {}
        self._tag_of: dict[type, int] = {}
        for tag, cls in types_by_tag.items():
            if not dataclasses.is_dataclass(cls):
                raise TypeError(f"{cls!r} is not a dataclass")
            self._by_tag[int(tag)] = (cls, _dataclass_converter(cls))
            self._tag_of[cls] = int(tag)

    def message_types(self) -> tuple[type, ...]:
        """The message types of this protocol, in tag order."""
        return tuple(self._by_tag[tag][0] for tag in sorted(self._by_tag))

    def tags(self) -> dict[int, type]:
        """tag -> message type."""
        return {tag: cls for tag, (cls, _) in self._by_tag.items()}

    def tag_of(self, msg: Any) -> int:
        try:
            return self._tag_of[type(msg)]
        except KeyError:
            raise TypeError(f"{type(msg).__name__} is not a {self.name} message") from None

    def encode_one(self, msg: Any) -> list[Any]:
        wire = to_wire(msg)
        return [self.tag_of(msg), *wire]

    def encode_batch(self, msgs: Iterable[Any]) -> bytes:
        """One frame: the canonical CBOR array of every message."""
        return cbor2.dumps([self.encode_one(m) for m in msgs], canonical=True)

    def decode_one(self, item: Any) -> Any:
        if type(item) is not list or not item or type(item[0]) is not int:
            raise DecodeError(f"a {self.name} message is an array that starts with its tag")
        entry = self._by_tag.get(item[0])
        if entry is None:
            raise DecodeError(f"unknown {self.name} message tag {item[0]}")
        return entry[1](item[1:])

    def decode_batch(self, data: bytes) -> list[Any]:
        value = decode_raw(data, self.limits)  # the messages' conversion checks the rest
        if type(value) is not list:
            raise DecodeError(f"a {self.name} frame is an array of messages")
        return self.decode_list(value)

    def decode_list(self, value: list[Any]) -> list[Any]:
        """The messages of a decoded (`decode_raw`) frame's array."""
        if len(value) > self.limits.items_max:
            raise LimitExceeded(f"{len(value)} messages over the {self.limits.items_max} cap")
        return [self.decode_one(item) for item in value]

    def types(self) -> Sequence[type]:
        return [cls for cls, _ in self._by_tag.values()]
