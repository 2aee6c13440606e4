"""Cron schedules (core/cron.py): ColonyOS's expressions and intervals, as tick times."""

from __future__ import annotations

import pytest

from colonynode.core.cron import parse_duration_s, parse_schedule
from colonynode.core.errors import ValidationError

S = 10**9
T = 1_800_000_000 * S  # a multiple of 5 s and of 60 s


def test_seconds_come_first_and_a_tick_at_now_is_due() -> None:
    every5 = parse_schedule("0/5 * * * * *")
    assert every5.latest_due_ns(T - 100 * S, T) == T
    assert every5.latest_due_ns(T - 100 * S, T + 5 * S - 1) == T
    assert every5.next_ns(0, T) == T + 5 * S
    assert every5.next_ns(0, T + 5 * S - 1) == T + 5 * S
    assert every5.latest_due_ns(T, T + 4 * S) is None, "no tick before the cron existed"


def test_descriptors_time_zones_and_every() -> None:
    hourly = parse_schedule("@hourly")
    assert hourly.next_ns(0, T + 1) == T + 3600 * S - (T % (3600 * S))
    assert parse_schedule("@every 1m30s").interval_s == 90
    stockholm = parse_schedule("CRON_TZ=Europe/Stockholm 0 0 3 * * *")
    utc = parse_schedule("0 0 3 * * *")
    assert utc.next_ns(0, T) - stockholm.next_ns(0, T) in (3600 * S, 7200 * S)
    assert parse_duration_s("250ms") == 0.25


def test_an_interval_fires_from_creation_and_random_once_within_each_interval() -> None:
    every10 = parse_schedule(interval_s=10)
    assert every10.latest_due_ns(T, T + 9 * S) is None
    assert every10.latest_due_ns(T, T + 25 * S) == T + 20 * S
    assert every10.next_ns(T, T + 25 * S) == T + 30 * S
    rand = parse_schedule(interval_s=10, random=True, key=b"cron")
    moments = [rand.fire_ns(T, k) for k in range(1, 50)]
    for k, at in enumerate(moments, start=1):
        assert T + (k - 1) * 10 * S < at < T + k * 10 * S
    assert len({(at - T) % (10 * S) for at in moments}) > 40, "the moment moves"
    assert parse_schedule(interval_s=10, random=True, key=b"cron").fire_ns(T, 7) == moments[6]
    due = rand.latest_due_ns(T, moments[3] + 1)
    assert due == moments[3] and rand.next_ns(T, moments[3]) == moments[4]


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"expression": "* * * * *"}, "six are needed"),
        ({"interval_s": 0}, "interval: 0"),
        ({"interval_s": -1}, "interval: 0"),
        ({"interval_s": 1.5}, "whole number"),
        ({"expression": "@often"}, "cronexpression"),
        ({"expression": "0 * * * * *", "random": True}, "random: only with an interval"),
        ({"expression": "0 * * * * *", "interval_s": 5}, "not both"),
        ({"expression": "x * * * * *"}, "not a valid cron expression"),
        ({"expression": "TZ=Mars/Base 0 * * * * *"}, "unknown time zone"),
        ({"expression": "@every soon"}, "not a duration"),
    ],
)
def test_bad_schedules_name_the_field(kw: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        parse_schedule(**kw)  # type: ignore[arg-type]
