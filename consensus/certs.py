"""Quorum certificates (DESIGN.md §6): a voter's signature on a committed result, and a
majority of them gathered from one request's verdicts.

A voter signs the result of every register it holds closed (`statement`: the pid and
what two voters must agree on for one committed result, `register.commit_key`), once,
when the register closes or takes another result, and keeps the signature with the
register (`Register.sig`). Each verdict that shows a closed register carries it
(`Verdict.sig`). The claimer that saw a majority commit a result (a close, expiry,
cancel, or a majority read) gathers the signatures of the verdicts that hold that very
result (`gather`); a majority of them, from voters of one voter set, is the result's
certificate, which anyone who knows that set checks without asking a voter
(node/core/certs.py). A statement names no voter set: a voter signs a result once,
whichever set it serves (two sets cannot commit two results for one pid).

Pure: hashing and the canonical codec; the signing key stays the driver's (`Sign`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

from colonynode.consensus.messages import Cert, RegisterView, Verdict
from colonynode.consensus.register import commit_key
from colonynode.core.codec import encode
from colonynode.core.ids import NodeId

__all__ = ["Cert", "Sign", "gather", "statement"]

DOMAIN = b"colonynode/commit/1\0"

# sign(message) -> the voter's Ed25519 signature (the node's identity)
Sign = Callable[[bytes], bytes]


def statement(pid: bytes, view: RegisterView) -> bytes:
    """What a voter signs for a closed register: a digest of the pid and its result (a
    holder's close: state, epoch, holder, output; an expiry or abort: state alone)."""
    key = commit_key(view)
    assert key is not None, "only a closed register has a result to sign"
    state, *rest = key
    fields = [int(state), *(bytes(r) if isinstance(r, bytes) else r for r in rest)]
    return hashlib.sha256(DOMAIN + encode([pid, fields])).digest()


def gather(verdicts: Iterable[tuple[NodeId, Verdict]], view: RegisterView | None) -> Cert:
    """The signatures of the verdicts that hold `view`'s result (none: no result)."""
    if view is None:
        return ()
    key = commit_key(view)
    if key is None:
        return ()
    return tuple((voter, v.sig) for voter, v in verdicts
                 if v.sig and v.view is not None and commit_key(v.view) == key)  # fmt: skip
