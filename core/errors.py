"""Typed errors. Every expected failure is one of these, with a message a person can act on."""

from __future__ import annotations

__all__ = [
    "ColonyError",
    "DecodeError",
    "LimitExceeded",
    "SignatureError",
    "ValidationError",
]


class ColonyError(Exception):
    """Base of every error colonynode raises on purpose."""


class DecodeError(ColonyError):
    """Bytes that are not a well-formed message of the expected type."""


class LimitExceeded(DecodeError):
    """Input over a named limit (frame bytes, depth, list or string length)."""


class SignatureError(ColonyError):
    """A signature that does not verify, or a signer that is not who it claims."""


class ValidationError(ColonyError):
    """A well-formed value that breaks a rule (unknown field, impossible value)."""
