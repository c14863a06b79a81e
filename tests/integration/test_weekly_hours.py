"""Weekly hours with several ranges a day, stored on the real server: FerretDB keeps no arrays
inside arrays, so the stores keep each range as one "HH:MM-HH:MM" string and give the API's shape back."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.routing.domain import AgentProfile
from services.routing.store import RoutingStore
from services.sla.calendar import Calendar
from services.sla.store import SlaStore

pytestmark = pytest.mark.integration

SPLIT_DAY = {"sun": [["09:00", "13:00"], ["14:00", "17:00"]], "mon": [["22:00", "06:00"]]}


async def test_a_calendar_with_a_split_day_is_stored_and_read_back(storage):
    store = SlaStore(storage)
    calendar = Calendar.model_validate({"timezone": "Asia/Riyadh", "hours": {**SPLIT_DAY, "mon": [["09:00", "17:00"]]},
                                        "holidays": ["2026-12-25"]})
    await store.put_calendar("riyadh", calendar)
    back = await store.get_calendar("riyadh")
    assert back == calendar
    assert back.model_dump(mode="json")["hours"]["sun"] == [["09:00", "13:00"], ["14:00", "17:00"]]


async def test_an_agent_with_two_shifts_and_a_night_shift_is_stored_and_read_back(storage):
    store = RoutingStore(storage)
    profile = AgentProfile.model_validate({"name": "Omar", "capacity": 3,
                                           "working_hours": {"timezone": "Asia/Riyadh", "hours": SPLIT_DAY}})
    await store.upsert_agent("omar", profile, datetime(2026, 11, 24, tzinfo=UTC))
    [agent], _ = await store.agents_with_load()
    assert agent.working_hours == profile.working_hours
    assert agent.working_hours.on_shift(datetime(2026, 11, 22, 11, 30, tzinfo=UTC))  # Sunday 14:30 in Riyadh
    assert not agent.working_hours.on_shift(datetime(2026, 11, 22, 10, 30, tzinfo=UTC))  # the lunch break
