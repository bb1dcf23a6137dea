"""Opening hours: weekdays, overnight spans, closed dates, time zones and DST, the nightly restart."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from livevae.installation.schedule import (
    ScheduleError,
    describe,
    is_open,
    make_schedule,
    next_change,
    next_daily,
    parse_days,
    parse_span,
    parse_time_of_day,
)

BERLIN = ZoneInfo("Europe/Berlin")


def at(y: int, mo: int, d: int, h: int, mi: int = 0, tz: dt.tzinfo = BERLIN) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, tzinfo=tz)


def test_parse_days_and_spans() -> None:
    assert parse_days("mon-fri") == frozenset(range(5))
    assert parse_days("sat,sun") == frozenset({5, 6})
    assert parse_days("fri-mon") == frozenset({4, 5, 6, 0})  # wraps over the weekend
    assert parse_days("weekends") == frozenset({5, 6})
    assert parse_days("Tuesday") == frozenset({1})
    sp = parse_span("sat,sun 11:00-02:00")
    assert sp.overnight and sp.start == 11 * 60 and sp.end == 120
    assert parse_span("09:30-17:00").days == frozenset(range(7))
    assert parse_span("daily 00:00-24:00").end == 1440


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("mon-fry 10:00-18:00", "day 'fry' unknown"),
        ("mon-fri 10:00", "expected '[DAYS] HH:MM-HH:MM'"),
        ("mon 25:00-26:00", "out of range"),
        ("mon 10:61-11:00", "out of range"),
        ("mon 10:00-10:00", "same time"),
        ("mon 24:00-02:00", "start 24:00"),
    ],
)
def test_bad_spans_name_the_key(text: str, needle: str) -> None:
    with pytest.raises(ScheduleError) as e:
        make_schedule([text], "UTC", what="[installation.schedule]")
    assert "[installation.schedule].open[0]" in str(e.value) and needle in str(e.value)


def test_bad_zone_date_and_time() -> None:
    with pytest.raises(ScheduleError, match="timezone: unknown time zone 'Mars/Olympus'"):
        make_schedule([], "Mars/Olympus")
    with pytest.raises(ScheduleError, match=r"closed_dates\[1\]: '2026-13-01'"):
        make_schedule([], "UTC", ["2026-12-25", "2026-13-01"])
    with pytest.raises(ScheduleError, match="expected HH:MM"):
        parse_time_of_day("4am")
    with pytest.raises(ScheduleError, match="naive datetime"):
        is_open(make_schedule(["10:00-11:00"], "UTC"), dt.datetime(2026, 1, 1, 10))


def test_weekdays_and_next_change() -> None:
    s = make_schedule(["mon-fri 10:00-18:00"], "Europe/Berlin")
    tue = at(2026, 11, 24, 12)  # a Tuesday
    assert is_open(s, tue)
    assert not is_open(s, at(2026, 11, 24, 9, 59))
    assert is_open(s, at(2026, 11, 24, 10, 0))  # opening instant is open
    assert not is_open(s, at(2026, 11, 24, 18, 0))  # closing instant is closed
    assert next_change(s, tue) == at(2026, 11, 24, 18)
    assert next_change(s, at(2026, 11, 24, 19)) == at(2026, 11, 25, 10)
    # Friday evening -> next opening is Monday
    assert next_change(s, at(2026, 11, 27, 18, 30)) == at(2026, 11, 30, 10)
    assert not is_open(s, at(2026, 11, 28, 12))  # Saturday
    assert describe(s, tue).startswith("open until 2026-11-24 18:00")


def test_overnight_span_runs_into_the_next_day() -> None:
    s = make_schedule(["fri 20:00-02:00"], "Europe/Berlin")
    assert is_open(s, at(2026, 11, 27, 23))  # Friday night
    assert is_open(s, at(2026, 11, 28, 1, 59))  # Saturday early, from Friday's span
    assert not is_open(s, at(2026, 11, 28, 2))
    assert not is_open(s, at(2026, 11, 28, 21))  # Saturday night: not listed
    assert not is_open(s, at(2026, 11, 27, 1))  # Friday early: Thursday had no span
    assert next_change(s, at(2026, 11, 27, 21)) == at(2026, 11, 28, 2)


def test_adjacent_spans_merge_and_always_open() -> None:
    s = make_schedule(["10:00-14:00", "14:00-18:00"], "UTC")
    assert next_change(s, at(2026, 11, 24, 11, tz=dt.timezone.utc)) == at(2026, 11, 24, 18, tz=dt.timezone.utc)
    allday = make_schedule(["daily 00:00-24:00"], "UTC")
    assert is_open(allday, at(2026, 11, 24, 3, tz=dt.timezone.utc))
    assert next_change(allday, at(2026, 11, 24, 3, tz=dt.timezone.utc)) is None
    empty = make_schedule([], "UTC")
    assert is_open(empty, at(2026, 11, 24, 3)) and next_change(empty, at(2026, 11, 24, 3)) is None
    assert describe(empty, at(2026, 11, 24, 3)) == "always open"


def test_closed_dates() -> None:
    s = make_schedule(["daily 10:00-18:00", "thu 20:00-01:00"], "Europe/Berlin", ["2026-12-24", "2026-12-25"])
    assert not is_open(s, at(2026, 12, 25, 12))  # Christmas, a Friday
    assert is_open(s, at(2026, 12, 26, 12))
    # Thursday 24th is closed all day: its evening span does not open either
    assert not is_open(s, at(2026, 12, 24, 21))
    assert next_change(s, at(2026, 12, 24, 9)) == at(2026, 12, 26, 10)


def test_time_zones_are_respected() -> None:
    s = make_schedule(["mon-fri 10:00-18:00"], "America/New_York")
    # 16:00 UTC on a Tuesday in November is 11:00 in New York: open; 23:30 UTC is 18:30: closed
    assert is_open(s, dt.datetime(2026, 11, 24, 16, tzinfo=dt.timezone.utc))
    assert not is_open(s, dt.datetime(2026, 11, 24, 23, 30, tzinfo=dt.timezone.utc))
    # the same instant seen from Berlin gives the same answer
    assert is_open(s, dt.datetime(2026, 11, 24, 17, tzinfo=BERLIN))


def test_dst_changes_keep_local_opening_hours() -> None:
    s = make_schedule(["daily 10:00-18:00"], "Europe/Berlin")
    # spring forward: 29 March 2026. 10:00 local is 08:00 UTC after the change (09:00 UTC the day before)
    assert next_change(s, at(2026, 3, 28, 19)) == dt.datetime(2026, 3, 29, 8, tzinfo=dt.timezone.utc)
    assert next_change(s, at(2026, 3, 27, 19)) == dt.datetime(2026, 3, 28, 9, tzinfo=dt.timezone.utc)
    # a nightly restart at 02:30, which does not exist on 29 March, still happens once that night
    nxt = next_daily(dt.time(2, 30), at(2026, 3, 29, 0), BERLIN)
    assert (
        dt.datetime(2026, 3, 29, 0, tzinfo=dt.timezone.utc)
        <= nxt
        <= dt.datetime(2026, 3, 29, 2, tzinfo=dt.timezone.utc)
    )


def test_next_daily() -> None:
    t = parse_time_of_day("04:00")
    assert next_daily(t, at(2026, 11, 24, 3, 59), BERLIN) == at(2026, 11, 24, 4)
    assert next_daily(t, at(2026, 11, 24, 4), BERLIN) == at(2026, 11, 25, 4)  # strictly after
    assert next_daily(t, at(2026, 11, 24, 12), BERLIN) == at(2026, 11, 25, 4)
