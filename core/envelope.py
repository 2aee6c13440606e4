"""Signed envelopes: every relayed record (DESIGN.md §3).

An envelope carries a canonical CBOR payload, its author's id, a domain tag and an
Ed25519 signature over ``b"colonynode/1\\0" + domain + b"\\0" + payload``. The domain
keeps a signature made for one purpose (an invite) from being replayed as another (a
roster). The payload travels as the exact signed bytes: it is encoded once when signed
and never re-encoded to verify.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from colonynode.core.codec import decode, encode, from_wire
from colonynode.core.errors import DecodeError
from colonynode.core.identity import Identity, verify
from colonynode.core.ids import NodeId, short_id

__all__ = ["Envelope", "seal"]

T = TypeVar("T")
_PREFIX = b"colonynode/1\0"
DOMAIN_BYTES_MAX = 64


def _signed_bytes(domain: str, payload: bytes) -> bytes:
    return _PREFIX + domain.encode() + b"\0" + payload


@dataclass(frozen=True, slots=True)
class Envelope:
    author: NodeId
    domain: str
    payload: bytes
    signature: bytes

    def __post_init__(self) -> None:
        if not 0 < len(self.domain) <= DOMAIN_BYTES_MAX or "\0" in self.domain:
            raise ValueError(f"bad envelope domain {self.domain!r}")

    def verify(self, domain: str) -> None:
        """Raise unless this is a good signature by `author` for `domain`."""
        if self.domain != domain:
            raise DecodeError(f"envelope for {self.domain!r} where {domain!r} was expected")
        verify(self.author, _signed_bytes(self.domain, self.payload), self.signature)

    def open(self, domain: str, cls: type[T]) -> T:
        """Verify, then decode the payload as dataclass `cls`."""
        self.verify(domain)
        return from_wire(cls, decode(self.payload))

    def payload_data(self) -> Any:
        return decode(self.payload)

    def __repr__(self) -> str:
        return f"Envelope({self.domain}, by {short_id(self.author)}, {len(self.payload)} B)"


def seal(identity: Identity, domain: str, payload: Any) -> Envelope:
    """Sign `payload` (plain data or a dataclass) for `domain`."""
    data = encode(payload)
    return Envelope(
        author=identity.node_id,
        domain=domain,
        payload=data,
        signature=identity.sign(_signed_bytes(domain, data)),
    )
