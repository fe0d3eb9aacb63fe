from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from pipeline.errors import UsageError
from pipeline.timeinfer import UTC, TimeResolver, parse_when, parse_zone


def yearless(month: int, day: int, hour: int = 12) -> datetime:
    return datetime(2000, month, day, hour)


def test_first_year_comes_from_the_reference_and_never_lies_in_the_future() -> None:
    r = TimeResolver(UTC, datetime(2026, 11, 30, 9, tzinfo=UTC))
    assert r.resolve(yearless(11, 29), True).year == 2026
    r = TimeResolver(UTC, datetime(2026, 11, 30, 9, tzinfo=UTC))
    assert r.resolve(yearless(12, 15), True).year == 2025


def test_new_year_rollover_and_a_late_line() -> None:
    r = TimeResolver(UTC, datetime(2026, 1, 10, tzinfo=UTC))
    got = [
        r.resolve(yearless(m, d), True).date().isoformat()
        for m, d in [(12, 30), (12, 31), (1, 1), (12, 31), (1, 2), (1, 9)]
    ]
    assert got == [
        "2025-12-30",
        "2025-12-31",
        "2026-01-01",
        "2025-12-31",
        "2026-01-02",
        "2026-01-09",
    ]


def test_fixed_year_overrides_and_still_rolls_over() -> None:
    r = TimeResolver(UTC, datetime(2026, 1, 1, tzinfo=UTC), year=2019)
    assert r.resolve(yearless(12, 31), True).year == 2019
    assert r.resolve(yearless(1, 1), True).year == 2020


def test_zone_applies_to_naive_times_and_aware_times_pass() -> None:
    berlin = parse_zone("Europe/Berlin")
    r = TimeResolver(berlin, datetime(2026, 11, 30, tzinfo=UTC))
    got = r.resolve(datetime(2026, 7, 1, 12), False)
    assert got.utcoffset() == timedelta(hours=2)
    aware = datetime(2026, 7, 1, 12, tzinfo=UTC)
    assert r.resolve(aware, False) == aware


def test_feb_29_in_a_non_leap_year_does_not_crash() -> None:
    r = TimeResolver(UTC, datetime(2026, 3, 10, tzinfo=UTC))
    got = r.resolve(yearless(2, 29), True)
    assert (got.month, got.day) == (2, 29)


def test_bad_zone_and_time_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="unknown time zone"):
        parse_zone("Mars/Olympus")
    with pytest.raises(UsageError, match="cannot read time"):
        parse_when("yesterday-ish", UTC)
    assert parse_when("2026-11-30", UTC) == datetime(2026, 11, 30, tzinfo=UTC)
    assert parse_when("2026-11-30T08:00:00Z", UTC).utcoffset() == timedelta(0)
