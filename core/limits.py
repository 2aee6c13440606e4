"""Named limits. Every frame, queue, cache and table has one (STYLE.md 9)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FRAME_BYTES_MAX", "WIRE", "DecodeLimits"]

# One frame on a stream: a batch of messages. ~20 KB frames cost the same CPU as tiny
# ones in py-libp2p, and 1 MiB bounds what a peer can make us buffer per stream.
FRAME_BYTES_MAX = 1 << 20


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds every decoder enforces before it hands a value to a core."""

    frame_bytes_max: int = FRAME_BYTES_MAX
    depth_max: int = 16  # nesting of arrays and maps
    items_max: int = 4096  # elements of one array or entries of one map
    str_bytes_max: int = 256 * 1024  # one text or byte string
    int_bits_max: int = 64  # |int| < 2**64


WIRE = DecodeLimits()
