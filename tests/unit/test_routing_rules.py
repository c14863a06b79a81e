"""Who gets a ticket: pure routing rules."""
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from services.routing.domain import Agent, AgentProfile, Needs, Presence, WorkingHours, best, can_take, rank


def agent(agent_id: str, *, load: int = 0, capacity: int = 3, presence=Presence.online,
          channels=("chat",), languages=("en",), skills=("general",), last=None) -> Agent:
    return Agent(id=agent_id, name=agent_id, capacity=capacity, presence=presence, channels=list(channels),
                 languages=list(languages), skills=list(skills), tickets=[f"t{i}" for i in range(load)],
                 last_assigned_at=last)


NEEDS = Needs(channel="chat", language="en")


def test_offline_or_full_agents_cannot_take_tickets():
    assert can_take(agent("a"), NEEDS)
    assert not can_take(agent("a", presence=Presence.away), NEEDS)
    assert not can_take(agent("a", load=3, capacity=3), NEEDS)
    assert not can_take(agent("a", capacity=0), NEEDS)


def test_channel_language_and_skills_must_fit():
    assert not can_take(agent("a", channels=("email",)), NEEDS)
    assert not can_take(agent("a", languages=("ar",)), NEEDS)
    assert not can_take(agent("a"), Needs(channel="chat", skills=["refunds"]))
    assert can_take(agent("a", skills=("refunds", "general")), Needs(channel="chat", skills=["refunds"]))


def test_lowest_relative_load_wins_then_longest_idle():
    busy = agent("busy", load=2, capacity=4)
    idle = agent("idle", load=1, capacity=4, last=datetime(2026, 1, 2, tzinfo=UTC))
    idler = agent("idler", load=1, capacity=4, last=datetime(2026, 1, 1, tzinfo=UTC))
    assert [a.id for a in rank([busy, idle, idler], NEEDS)] == ["idler", "idle", "busy"]


def test_best_is_the_first_of_the_ranking_or_none():
    import random
    rng = random.Random(7)
    for _ in range(200):
        agents = [agent(f"a{i}", load=rng.randint(0, 4), capacity=4, languages=rng.choice([("en",), ("de",)]),
                        skills=rng.choice([("general",), ("refunds:2", "general"), ("refunds:4",)]),
                        last=rng.choice([None, datetime(2026, 1, rng.randint(1, 9), tzinfo=UTC)]))
                  for i in range(rng.randint(0, 12))]
        needs = rng.choice([NEEDS, Needs(channel="chat", skills=["refunds"])])
        previous = rng.choice([None, "a1", "a3"])
        ranked = rank(agents, needs, previous=previous)
        found = best(agents, needs, previous=previous)
        assert (found.id if found else None) == (ranked[0].id if ranked else None)


def test_best_skill_match_beats_lower_load():
    specialist = agent("specialist", load=2, skills=("refunds", "general"))
    generalist = agent("generalist", load=0, skills=("general", "refunds_basic"))
    needs = Needs(channel="chat", skills=[])
    assert rank([specialist, generalist], needs)[0].id == "generalist"
    needs = Needs(channel="chat", skills=["refunds"])
    assert [a.id for a in rank([specialist, generalist], needs)] == ["specialist"]


# ---------------------------------------------------------------- skill levels

def test_a_skill_level_is_a_minimum_and_a_plain_skill_is_level_one():
    needs = Needs(channel="chat", skills=["refunds:3"])
    assert can_take(agent("a", skills=("refunds:3",)), needs)
    assert can_take(agent("a", skills=("Refunds:5",)), needs)
    assert not can_take(agent("a", skills=("refunds:2",)), needs)
    assert not can_take(agent("a", skills=("refunds",)), needs)
    assert can_take(agent("a", skills=("refunds",)), Needs(channel="chat", skills=["refunds"]))


def test_the_best_skill_match_comes_first_then_the_lowest_load():
    needs = Needs(channel="chat", skills=["refunds:2"])
    expert = agent("expert", load=2, skills=("refunds:5",))
    able = agent("able", load=0, skills=("refunds:2",))
    able_busy = agent("able-busy", load=1, skills=("refunds:2",))
    assert [a.id for a in rank([able_busy, able, expert], needs)] == ["expert", "able", "able-busy"]


def test_skill_levels_outside_one_to_five_are_refused():
    with pytest.raises(ValidationError):
        AgentProfile(name="a", capacity=1, skills=["refunds:0"])
    with pytest.raises(ValidationError):
        AgentProfile(name="a", capacity=1, skills=["refunds:6"])
    assert AgentProfile(name="a", capacity=1, skills=["refunds", "tech:5"]).skills == ["refunds", "tech:5"]


# ---------------------------------------------------------------- working hours

RIYADH_DAYS = WorkingHours(timezone="Asia/Riyadh", hours={"sun": [["09:00", "17:00"]], "mon": [["09:00", "17:00"]]})
NIGHTS = WorkingHours(timezone="Europe/Stockholm", hours={"fri": [["22:00", "06:00"]]})


@pytest.mark.parametrize(("hours", "at", "on"), [
    (RIYADH_DAYS, "2026-11-23T06:00:00+00:00", True),  # Monday 09:00 in Riyadh
    (RIYADH_DAYS, "2026-11-23T05:59:00+00:00", False),  # 08:59
    (RIYADH_DAYS, "2026-11-23T14:00:00+00:00", False),  # 17:00: the shift has ended
    (RIYADH_DAYS, "2026-11-24T08:00:00+00:00", False),  # Tuesday: a day off
    (NIGHTS, "2026-11-27T21:30:00+00:00", True),  # Friday 22:30 in Stockholm
    (NIGHTS, "2026-11-28T04:59:00+00:00", True),  # Saturday 05:59: still Friday's night shift
    (NIGHTS, "2026-11-28T05:00:00+00:00", False),  # Saturday 06:00
    (NIGHTS, "2026-11-28T21:30:00+00:00", False),  # Saturday night: no shift
])
def test_working_hours_in_the_agents_time_zone_including_shifts_past_midnight(hours, at, on):
    assert hours.on_shift(datetime.fromisoformat(at)) is on


def test_an_online_agent_outside_their_hours_is_not_offered_tickets():
    a = agent("a").model_copy(update={"working_hours": RIYADH_DAYS})
    assert can_take(a, NEEDS, datetime.fromisoformat("2026-11-23T07:00:00+00:00"))
    assert not can_take(a, NEEDS, datetime.fromisoformat("2026-11-24T07:00:00+00:00"))
    assert not can_take(a.model_copy(update={"presence": Presence.away}), NEEDS,
                        datetime.fromisoformat("2026-11-23T07:00:00+00:00"))


def test_bad_working_hours_are_refused():
    for bad in ({"timezone": "Mars/Base", "hours": {}}, {"timezone": "UTC", "hours": {"monday": [["09:00", "17:00"]]}},
                {"timezone": "UTC", "hours": {"mon": [["9am", "17:00"]]}}, {"timezone": "UTC", "hours": {"mon": [["09:00", "09:00"]]}}):
        with pytest.raises(ValidationError):
            WorkingHours.model_validate(bad)


# ---------------------------------------------------------------- the customer's previous agent

def test_the_previous_agent_comes_first_when_they_fit_and_have_room():
    known = agent("known", load=2, capacity=3)
    fresh = agent("fresh", load=0, capacity=3)
    assert [a.id for a in rank([known, fresh], NEEDS, previous="known")] == ["known", "fresh"]
    assert [a.id for a in rank([agent("known", load=3, capacity=3), fresh], NEEDS, previous="known")] == ["fresh"]
    assert [a.id for a in rank([agent("known", languages=("ar",)), fresh], NEEDS, previous="known")] == ["fresh"]
