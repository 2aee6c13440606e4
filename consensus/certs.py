"""Quorum certificates (DESIGN.md §6): a voter's signature on a committed result, and a
majority of them gathered from one request's verdicts.

A voter signs the result of every register it holds closed (`statement`: the pid and
what two voters must agree on for one committed result, `register.commit_key`), once,
when the register closes or takes another result, and keeps the signature with the
register (`Register.sig`). Each verdict that shows a closed register carries it
(`Verdict.sig`). A voter also signs each lease it grants (RUNNING, epoch, holder; made
for the claim's verdict, not kept), so that a node takes a RUNNING announcement only on
a majority's word. The claimer that saw a majority commit a result (a close, expiry,
cancel, or a majority read), or grant it a lease, gathers the signatures of the verdicts
that hold that very result (`gather`); a majority of them, from voters of one voter
set, is the result's certificate, which anyone who knows that set checks without asking a voter
(node/core/certs.py). A statement names no voter set: a voter signs a result once,
whichever set it serves (two sets cannot commit two results for one pid).

Pure: hashing and the canonical codec; the signing key stays the driver's (`Sign`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from colonynode.consensus.messages import Cert, RegisterView, State, Verdict
from colonynode.consensus.register import commit_key
from colonynode.core.ids import NodeId

__all__ = ["Cert", "Sign", "gather", "signed_key", "statement"]

DOMAIN = b"colonynode/commit/1\0"

# sign(message) -> the voter's Ed25519 signature (the node's identity)
Sign = Callable[[bytes], bytes]


def signed_key(view: RegisterView) -> tuple[Any, ...] | None:
    """What a signature names: a closed register's result (`commit_key`), or a granted
    lease (RUNNING, epoch, holder); None for anything else."""
    if view.state is State.RUNNING and view.holder is not None:
        return (State.RUNNING, view.epoch, view.holder, b"")
    return commit_key(view)


def statement(pid: bytes, view: RegisterView) -> bytes:
    """What a voter signs for a closed register, or for a lease it grants: a digest of
    the pid and its result (a holder's close: state, epoch, holder, output in canonical
    CBOR; an expiry or abort: state alone) or its grant (RUNNING, epoch, holder), each
    part of fixed length or length-prefixed."""
    key = signed_key(view)
    assert key is not None, "only a closed register or a granted lease is signed"
    h = hashlib.sha256(DOMAIN)
    h.update(len(pid).to_bytes(1, "big") + pid + int(key[0]).to_bytes(1, "big"))
    if len(key) == 4:  # (state, epoch, holder, encoded output)
        _, epoch, holder, output = key
        h.update(int(epoch).to_bytes(8, "big") + bytes(holder) + output)
    return h.digest()


def gather(verdicts: Iterable[tuple[NodeId, Verdict]], view: RegisterView | None,
           need: int) -> Cert:  # fmt: skip
    """The signatures of the verdicts that hold `view`'s result (none: no result), the
    first `need` of them (a majority: every node that takes the record checks each)."""
    if view is None:
        return ()
    key = signed_key(view)
    if key is None:
        return ()
    return tuple((voter, v.sig) for voter, v in verdicts
                 if v.sig and v.view is not None and signed_key(v.view) == key)[:need]  # fmt: skip
