"""The node's libp2p key pair: its Ed25519 identity as libp2p's types (the Noise
handshake signs with it, links.py). The peer id is derived from the node's own seed."""

from __future__ import annotations

import nacl.signing
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.keys import KeyPair

from colonynode.core.identity import Identity

__all__ = ["keypair_of"]


def keypair_of(identity: Identity) -> KeyPair:
    private = Ed25519PrivateKey(nacl.signing.SigningKey(identity.seed))
    return KeyPair(private, private.get_public_key())
