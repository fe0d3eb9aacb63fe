from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from pipeline.errors import UsageError
from pipeline.timeinfer import UTC, TimeResolver, local_zone, parse_when, parse_zone


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


@pytest.mark.parametrize("tz", ["Europe/Berln", "Mars/Olympus", "/no/such/zonefile"])
def test_a_bad_tz_variable_is_a_usage_error_not_utc(
    monkeypatch: pytest.MonkeyPatch, tz: str
) -> None:
    monkeypatch.setenv("TZ", tz)
    with pytest.raises(UsageError, match=r"unknown time zone .* \(from \$TZ\)") as exc:
        local_zone()
    assert "IANA name" in exc.value.hint
    with pytest.raises(UsageError, match="unknown time zone"):
        parse_zone(None)


@pytest.mark.parametrize("tz", ["UTC0", "CET-1CEST,M3.5.0,M10.5.0/3", "<+03>-3"])
def test_a_posix_rule_in_tz_that_zoneinfo_cannot_read_is_refused_with_a_hint(
    monkeypatch: pytest.MonkeyPatch, tz: str
) -> None:
    monkeypatch.setenv("TZ", tz)
    with pytest.raises(UsageError, match="POSIX TZ rule") as exc:
        local_zone()
    assert "Europe/Berlin" in exc.value.hint


@pytest.mark.parametrize(
    ("tz", "summer_offset"),
    [
        ("EST5EDT", -4),
        (":Europe/Berlin", 2),
        ("Europe/Berlin", 2),
        (":/usr/share/zoneinfo/Asia/Tokyo", 9),
    ],
)
def test_tz_names_zoneinfo_has_are_read(
    monkeypatch: pytest.MonkeyPatch, tz: str, summer_offset: int
) -> None:
    monkeypatch.setenv("TZ", tz)
    zone = local_zone()
    assert datetime(2026, 7, 1, 12, tzinfo=zone).utcoffset() == timedelta(hours=summer_offset)


@pytest.mark.parametrize("tz", [None, ""])
def test_an_unset_or_empty_tz_is_the_machines_zone(
    monkeypatch: pytest.MonkeyPatch, tz: str | None
) -> None:
    if tz is None:
        monkeypatch.delenv("TZ", raising=False)
    else:
        monkeypatch.setenv("TZ", tz)
    with open("/etc/localtime", "rb") as f:
        from zoneinfo import ZoneInfo

        machine = ZoneInfo.from_file(f)
    when = datetime(2026, 7, 1, 12)
    assert when.replace(tzinfo=local_zone()).utcoffset() == when.replace(tzinfo=machine).utcoffset()


NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("-2h", NOW - timedelta(hours=2)),
        ("-30min", NOW - timedelta(minutes=30)),
        ("+1d", NOW + timedelta(days=1)),
        ("-1h30min", NOW - timedelta(hours=1, minutes=30)),
        ("-1h 30min", NOW - timedelta(hours=1, minutes=30)),
        ("-2 days", NOW - timedelta(days=2)),
        ("-1.5h", NOW - timedelta(minutes=90)),
        ("-1w", NOW - timedelta(weeks=1)),
        ("-90s", NOW - timedelta(seconds=90)),
        ("2h ago", NOW - timedelta(hours=2)),
        ("today", datetime(2026, 11, 30, tzinfo=UTC)),
        ("yesterday", datetime(2026, 11, 29, tzinfo=UTC)),
        ("Tomorrow", datetime(2026, 12, 1, tzinfo=UTC)),
    ],
)
def test_relative_times_as_journalctl_takes_them(text: str, expected: datetime) -> None:
    assert parse_when(text, UTC, now=NOW) == expected


def test_days_start_at_midnight_in_the_zone_and_spans_count_from_now() -> None:
    berlin = parse_zone("Europe/Berlin")
    late = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # already Dec 1 in Berlin
    today = parse_when("today", berlin, now=late)
    assert today.isoformat() == "2026-12-01T00:00:00+01:00"
    assert parse_when("yesterday", berlin, now=late).isoformat() == "2026-11-30T00:00:00+01:00"
    assert parse_when("-2h", berlin, now=late) == late - timedelta(hours=2)
    # without a clock given, "now" is the real now
    before = datetime.now(UTC)
    assert before <= parse_when("now", UTC) <= datetime.now(UTC)


@pytest.mark.parametrize(
    "text", ["-", "+h", "-2x", "-2hours3", "", "2h", "ago", "-1e9y", "-99999999999y"]
)
def test_unreadable_relative_times_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match=r"(cannot read time|out of range)") as exc:
        parse_when(text, UTC, now=NOW)
    assert "-2h" in exc.value.hint and "yesterday" in exc.value.hint
