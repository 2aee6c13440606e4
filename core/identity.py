"""A node's Ed25519 identity (PyNaCl) and signature checks.

The 32-byte seed is the secret; the node id is the public key (see `core.ids`). Reading
and writing the seed file is the daemon's business (`node.datadir`): this module does no I/O.
"""

from __future__ import annotations

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from colonynode.core.errors import SignatureError
from colonynode.core.ids import NodeId, node_id, peer_id_str, short_id

__all__ = ["SEED_BYTES", "SIGNATURE_BYTES", "Identity", "verify"]

SEED_BYTES = 32
SIGNATURE_BYTES = 64


class Identity:
    """A signing key and the node id it stands for."""

    __slots__ = ("_key", "node_id")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_BYTES:
            raise ValueError(f"an Ed25519 seed is {SEED_BYTES} bytes, got {len(seed)}")
        self._key = SigningKey(seed)
        self.node_id: NodeId = node_id(bytes(self._key.verify_key))

    @classmethod
    def generate(cls) -> Identity:
        return cls(bytes(SigningKey.generate()))

    @property
    def seed(self) -> bytes:
        return bytes(self._key)

    @property
    def peer_id(self) -> str:
        return peer_id_str(self.node_id)

    @property
    def short_id(self) -> str:
        return short_id(self.node_id)

    def sign(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message).signature)

    def __repr__(self) -> str:
        return f"Identity({self.peer_id})"


def verify(signer: NodeId, message: bytes, signature: bytes) -> None:
    """Raise SignatureError unless `signature` is `signer`'s over `message`."""
    if len(signature) != SIGNATURE_BYTES:
        raise SignatureError(f"a signature is {SIGNATURE_BYTES} bytes, got {len(signature)}")
    try:
        VerifyKey(signer).verify(message, signature)
    except (BadSignatureError, ValueError):
        raise SignatureError(f"bad signature by {short_id(signer)}") from None
