"""Invite tokens: owner-signed, colony-bound, expiring, single-use (DESIGN.md §3).

The token a person copies is ``cn1.`` + base64url of the signed envelope. Expiry uses
wall-clock seconds since the epoch (it crosses machines); the caller passes them in.
Single use is enforced by the owner's node, which records spent token ids durably.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from colonynode.core.codec import decode, encode, from_wire
from colonynode.core.envelope import Envelope, seal
from colonynode.core.errors import ColonyError, DecodeError, SignatureError
from colonynode.core.identity import Identity
from colonynode.core.ids import NodeId
from colonynode.core.roster import check_roles

__all__ = ["INVITE_DOMAIN", "Invite", "InviteError", "check_invite", "issue_invite", "parse_invite"]

INVITE_DOMAIN = "invite"
TOKEN_PREFIX = "cn1."
TOKEN_ID_BYTES = 16
TOKEN_CHARS_MAX = 2048


class InviteError(ColonyError):
    """An invite that cannot be used: malformed, forged, expired, spent, other colony."""


@dataclass(frozen=True, slots=True)
class Invite:
    colony: str
    owner: NodeId
    token_id: bytes
    roles: tuple[str, ...]
    expires_unix_s: int

    def __post_init__(self) -> None:
        if len(self.token_id) != TOKEN_ID_BYTES:
            raise ValueError(f"token id is {TOKEN_ID_BYTES} bytes")
        check_roles(self.roles)


def issue_invite(
    owner: Identity,
    colony: str,
    roles: tuple[str, ...],
    *,
    token_id: bytes,
    now_unix_s: float,
    ttl_s: float,
) -> str:
    """A token string for a new member with `roles`, valid for `ttl_s` seconds."""
    if ttl_s <= 0:
        raise InviteError("an invite's lifetime must be positive")
    invite = Invite(
        colony=colony,
        owner=owner.node_id,
        token_id=token_id,
        roles=check_roles(roles),
        expires_unix_s=int(now_unix_s + ttl_s),
    )
    envelope = seal(owner, INVITE_DOMAIN, invite)
    return TOKEN_PREFIX + base64.urlsafe_b64encode(encode(envelope)).decode().rstrip("=")


def parse_invite(token: str) -> tuple[Invite, Envelope]:
    """Decode and verify a token's signature (not its expiry or colony: see `check`)."""
    token = token.strip()
    if len(token) > TOKEN_CHARS_MAX or not token.startswith(TOKEN_PREFIX):
        raise InviteError("not a colonynode invite token (they start with 'cn1.')")
    body = token[len(TOKEN_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        envelope = from_wire(Envelope, decode(raw))
        invite = envelope.open(INVITE_DOMAIN, Invite)
    except (binascii.Error, ValueError, DecodeError):
        raise InviteError("the invite token is damaged (copy it again, whole)") from None
    except SignatureError:
        raise InviteError("the invite token's signature is forged") from None
    if envelope.author != invite.owner:
        raise InviteError("the invite is not signed by its colony's owner")
    return invite, envelope


def check_invite(invite: Invite, *, colony: str, owner: NodeId, now_unix_s: float) -> None:
    """Raise InviteError unless `invite` is for this colony and not expired."""
    if invite.owner != owner or invite.colony != colony:
        raise InviteError(f"the invite is for colony {invite.colony!r}, not {colony!r}")
    if now_unix_s >= invite.expires_unix_s:
        raise InviteError("the invite has expired: ask the owner for a new one")
