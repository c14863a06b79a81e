"""Who gets a ticket: pure routing rules."""
from datetime import UTC, datetime

from services.routing.domain import Agent, Needs, Presence, can_take, rank


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


def test_best_skill_match_beats_lower_load():
    specialist = agent("specialist", load=2, skills=("refunds", "general"))
    generalist = agent("generalist", load=0, skills=("general", "refunds_basic"))
    needs = Needs(channel="chat", skills=[])
    assert rank([specialist, generalist], needs)[0].id == "generalist"
    needs = Needs(channel="chat", skills=["refunds"])
    assert [a.id for a in rank([specialist, generalist], needs)] == ["specialist"]
