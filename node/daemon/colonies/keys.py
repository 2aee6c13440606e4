"""ColonyOS identities: secp256k1 keys, their ids and signed requests (docs/colonies-api.md).

A request is signed over SHA3-256 of its base64 payload text: 65 bytes r‖s‖v, hex, where
v is the recovery id (0-3, or 27-30 as some signers write it). A key's id is SHA3-256, in
hex, of the ASCII hex of its uncompressed public key (04‖X‖Y). The curve is libsecp256k1's,
through coincurve; nothing of it is written here.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from coincurve import PrivateKey, PublicKey

from colonynode.core.errors import ColonyError

__all__ = ["BadSignature", "key_id", "load_or_create_key", "new_key", "recover_id", "sign"]

SIGNATURE_BYTES = 65
PRVKEY_HEX = 64


class BadSignature(ColonyError):
    """A signature that is not 65 bytes of hex or recovers no key."""


def _digest(payload: str) -> bytes:
    return hashlib.sha3_256(payload.encode()).digest()


def _id_of(public: PublicKey) -> str:
    return hashlib.sha3_256(public.format(compressed=False).hex().encode()).hexdigest()


def new_key() -> str:
    """A new private key, as the hex text ColonyOS tools keep."""
    return PrivateKey().secret.hex()


def key_id(prvkey: str) -> str:
    """The ColonyOS id of a private key (hex)."""
    return _id_of(PrivateKey(bytes.fromhex(prvkey)).public_key)


def sign(payload: str, prvkey: str) -> str:
    """A ColonyOS signature of `payload` (r‖s‖v hex, v the recovery id)."""
    return PrivateKey(bytes.fromhex(prvkey)).sign_recoverable(_digest(payload), hasher=None).hex()


def recover_id(payload: str, signature: str) -> str:
    """The id of the key that signed `payload`; BadSignature if none did."""
    try:
        raw = bytes.fromhex(signature)
    except (ValueError, TypeError):
        raise BadSignature("the signature is not hex") from None
    if len(raw) != SIGNATURE_BYTES:
        raise BadSignature(f"a signature is {SIGNATURE_BYTES} bytes, not {len(raw)}")
    v = raw[64] - 27 if raw[64] >= 27 else raw[64]
    if not 0 <= v <= 3:
        raise BadSignature(f"recovery id {raw[64]} out of range")
    try:
        public = PublicKey.from_signature_and_message(
            raw[:64] + bytes([v]), _digest(payload), hasher=None
        )
    except Exception as exc:  # coincurve raises ValueError or its own errors
        raise BadSignature(f"no key recovers from the signature ({exc})") from None
    return _id_of(public)


def load_or_create_key(path: Path) -> str:
    """The private key kept in `path` (hex, mode 0600), made on first use."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        text = ""
    if len(text) == PRVKEY_HEX:
        try:
            bytes.fromhex(text)
            return text
        except ValueError:
            pass
        raise ColonyError(f"{path} is damaged: not a hex private key")
    if text:
        raise ColonyError(f"{path} is damaged: not a hex private key")
    key = new_key()
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, key.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return key
