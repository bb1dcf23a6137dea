"""Opening hours: pure functions of wall time (open or closed, when that next changes, the nightly restart)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from livevae.errors import LivevaeError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_GROUPS = {"daily": range(7), "everyday": range(7), "weekdays": range(5), "weekends": range(5, 7)}
_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_NAMES = {**{d: i for i, d in enumerate(DAYS)}, **{d: i for i, d in enumerate(_FULL)}}
_SPAN_RE = re.compile(r"^\s*(?:(?P<days>[a-z,\- ]+?)\s+)?(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$")
_UTC = dt.timezone.utc


class ScheduleError(LivevaeError):
    """An opening-hours span, a date, a time or a time zone is malformed."""


@dataclass(frozen=True)
class Span:
    """Open on `days` (0 = Monday) from `start` to `end` local time; an end at or before the start runs past
    midnight into the next day ("fri 20:00-02:00" closes on Saturday at 02:00). Minutes since midnight; end may
    be 1440 (24:00)."""

    days: frozenset[int]
    start: int
    end: int
    text: str = ""

    @property
    def overnight(self) -> bool:
        return self.end <= self.start


@dataclass(frozen=True)
class Schedule:
    """Opening hours in one time zone. No spans means always open. `closed_dates` close a whole day: spans
    that start on it do not open (an overnight span from the evening before still runs to its end)."""

    spans: tuple[Span, ...] = ()
    tz: dt.tzinfo = _UTC
    closed_dates: frozenset[dt.date] = field(default_factory=frozenset)

    @property
    def always_open(self) -> bool:
        return not self.spans


def _parse_clock(text: str, what: str) -> int:
    h, _, m = text.partition(":")
    hours, minutes = int(h), int(m)
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ScheduleError(f"{what}: time {text!r} out of range; expected HH:MM from 00:00 to 24:00")
    return hours * 60 + minutes


def parse_days(text: str, what: str = "days") -> frozenset[int]:
    """'mon-fri', 'sat,sun', 'fri-mon' (wraps), 'daily', 'weekdays', 'weekends' -> weekday numbers (0 = Monday)."""
    out: set[int] = set()
    for part in (p.strip() for p in text.lower().replace(" ", ",").split(",")):
        if not part:
            continue
        if part in _DAY_GROUPS:
            out.update(_DAY_GROUPS[part])
            continue
        a, sep, b = part.partition("-")
        names = [a, b] if sep else [a]
        idx = []
        for n in names:
            if n not in _DAY_NAMES:
                raise ScheduleError(
                    f"{what}: day {n!r} unknown; expected mon..sun (or daily, weekdays, weekends), e.g. 'mon-fri'"
                )
            idx.append(_DAY_NAMES[n])
        if len(idx) == 1:
            out.add(idx[0])
        else:
            i = idx[0]
            while True:  # walk forward so 'fri-mon' means fri, sat, sun, mon
                out.add(i)
                if i == idx[1]:
                    break
                i = (i + 1) % 7
    if not out:
        raise ScheduleError(f"{what}: no days in {text!r}; expected e.g. 'mon-fri' or 'daily'")
    return frozenset(out)


def parse_span(text: str, what: str = "span") -> Span:
    """'mon-fri 10:00-18:00', 'sat,sun 11:00-02:00' (overnight), '09:30-17:00' (every day), 'daily 00:00-24:00'.

    Raises ScheduleError naming `what` (e.g. the show key) with what was found and what was expected."""
    m = _SPAN_RE.match(text.lower())
    if not m:
        raise ScheduleError(
            f"{what}: {text!r} is not an opening span; expected '[DAYS] HH:MM-HH:MM', e.g. 'mon-fri 10:00-18:00'"
        )
    days = parse_days(m.group("days"), what) if m.group("days") else frozenset(range(7))
    start, end = _parse_clock(m.group("start"), what), _parse_clock(m.group("end"), what)
    if start == 1440:
        raise ScheduleError(f"{what}: start 24:00 in {text!r}; expected a start from 00:00 to 23:59")
    if start == end:
        raise ScheduleError(f"{what}: {text!r} opens and closes at the same time; use 00:00-24:00 for all day")
    return Span(days, start, end, text.strip())


def parse_time_of_day(text: str, what: str = "time") -> dt.time:
    """'04:00' -> time(4, 0). Raises ScheduleError naming `what`."""
    if not re.fullmatch(r"\d{1,2}:\d{2}", text.strip()):
        raise ScheduleError(f"{what}: {text!r}; expected HH:MM, e.g. '04:00'")
    minutes = _parse_clock(text.strip(), what)
    if minutes >= 1440:
        raise ScheduleError(f"{what}: {text!r}; expected a time from 00:00 to 23:59")
    return dt.time(minutes // 60, minutes % 60)


def parse_tz(name: str | None, what: str = "timezone") -> dt.tzinfo:
    """An IANA zone ('Europe/Berlin'), 'UTC', or None/'' / 'local' for the machine's zone."""
    if not name or name == "local":
        tz = dt.datetime.now().astimezone().tzinfo
        return tz if tz is not None else _UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ScheduleError(f"{what}: unknown time zone {name!r}; expected an IANA name like 'Europe/Berlin'") from e


def make_schedule(
    spans: Sequence[str], tz: str | None = None, closed_dates: Iterable[str] = (), what: str = "schedule"
) -> Schedule:
    """Build a Schedule from show-file strings; errors name `what`[i]."""
    parsed = tuple(parse_span(s, f"{what}.open[{i}]") for i, s in enumerate(spans))
    dates: set[dt.date] = set()
    for i, d in enumerate(closed_dates):
        try:
            dates.add(dt.date.fromisoformat(d))
        except ValueError:
            raise ScheduleError(f"{what}.closed_dates[{i}]: {d!r}; expected a date YYYY-MM-DD") from None
    return Schedule(parsed, parse_tz(tz, f"{what}.timezone"), frozenset(dates))


def _local_at(day: dt.date, minutes: int, tz: dt.tzinfo) -> dt.datetime:
    """The UTC instant of local wall time `minutes` after midnight of `day` (1440 = next midnight)."""
    d = day + dt.timedelta(days=minutes // 1440)
    m = minutes % 1440
    return dt.datetime.combine(d, dt.time(m // 60, m % 60), tzinfo=tz).astimezone(_UTC)


def intervals(s: Schedule, start: dt.date, end: dt.date) -> list[tuple[dt.datetime, dt.datetime]]:
    """Open intervals in UTC, merged, for spans that start on local dates start..end inclusive."""
    raw: list[tuple[dt.datetime, dt.datetime]] = []
    day = start
    while day <= end:
        if day not in s.closed_dates:
            for sp in s.spans:
                if day.weekday() in sp.days:
                    a = _local_at(day, sp.start, s.tz)
                    b = _local_at(day, sp.end + (1440 if sp.overnight else 0), s.tz)
                    if b > a:  # a span wholly inside a DST gap has no length
                        raw.append((a, b))
        day += dt.timedelta(days=1)
    raw.sort()
    merged: list[tuple[dt.datetime, dt.datetime]] = []
    for a, b in raw:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _as_utc(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is None:
        raise ScheduleError(f"time {when.isoformat()}: naive datetime; expected a time-zone-aware one")
    return when.astimezone(_UTC)


def is_open(s: Schedule, when: dt.datetime) -> bool:
    """True if the show is open at the aware datetime `when`."""
    if s.always_open:
        return True
    w = _as_utc(when)
    local = w.astimezone(s.tz).date()
    return any(a <= w < b for a, b in intervals(s, local - dt.timedelta(days=1), local))


def next_change(s: Schedule, when: dt.datetime) -> dt.datetime | None:
    """The first instant after `when` at which open/closed flips (UTC), or None if it never does within 8 days
    (always open, or every span closed)."""
    if s.always_open:
        return None
    w = _as_utc(when)
    local = w.astimezone(s.tz).date()
    for a, b in intervals(s, local - dt.timedelta(days=1), local + dt.timedelta(days=8)):
        if a <= w < b:
            # inside: it closes at b, unless b is the window's edge of a span that runs on (all-week opening)
            return b if b < _local_at(local + dt.timedelta(days=8), 0, s.tz) else None
        if a > w:
            return a
    return None


def next_daily(at: dt.time, when: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    """The next instant strictly after `when` at which local wall time in `tz` is `at` (a nightly restart)."""
    w = _as_utc(when)
    day = w.astimezone(tz).date()
    for k in range(3):
        cand = _local_at(day + dt.timedelta(days=k), at.hour * 60 + at.minute, tz)
        if cand > w:
            return cand
    raise AssertionError("unreachable: a daily time recurs within 3 days")


def describe(s: Schedule, when: dt.datetime) -> str:
    """'open until 2026-11-24 18:00 CET' / 'closed until ...' / 'always open', for logs and the heartbeat."""
    state = "open" if is_open(s, when) else "closed"
    nxt = next_change(s, when)
    if nxt is None:
        return "always open" if state == "open" else "closed"
    return f"{state} until {nxt.astimezone(s.tz).strftime('%Y-%m-%d %H:%M %Z')}"
