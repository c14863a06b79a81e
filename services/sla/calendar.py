"""Business-hours calendars and business-time arithmetic (pure: no I/O)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from shared.types import TimeZoneName

# the contract's spelling and order (a Riyadh week starts on Sunday)
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
HORIZON_DAYS = 3 * 366  # how far ahead a due time may be searched for before giving up
_HHMM = re.compile(r"([01]\d|2[0-3]):[0-5]\d|24:00")
_DAY_MINUTES = 24 * 60


class CalendarError(ValueError):
    """A business-time question the calendar cannot answer (no business time within the horizon)."""


def _minutes(hhmm: str) -> int:
    if not _HHMM.fullmatch(hhmm):
        raise ValueError(f"{hhmm!r} is not a time of day: use HH:MM from 00:00 to 23:59, or 24:00 as an end")
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _checked_ranges(day: str, ranges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """One day's ranges sorted by start, each ending after it starts and before the next starts."""
    try:
        spans = sorted((_minutes(start), _minutes(end), start, end) for start, end in ranges)
    except ValueError as error:
        raise ValueError(f"{day}: {error}") from None
    for (start, end, start_text, end_text), following in zip(spans, [*spans[1:], None]):
        if start >= end:
            raise ValueError(f"{day}: the range {start_text}-{end_text} must start before it ends")
        if following and following[0] < end:
            raise ValueError(f"{day}: the range {start_text}-{end_text} overlaps {following[2]}-{following[3]}")
    return [(start_text, end_text) for _, _, start_text, end_text in spans]


class Calendar(BaseModel):
    """`PUT /v1/calendars/{calendar_id}` (CONTRACT.md): weekly opening hours in one time zone,
    several ranges a day allowed, days without hours closed, holidays closed all day (local dates)."""

    # a misspelt field ("holiday") would otherwise be dropped silently and the calendar be wrong
    model_config = ConfigDict(extra="forbid")

    timezone: TimeZoneName
    hours: dict[str, list[tuple[str, str]]] = Field(
        examples=[{"sun": [["09:00", "13:00"], ["14:00", "17:00"]], "mon": [["09:00", "17:00"]]}]
    )
    holidays: list[date] = Field(default_factory=list, max_length=5000, examples=[["2026-12-25"]])

    # derived once, for the arithmetic: the zone, ranges in minutes by Python weekday, holiday set
    _zone: ZoneInfo = PrivateAttr()
    _week: tuple[tuple[tuple[int, int], ...], ...] = PrivateAttr()
    _closed: frozenset[date] = PrivateAttr()

    @field_validator("hours")
    @classmethod
    def _valid_hours(cls, hours: dict[str, list[tuple[str, str]]]) -> dict[str, list[tuple[str, str]]]:
        unknown = [day for day in hours if day not in DAY_NAMES]
        if unknown:
            raise ValueError(f"unknown day {unknown[0]!r}: days are {', '.join(DAY_NAMES)}")
        # stored in week order with each day's ranges sorted; closed days left out
        return {day: _checked_ranges(day, hours[day]) for day in DAY_NAMES if hours.get(day)}

    @field_validator("holidays")
    @classmethod
    def _sorted_holidays(cls, holidays: list[date]) -> list[date]:
        return sorted(set(holidays))

    @model_validator(mode="after")
    def _some_open_hours(self) -> Calendar:
        if not self.hours:
            raise ValueError('the calendar has no open hours: give at least one day a range such as ["09:00", "17:00"]')
        return self

    def model_post_init(self, _context: object) -> None:
        self._zone = ZoneInfo(self.timezone)
        by_name = {day: tuple((_minutes(s), _minutes(e)) for s, e in ranges) for day, ranges in self.hours.items()}
        # date.weekday(): Monday is 0 ... Sunday is 6
        self._week = tuple(by_name.get(name, ()) for name in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
        self._closed = frozenset(self.holidays)

    @property
    def zone(self) -> ZoneInfo:
        return self._zone

    def ranges_on(self, day: date) -> tuple[tuple[int, int], ...]:
        """The open ranges of a local date, in minutes after local midnight (none on a holiday)."""
        return () if day in self._closed else self._week[day.weekday()]


def local_moment(zone: ZoneInfo, day: date, minute: int) -> datetime:
    """The UTC moment the wall clocks of `zone` show `minute` minutes past midnight of `day`.

    A time that occurs twice (clocks turned back) is its first occurrence; a time that never
    occurs (clocks jumped forward over it) is the moment of the jump, the first moment after it
    — so an opening at 02:30 on a spring-forward night opens at 03:00, and a range wholly inside
    the skipped hour holds no time at all."""
    day, minute = day + timedelta(days=minute // _DAY_MINUTES), minute % _DAY_MINUTES  # 24:00 = next 00:00
    wall = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=zone)
    moment = wall.astimezone(UTC)
    if moment.astimezone(zone).replace(tzinfo=None) == wall.replace(tzinfo=None):
        return moment
    # skipped: the offset before the jump reads the wall time as after the jump, the offset after
    # it as before; bisect between the two for the jump (whole seconds, so a dozen steps)
    before, after = int(wall.replace(fold=1).astimezone(UTC).timestamp()), int(moment.timestamp())
    offset_after = moment.astimezone(zone).utcoffset()
    while after - before > 1:
        middle = (before + after) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == offset_after:
            after = middle
        else:
            before = middle
    return datetime.fromtimestamp(after, UTC)


def open_periods(calendar: Calendar, first_day: date, last_day: date) -> Iterator[tuple[datetime, datetime]]:
    """Every open period (UTC start, UTC end) of the local days `first_day`..`last_day`, in order."""
    day = first_day
    while day <= last_day:
        for start, end in calendar.ranges_on(day):
            opens, closes = local_moment(calendar.zone, day, start), local_moment(calendar.zone, day, end)
            if opens < closes:  # a range inside a skipped hour is empty
                yield opens, closes
        day += timedelta(days=1)


def _aware_utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must carry a time zone (business hours are local to the calendar's zone)")
    return moment.astimezone(UTC)


def add_business_seconds(calendar: Calendar, start: datetime, seconds: int) -> datetime:
    """The moment (UTC) `seconds` of business time after `start`; outside hours the count begins
    at the next opening, so zero seconds from a closed moment is that opening. A count that ends
    exactly at a closing time is due at the closing time, not at the next opening."""
    if seconds < 0:
        raise ValueError("seconds must be zero or more")
    if seconds > HORIZON_DAYS * 86_400:  # more than fits in the horizon even if always open
        raise CalendarError(f"{seconds} business seconds do not fit within {HORIZON_DAYS} days")
    cursor = _aware_utc(start, "start")
    first_day, left = cursor.astimezone(calendar.zone).date(), timedelta(seconds=seconds)
    for opens, closes in open_periods(calendar, first_day, first_day + timedelta(days=HORIZON_DAYS)):
        if closes <= cursor:
            continue
        cursor = max(cursor, opens)
        if left <= closes - cursor:
            return cursor + left
        left -= closes - cursor
        cursor = closes
    raise CalendarError(
        f"the calendar has fewer than {seconds} business seconds in the {HORIZON_DAYS} days "
        f"after {start.isoformat()} (check its hours and holidays)"
    )


def business_seconds_between(calendar: Calendar, a: datetime, b: datetime) -> float:
    """Business seconds from `a` to `b`; negative when `b` is before `a` (time overdue)."""
    a, b = _aware_utc(a, "a"), _aware_utc(b, "b")
    if b < a:
        return -business_seconds_between(calendar, b, a)
    first_day, last_day = a.astimezone(calendar.zone).date(), b.astimezone(calendar.zone).date()
    if (last_day - first_day).days > HORIZON_DAYS:
        raise CalendarError(f"business time is only measured over {HORIZON_DAYS} days at most")
    total = timedelta()
    for opens, closes in open_periods(calendar, first_day, last_day):
        total += max(timedelta(), min(closes, b) - max(opens, a))
    return total.total_seconds()
