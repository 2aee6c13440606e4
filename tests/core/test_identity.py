"""Identity, peer ids and signed envelopes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from colonynode.core.envelope import Envelope, seal
from colonynode.core.errors import DecodeError, SignatureError
from colonynode.core.identity import Identity
from colonynode.core.ids import (
    b58decode,
    b58encode,
    node_id_from_peer_id,
    peer_id_str,
    short_id,
)

SEED = bytes(range(32))


def test_identity_from_a_seed_is_stable_and_its_peer_id_is_libp2p_ed25519() -> None:
    a, b = Identity(SEED), Identity(SEED)
    assert a.node_id == b.node_id and len(a.node_id) == 32
    assert a.peer_id.startswith("12D3KooW")
    assert node_id_from_peer_id(a.peer_id) == a.node_id
    assert short_id(a.node_id) == a.peer_id[-6:]


def test_peer_id_of_another_key_type_is_refused() -> None:
    # An RSA-style sha256 multihash peer id ("Qm...") carries no Ed25519 key.
    qm = b58encode(bytes([0x12, 0x20]) + b"\x01" * 32)
    with pytest.raises(DecodeError):
        node_id_from_peer_id(qm)
    with pytest.raises(DecodeError):
        b58decode("0OIl")


def test_base58_round_trips_leading_zero_bytes() -> None:
    for data in (b"", b"\0", b"\0\0\x01", bytes(range(40))):
        assert b58decode(b58encode(data)) == data


def test_seal_and_open() -> None:
    ident = Identity(SEED)
    env = seal(ident, "test", {"a": 1})
    env.verify("test")
    assert env.payload_data() == {"a": 1}
    assert env.author == ident.node_id


def test_signature_is_bound_to_its_domain() -> None:
    env = seal(Identity(SEED), "invite", {"a": 1})
    with pytest.raises(DecodeError, match="where 'roster' was expected"):
        env.verify("roster")
    # Relabelling the domain breaks the signature.
    with pytest.raises(SignatureError):
        replace(env, domain="roster").verify("roster")


def test_tampered_payload_or_wrong_author_fails() -> None:
    ident, other = Identity(SEED), Identity(bytes(32))
    env = seal(ident, "test", {"a": 1})
    with pytest.raises(SignatureError):
        replace(env, payload=env.payload[:-1] + b"\x02").verify("test")
    with pytest.raises(SignatureError):
        replace(env, author=other.node_id).verify("test")
    with pytest.raises(SignatureError):
        replace(env, signature=b"\0" * 10).verify("test")


def test_envelope_refuses_bad_domains() -> None:
    with pytest.raises(ValueError):
        Envelope(Identity(SEED).node_id, "", b"", b"")
    assert peer_id_str(Identity(SEED).node_id) == Identity(SEED).peer_id
