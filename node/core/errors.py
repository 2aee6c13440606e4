"""The errors NodeCore answers requests with; the HTTP API maps them to status codes
(PermissionDenied 403, NotFound 404, every other ColonyError 400)."""

from __future__ import annotations

from colonynode.core.errors import ColonyError

__all__ = [
    "JoinFailed",
    "NotAcknowledged",
    "NotFound",
    "NotHolder",
    "NotOwner",
    "PermissionDenied",
    "UnknownExecutor",
]


class PermissionDenied(ColonyError):
    """The caller may not do that (not the owner, not a member, lacks the role)."""


class NotFound(ColonyError):
    """No such process (or other named thing) is known here."""


class NotHolder(ColonyError):
    """This node (or this executor) does not hold the process's lease."""


class UnknownExecutor(ColonyError):
    """No executor of that id is attached to this node (detached, or a restart)."""


class NotOwner(PermissionDenied):
    """Only the colony owner's node can change the roster."""


class JoinFailed(ColonyError):
    pass


class NotAcknowledged(ColonyError):
    """A majority of the voters did not take a submission: `reason` is theirs (a
    consensus `Reason` name), or None when they did not answer in time."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
