"""When a cron fires (DESIGN.md §12, COLONYOS.md "Crons and generators").

A schedule is either a cron expression or an interval, as in ColonyOS:

- an expression has six fields, seconds first (``0/5 * * * * *``, ``59 3 15 * * MON``),
  or is a descriptor (``@yearly @annually @monthly @weekly @daily @midnight @hourly``),
  optionally after ``TZ=Zone`` or ``CRON_TZ=Zone`` (UTC otherwise); ``@every <dur>``
  (Go's duration syntax: ``1h30m``, ``5s``, ``250ms``) is an interval. Expressions are
  read by croniter (pallets-eco, maintained; `second_at_beginning`), never by hand.
- an interval of S seconds fires every S seconds from the cron's creation; with `random`,
  once at a random moment within each interval, the same moment on every node (a hash of
  the cron id and the interval's number picks it).

Ticks are identified by their scheduled time in Unix ns (`tick_ns`); a tick's firing
happens once in the colony, whoever fires it (node/core/crons.py). Everything here is a
pure function of (schedule, creation time, now): no clock is read.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from colonynode.core.errors import ValidationError

__all__ = ["INTERVAL_MAX_S", "Schedule", "parse_duration_s", "parse_schedule"]

INTERVAL_MIN_S = 1  # ColonyOS's checker runs every second; finer ticks are not kept
INTERVAL_MAX_S = 10 * 366 * 86_400
EXPRESSION_MAX = 256
SEARCH_BACK_MAX = 1024  # expression ticks walked back to the latest due one
DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_S_NS = 10**9
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_duration_s(text: str, where: str = "interval") -> float:
    """Go's `time.ParseDuration` subset that `@every` takes: ``1h30m``, ``5s``."""
    text = text.strip()
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise ValidationError(f"{where}: {text!r} is not a duration (like 5s, 1m30s, 2h)")
    return total


@dataclass(frozen=True, slots=True)
class Schedule:
    """`expression` (croniter's, seconds first) and `tz`, or `interval_s` (> 0)."""

    expression: str = ""
    tz: str = ""
    interval_s: int = 0
    random: bool = False
    key: bytes = b""  # what the random moments hash (the cron id)

    def latest_due_ns(self, created_ns: int, now_ns: int) -> int | None:
        """The latest tick scheduled after `created_ns` and at or before `now_ns`."""
        if self.interval_s:
            step = self.interval_s * _S_NS
            k = (now_ns - created_ns) // step + 1  # the interval now runs in
            for slot in (k, k - 1):
                if slot >= 1 and created_ns < (at := self.fire_ns(created_ns, slot)) <= now_ns:
                    return at
            return None
        # Ticks fall on whole seconds: those at or before now are those before the next
        # whole second (croniter's get_prev is strictly before its start).
        at = _ns(self._iter((now_ns // _S_NS + 1) * _S_NS).get_prev(datetime))
        return at if at > created_ns else None

    def next_ns(self, created_ns: int, now_ns: int) -> int:
        """The first tick scheduled after both `created_ns` and `now_ns`."""
        after = max(created_ns, now_ns)
        if self.interval_s:
            step = self.interval_s * _S_NS
            k = max(1, (after - created_ns) // step)
            while (at := self.fire_ns(created_ns, k)) <= after:
                k += 1
            return at
        return _ns(self._iter(after).get_next(datetime))

    def fire_ns(self, created_ns: int, slot: int) -> int:
        """When interval `slot` (1, 2, ...) fires: its end, or a hashed moment in it."""
        step = self.interval_s * _S_NS
        if not self.random:
            return created_ns + slot * step
        digest = hashlib.sha256(self.key + slot.to_bytes(8, "big")).digest()
        offset = int.from_bytes(digest[:8], "big") % step
        return created_ns + (slot - 1) * step + max(1, offset)

    def _iter(self, at_ns: int) -> Any:
        from croniter import croniter  # only where expressions are read (~30 ms to import)

        zone: Any = UTC
        if self.tz:
            from zoneinfo import ZoneInfo

            zone = ZoneInfo(self.tz)
        start = _EPOCH.astimezone(zone) + timedelta(microseconds=at_ns // 1000)  # no float
        return croniter(self.expression, start, second_at_beginning=True)


def _ns(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def parse_schedule(
    expression: str = "", interval_s: float = 0, random: bool = False, key: bytes = b""
) -> Schedule:
    """Validate as ColonyOS does; a ValidationError names the field."""
    expression = expression.strip()
    if expression and interval_s not in (0, -1):
        raise ValidationError("cronexpression: give an expression or an interval, not both")
    if not expression:
        if interval_s == 0 or interval_s == -1:
            raise ValidationError("interval: 0 is no schedule; give one > 0 or an expression")
        return _interval(interval_s, random, key)
    if random:
        raise ValidationError("random: only with an interval (it picks a moment within each)")
    if len(expression) > EXPRESSION_MAX:
        raise ValidationError(f"cronexpression: longer than {EXPRESSION_MAX} characters")
    tz = ""
    head, _, rest = expression.partition(" ")
    if head.startswith(("TZ=", "CRON_TZ=")):
        tz, expression = head.split("=", 1)[1], rest.strip()
        _check_zone(tz)
    if expression.startswith("@every"):
        return _interval(parse_duration_s(expression[6:], "cronexpression"), False, key)
    if expression.startswith("@") and expression not in DESCRIPTORS:
        raise ValidationError(
            f"cronexpression: {expression!r} is not one of {' '.join(DESCRIPTORS)} @every"
        )
    if not expression.startswith("@") and len(expression.split()) != 6:
        raise ValidationError(
            f"cronexpression: {expression!r} has {len(expression.split())} fields; "
            "six are needed, seconds first (like '0/5 * * * * *')"
        )
    from croniter import croniter

    if not croniter.is_valid(expression, second_at_beginning=True):
        raise ValidationError(f"cronexpression: {expression!r} is not a valid cron expression")
    return Schedule(expression=expression, tz=tz, key=key)


def _interval(interval_s: float, random: bool, key: bytes) -> Schedule:
    if interval_s < INTERVAL_MIN_S or interval_s > INTERVAL_MAX_S:
        raise ValidationError(
            f"interval: {interval_s:g} s is out of range ({INTERVAL_MIN_S} to {INTERVAL_MAX_S} s)"
        )
    if interval_s != int(interval_s):
        raise ValidationError(f"interval: {interval_s:g} s is not a whole number of seconds")
    return Schedule(interval_s=int(interval_s), random=random, key=key)


def _check_zone(tz: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"cronexpression: unknown time zone {tz!r}") from None
