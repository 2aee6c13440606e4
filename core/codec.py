"""Canonical CBOR with limits, and typed messages (DESIGN.md §4, STYLE.md 4).

A message is a frozen dataclass registered under an integer tag in a `MessageCodec`; on
the wire it is the array ``[tag, field1, field2, ...]`` and a frame is an array of
messages (a batch). Decoding bounds the frame size, nesting depth, array and map sizes,
string sizes and integer widths, then converts every field to its annotated type or
raises `DecodeError`: unknown tags, missing or extra fields and ill-typed values are
refused, never passed on.

Fields may be: bool, int, float, str, bytes, NodeId (32 bytes), IntEnum subclasses,
``X | None``, ``tuple[X, ...]``, ``tuple[X, Y]``, ``dict[K, V]``, nested dataclasses
(encoded as arrays without a tag) and ``Any`` (plain CBOR data, bounded by the limits).
Trailing fields with defaults may be left off by an older sender (append-only evolution).
"""

from __future__ import annotations

import dataclasses
import enum
import io
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import cbor2

from colonynode.core.errors import DecodeError, LimitExceeded
from colonynode.core.ids import NODE_ID_BYTES, NodeId
from colonynode.core.limits import WIRE, DecodeLimits

__all__ = ["MessageCodec", "decode", "encode", "from_wire", "to_wire"]

T = TypeVar("T")
Converter = Callable[[Any], Any]


def encode(obj: Any) -> bytes:
    """Canonical CBOR of plain data (or of a dataclass, as its wire array)."""
    return cbor2.dumps(to_wire(obj), canonical=True)


def _no_tags(_decoder: Any, tag: Any) -> Any:
    raise DecodeError(f"CBOR tag {tag.tag} is not allowed")


def decode(data: bytes, limits: DecodeLimits = WIRE) -> Any:
    """Plain data from canonical CBOR bytes, every limit checked."""
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
    _check_limits(value, limits)
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


def _scalar(kind: type) -> Converter:
    def convert(value: Any) -> Any:
        # bool is an int in Python: an int field refuses True, a bool field refuses 1.
        if type(value) is kind:
            return value
        if kind is float and type(value) is int:
            return float(value)
        raise _type_error(kind.__name__, value)

    return convert


def _node_id(value: Any) -> NodeId:
    if type(value) is not bytes or len(value) != NODE_ID_BYTES:
        raise DecodeError(f"expected a {NODE_ID_BYTES}-byte node id")
    return NodeId(value)


def _converter(tp: Any, owner: str) -> Converter:
    """Build (once per field type) the function that checks and converts a wire value."""
    if tp is Any:
        return lambda v: v
    if tp is NodeId:
        return _node_id
    if tp in (bool, int, float, str, bytes):
        return _scalar(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        enum_type = tp

        def convert_enum(value: Any) -> Any:
            try:
                return enum_type(value)
            except ValueError:
                raise DecodeError(f"{value!r} is not a {enum_type.__name__}") from None

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
            return {key(k): val(v) for k, v in value.items()}

        return convert_dict
    raise TypeError(f"{owner}: unsupported field type {tp!r}")


_DATACLASS_CONVERTERS: dict[type, Converter] = {}


def _dataclass_converter(cls: type) -> Converter:
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

    def convert(value: Any) -> Any:
        if type(value) is not list:
            raise _type_error(f"{cls.__name__} array", value)
        if not required <= len(value) <= len(names):
            raise DecodeError(
                f"{cls.__name__} takes {required}..{len(names)} fields, got {len(value)}"
            )
        try:
            args = [conv(item) for conv, item in zip(converters, value, strict=False)]
        except DecodeError:
            for name, conv, item in zip(names, converters, value, strict=False):
                try:
                    conv(item)
                except DecodeError as exc:  # say which field
                    raise DecodeError(f"{cls.__name__}.{name}: {exc}") from None
            raise
        try:
            return cls(*args)  # fields in order; trailing defaults filled in
        except (ValueError, TypeError) as exc:  # __post_init__ validation
            raise DecodeError(f"{cls.__name__}: {exc}") from None

    _DATACLASS_CONVERTERS[cls] = convert  # before recursing: self-referential types
    converters.extend(_converter(hints[f.name], f"{cls.__name__}.{f.name}") for f in fields)
    return convert


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
        value = decode(data, self.limits)
        if type(value) is not list:
            raise DecodeError(f"a {self.name} frame is an array of messages")
        return [self.decode_one(item) for item in value]

    def types(self) -> Sequence[type]:
        return [cls for cls, _ in self._by_tag.values()]
