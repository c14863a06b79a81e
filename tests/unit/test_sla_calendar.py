"""Business-hours calendars: validation and business-time arithmetic, without Kafka or MongoDB."""
import logging
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.sla.calendar import (Calendar, CalendarError, add_business_seconds, business_seconds_between,
                                   local_moment)
from services.sla.domain import Policy, first_response_clock
from services.sla.service import SlaService, Unit
from shared.events import Channel, TicketSnapshot

RIYADH, BERLIN, NEW_YORK = ZoneInfo("Asia/Riyadh"), ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
HOUR = 3600
NINE_TO_FIVE = [["09:00", "17:00"]]


def calendar(timezone: str, days: str, ranges=None, holidays=()) -> Calendar:
    return Calendar(timezone=timezone, hours={day: ranges or NINE_TO_FIVE for day in days.split()},
                    holidays=list(holidays))


def at(zone: ZoneInfo, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=zone)


RIYADH_WEEK = calendar("Asia/Riyadh", "sun mon tue wed thu")
BERLIN_WEEK = calendar("Europe/Berlin", "mon tue wed thu fri")
NEW_YORK_WEEK = calendar("America/New_York", "mon tue wed thu fri")
BERLIN_ALWAYS_OPEN = calendar("Europe/Berlin", "sun mon tue wed thu fri sat", [["00:00", "24:00"]])


# ------------------------------------------------------------------ weekends and hours of the day

def test_a_request_on_friday_evening_is_due_on_sunday_morning_in_riyadh():
    due = add_business_seconds(RIYADH_WEEK, at(RIYADH, 2026, 3, 27, 18, 0), HOUR)
    assert due == at(RIYADH, 2026, 3, 29, 10, 0)


def test_time_left_on_thursday_afternoon_carries_over_the_weekend_in_riyadh():
    due = add_business_seconds(RIYADH_WEEK, at(RIYADH, 2026, 3, 26, 16, 30), HOUR)
    assert due == at(RIYADH, 2026, 3, 29, 9, 30)


def test_a_request_inside_hours_is_due_the_same_afternoon():
    assert add_business_seconds(BERLIN_WEEK, at(BERLIN, 2026, 2, 2, 10, 0), 2 * HOUR) == at(BERLIN, 2026, 2, 2, 12, 0)


def test_a_request_before_opening_counts_from_the_opening():
    assert add_business_seconds(BERLIN_WEEK, at(BERLIN, 2026, 2, 2, 6, 15), HOUR) == at(BERLIN, 2026, 2, 2, 10, 0)


def test_a_request_after_closing_counts_from_the_next_mornings_opening():
    assert add_business_seconds(BERLIN_WEEK, at(BERLIN, 2026, 2, 2, 19, 0), HOUR) == at(BERLIN, 2026, 2, 3, 10, 0)


def test_a_target_that_runs_out_exactly_at_closing_is_due_at_closing_not_next_morning():
    assert add_business_seconds(BERLIN_WEEK, at(BERLIN, 2026, 2, 2, 16, 0), HOUR) == at(BERLIN, 2026, 2, 2, 17, 0)


def test_a_lunch_break_does_not_count():
    split_day = calendar("Europe/Berlin", "mon tue wed thu fri", [["14:00", "17:00"], ["09:00", "13:00"]])
    assert add_business_seconds(split_day, at(BERLIN, 2026, 2, 2, 12, 30), HOUR) == at(BERLIN, 2026, 2, 2, 14, 30)
    assert add_business_seconds(split_day, at(BERLIN, 2026, 2, 2, 13, 15), HOUR) == at(BERLIN, 2026, 2, 2, 15, 0)
    assert business_seconds_between(split_day, at(BERLIN, 2026, 2, 2, 8, 0), at(BERLIN, 2026, 2, 3, 0, 0)) == 7 * HOUR


def test_a_hundred_business_hours_take_two_and_a_half_working_weeks():
    start = at(NEW_YORK, 2026, 1, 5, 9, 0)  # a Monday
    due = add_business_seconds(NEW_YORK_WEEK, start, 100 * HOUR)
    assert due == at(NEW_YORK, 2026, 1, 21, 13, 0)  # 12 full days of 8 hours, then 4 hours
    assert business_seconds_between(NEW_YORK_WEEK, start, due) == 100 * HOUR


def test_the_answer_is_the_same_moment_whatever_zone_the_start_is_written_in():
    start = at(RIYADH, 2026, 3, 27, 18, 0)
    assert add_business_seconds(RIYADH_WEEK, start.astimezone(UTC), HOUR) == add_business_seconds(
        RIYADH_WEEK, start.astimezone(NEW_YORK), HOUR)


# ------------------------------------------------------------------ zero seconds

def test_zero_seconds_inside_hours_is_the_start_itself():
    start = at(BERLIN, 2026, 2, 2, 11, 11, 11)
    assert add_business_seconds(BERLIN_WEEK, start, 0) == start


def test_zero_seconds_outside_hours_is_the_next_opening():
    assert add_business_seconds(BERLIN_WEEK, at(BERLIN, 2026, 2, 6, 17, 0), 0) == at(BERLIN, 2026, 2, 9, 9, 0)


# ------------------------------------------------------------------ holidays

def test_a_holiday_is_closed_all_day_and_the_count_resumes_the_day_after():
    with_holiday = calendar("Asia/Riyadh", "sun mon tue wed thu", holidays=["2026-03-29"])
    due = add_business_seconds(with_holiday, at(RIYADH, 2026, 3, 26, 16, 30), HOUR)
    assert due == at(RIYADH, 2026, 3, 30, 9, 30)


def test_holidays_are_local_dates_of_the_calendar_not_utc_dates():
    with_holiday = calendar("Asia/Riyadh", "sun mon tue wed thu", [["00:00", "24:00"]], holidays=["2026-03-29"])
    # Saturday 21:30 UTC is already Sunday 00:30 in Riyadh, and that Sunday is the holiday
    due = add_business_seconds(with_holiday, datetime(2026, 3, 28, 21, 30, tzinfo=UTC), HOUR)
    assert due == at(RIYADH, 2026, 3, 30, 1, 0)


def test_holidays_are_stored_sorted_without_repeats():
    cal = calendar("UTC", "mon", holidays=["2026-12-25", "2026-01-01", "2026-12-25"])
    assert cal.holidays == [date(2026, 1, 1), date(2026, 12, 25)]


# ------------------------------------------------------------------ daylight saving

def test_the_spring_forward_day_has_23_hours_and_the_fall_back_day_25():
    assert business_seconds_between(BERLIN_ALWAYS_OPEN, at(BERLIN, 2026, 3, 29), at(BERLIN, 2026, 3, 30)) == 23 * HOUR
    assert business_seconds_between(BERLIN_ALWAYS_OPEN, at(BERLIN, 2026, 10, 25), at(BERLIN, 2026, 10, 26)) == 25 * HOUR


def test_an_opening_at_nine_on_the_spring_forward_day_is_nine_by_the_new_clocks():
    sundays = calendar("Europe/Berlin", "sun")
    due = add_business_seconds(sundays, at(BERLIN, 2026, 3, 28, 12, 0), HOUR)
    assert due == at(BERLIN, 2026, 3, 29, 10, 0)
    assert due == datetime(2026, 3, 29, 8, 0, tzinfo=UTC)  # summer time: two hours ahead of UTC


def test_a_friday_request_is_due_at_monday_local_time_across_the_us_spring_change():
    due = add_business_seconds(NEW_YORK_WEEK, at(NEW_YORK, 2026, 3, 6, 16, 0), 2 * HOUR)
    assert due == at(NEW_YORK, 2026, 3, 9, 10, 0)
    assert due == datetime(2026, 3, 9, 14, 0, tzinfo=UTC)  # not 15:00 as the winter offset would give


def test_a_range_spanning_the_spring_forward_night_holds_one_hour_less():
    night = calendar("Europe/Berlin", "sun", [["01:00", "04:00"]])
    opens = at(BERLIN, 2026, 3, 29, 1, 0)
    assert business_seconds_between(night, opens, at(BERLIN, 2026, 3, 30)) == 2 * HOUR
    assert add_business_seconds(night, opens, 2 * HOUR) == at(BERLIN, 2026, 3, 29, 4, 0)
    assert add_business_seconds(night, opens, 3 * HOUR) == at(BERLIN, 2026, 4, 5, 2, 0)  # the next Sunday


def test_a_range_spanning_the_fall_back_night_holds_one_hour_more():
    night = calendar("America/New_York", "sun", [["00:00", "03:00"]])
    opens = at(NEW_YORK, 2026, 11, 1, 0, 0)
    assert add_business_seconds(night, opens, 4 * HOUR) == at(NEW_YORK, 2026, 11, 1, 3, 0)
    assert add_business_seconds(night, opens, 4 * HOUR) == datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def test_an_opening_in_the_skipped_hour_opens_when_the_clocks_jump():
    assert local_moment(BERLIN, date(2026, 3, 29), 2 * 60 + 30) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    inside_the_gap = calendar("Europe/Berlin", "sun", [["02:10", "02:50"], ["03:00", "04:00"]])
    assert business_seconds_between(inside_the_gap, at(BERLIN, 2026, 3, 29), at(BERLIN, 2026, 3, 30)) == HOUR


def test_a_repeated_time_opens_at_its_first_occurrence():
    assert local_moment(NEW_YORK, date(2026, 11, 1), 90) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT


def test_counting_forward_then_measuring_back_agrees_around_both_changes():
    split_day = calendar("Europe/Berlin", "sun mon tue wed thu fri sat", [["00:30", "02:45"], ["08:00", "18:00"]])
    for change in (at(BERLIN, 2026, 3, 27), at(BERLIN, 2026, 10, 23)):
        for hours_after in range(0, 96, 5):
            start = change + timedelta(hours=hours_after)
            for seconds in (0, 59, HOUR, 9 * HOUR + 17, 40 * HOUR):
                due = add_business_seconds(split_day, start, seconds)
                assert business_seconds_between(split_day, start, due) == seconds, (start, seconds)


# ------------------------------------------------------------------ measuring

def test_business_time_between_is_negative_when_the_moments_are_reversed():
    monday_ten, monday_noon = at(BERLIN, 2026, 2, 2, 10, 0), at(BERLIN, 2026, 2, 2, 12, 0)
    assert business_seconds_between(BERLIN_WEEK, monday_noon, monday_ten) == -2 * HOUR


def test_a_weekend_holds_no_business_time():
    assert business_seconds_between(BERLIN_WEEK, at(BERLIN, 2026, 2, 6, 17, 0), at(BERLIN, 2026, 2, 9, 9, 0)) == 0


# ------------------------------------------------------------------ limits and bad input

def test_a_calendar_without_business_time_for_three_years_gives_a_clear_error():
    sundays = [date(2026, 1, 4) + timedelta(weeks=w) for w in range(3 * 53)]
    only_holidays = calendar("UTC", "sun", holidays=[d.isoformat() for d in sundays])
    with pytest.raises(CalendarError, match="fewer than 3600 business seconds"):
        add_business_seconds(only_holidays, datetime(2026, 1, 1, tzinfo=UTC), HOUR)


def test_more_seconds_than_the_horizon_holds_is_refused_at_once():
    with pytest.raises(CalendarError, match="do not fit"):
        add_business_seconds(BERLIN_ALWAYS_OPEN, at(BERLIN, 2026, 1, 1), 10**12)


def test_a_start_without_a_time_zone_is_refused():
    with pytest.raises(ValueError, match="time zone"):
        add_business_seconds(BERLIN_WEEK, datetime(2026, 2, 2, 10, 0), HOUR)


def test_negative_seconds_are_refused():
    with pytest.raises(ValueError, match="zero or more"):
        add_business_seconds(BERLIN_WEEK, at(BERLIN, 2026, 2, 2, 10, 0), -1)


# ------------------------------------------------------------------ validation

@pytest.mark.parametrize("body, message", [
    ({"timezone": "Mars/Olympus_Mons", "hours": {"mon": NINE_TO_FIVE}}, "unknown time zone 'Mars/Olympus_Mons'"),
    ({"timezone": "Europe", "hours": {"mon": NINE_TO_FIVE}}, "unknown time zone"),
    ({"timezone": "../../etc/passwd", "hours": {"mon": NINE_TO_FIVE}}, "unknown time zone"),
    ({"timezone": "UTC", "hours": {"monday": NINE_TO_FIVE}}, "unknown day 'monday': days are sun, mon"),
    ({"timezone": "UTC", "hours": {"mon": [["9:00", "17:00"]]}}, "mon: '9:00' is not a time of day"),
    ({"timezone": "UTC", "hours": {"mon": [["09:00", "24:30"]]}}, "'24:30' is not a time of day"),
    ({"timezone": "UTC", "hours": {"mon": [["09:60", "17:00"]]}}, "'09:60' is not a time of day"),
    ({"timezone": "UTC", "hours": {"mon": [["24:00", "24:00"]]}}, "must start before it ends"),
    ({"timezone": "UTC", "hours": {"tue": [["17:00", "09:00"]]}}, "tue: the range 17:00-09:00 must start before"),
    ({"timezone": "UTC", "hours": {"wed": [["13:00", "17:00"], ["09:00", "13:30"]]}},
     "wed: the range 09:00-13:30 overlaps 13:00-17:00"),
    ({"timezone": "UTC", "hours": {}}, "no open hours"),
    ({"timezone": "UTC", "hours": {"mon": [], "tue": []}}, "no open hours"),
    ({"timezone": "UTC", "hours": {"mon": NINE_TO_FIVE}, "holidays": ["2026-02-30"]}, "holidays"),
    ({"timezone": "UTC", "hours": {"mon": NINE_TO_FIVE}, "holiday": ["2026-12-25"]}, "Extra inputs are not permitted"),
])
def test_a_calendar_that_makes_no_sense_is_refused_with_a_clear_message(body, message):
    with pytest.raises(ValidationError, match=message):
        Calendar.model_validate(body)


def test_a_day_may_end_at_midnight_and_ranges_may_touch():
    cal = Calendar(timezone="UTC", hours={"fri": [["18:00", "24:00"], ["09:00", "12:00"], ["12:00", "18:00"]]})
    assert cal.hours == {"fri": [("09:00", "12:00"), ("12:00", "18:00"), ("18:00", "24:00")]}
    friday = datetime(2026, 2, 6, tzinfo=UTC)
    assert business_seconds_between(cal, friday, friday + timedelta(days=1)) == 15 * HOUR


def test_a_calendar_is_stored_in_week_order_as_json():
    cal = Calendar.model_validate({"timezone": "Asia/Riyadh", "hours": {"thu": NINE_TO_FIVE, "sun": NINE_TO_FIVE},
                                   "holidays": ["2026-12-25"]})
    assert cal.model_dump(mode="json") == {
        "timezone": "Asia/Riyadh", "hours": {"sun": NINE_TO_FIVE, "thu": NINE_TO_FIVE}, "holidays": ["2026-12-25"]}
    assert Calendar.model_validate(cal.model_dump(mode="json")) == cal


# ------------------------------------------------------------------ SLA clocks on a calendar

def ticket(created_at: datetime) -> TicketSnapshot:
    return TicketSnapshot(id="TK-1", status="new", priority="normal", channel=Channel.chat, customer_id="CU-1",
                          created_at=created_at, version=1)


def test_a_policy_on_a_calendar_is_due_in_business_time_and_warns_while_the_team_is_in():
    policy = Policy(name="4 working hours", first_response_s=4 * HOUR, warn_before_s=30 * 60, calendar_id="riyadh")
    clock = first_response_clock(ticket(at(RIYADH, 2026, 3, 26, 13, 10)), "p", policy, RIYADH_WEEK)
    assert clock.due_at == at(RIYADH, 2026, 3, 29, 9, 10)
    # 30 working minutes before a Sunday 09:10 deadline is Thursday 16:40, not Sunday 08:40 before opening
    assert clock.warn_at == at(RIYADH, 2026, 3, 26, 16, 40)
    assert clock.calendar_id == "riyadh"


def test_a_policy_without_a_calendar_runs_around_the_clock():
    policy = Policy(name="4 hours", first_response_s=4 * HOUR, warn_before_s=30 * 60)
    clock = first_response_clock(ticket(at(RIYADH, 2026, 3, 27, 18, 0)), "p", policy)
    assert clock.due_at == at(RIYADH, 2026, 3, 27, 22, 0)
    assert clock.warn_at == at(RIYADH, 2026, 3, 27, 21, 30)
    assert clock.calendar_id is None


class FakeStore:
    def __init__(self, policies, calendars):
        self.policies, self.calendars, self.started = policies, calendars, []

    async def all_policies(self):
        return self.policies

    async def get_calendar(self, calendar_id):
        return self.calendars.get(calendar_id)



def sla_service(store: FakeStore) -> SlaService:
    return SlaService(store=store, producer=None, source="test", default_policy=Policy(name="d", first_response_s=60))


async def started(store: FakeStore, t) -> list:
    unit = Unit()
    await sla_service(store).ticket_created(t, 0, unit)
    return list(unit.new.values())


async def test_a_new_ticket_on_a_calendar_policy_gets_its_due_time_in_business_hours():
    store = FakeStore({"p": Policy(name="p", first_response_s=HOUR, calendar_id="riyadh")}, {"riyadh": RIYADH_WEEK})
    clocks = await started(store, ticket(at(RIYADH, 2026, 3, 27, 18, 0)))
    assert clocks[0].due_at == at(RIYADH, 2026, 3, 29, 10, 0)


async def test_a_policy_naming_a_missing_calendar_runs_around_the_clock_with_a_warning(caplog):
    store = FakeStore({"p": Policy(name="p", first_response_s=HOUR, calendar_id="gone")}, {})
    with caplog.at_level(logging.WARNING, logger="services.sla.service"):
        clocks = await started(store, ticket(at(RIYADH, 2026, 3, 27, 18, 0)))
    assert clocks[0].due_at == at(RIYADH, 2026, 3, 27, 19, 0)
    assert "calendar gone, which does not exist" in caplog.text
