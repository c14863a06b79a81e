"""Who may take a ticket, and who should: pure rules over agents and a ticket's needs."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from shared.events import TicketSnapshot


class Presence(StrEnum):
    online = "online"
    away = "away"
    offline = "offline"


class AgentProfile(BaseModel):
    """What an admin sets with `PUT /v1/agents/{agent_id}`."""

    name: str = Field(min_length=1, max_length=200)
    skills: list[str] = Field(default_factory=list, max_length=100)
    languages: list[str] = Field(default_factory=list, max_length=50)
    channels: list[str] = Field(default_factory=list, max_length=20)
    capacity: int = Field(ge=0, le=1000)
    team: str | None = Field(None, max_length=200)


class Agent(AgentProfile):
    id: str
    presence: Presence = Presence.offline
    tickets: list[str] = Field(default_factory=list)  # the tickets this agent carries now
    last_assigned_at: datetime | None = None

    @property
    def load(self) -> int:
        return len(self.tickets)


class Needs(BaseModel):
    """What a ticket requires of the agent who takes it."""

    channel: str
    language: str | None = None
    skills: list[str] = Field(default_factory=list)
    team: str | None = None


# statuses after which a ticket no longer occupies its agent
RELEASING_STATUSES = frozenset({"resolved", "closed", "spam", "deleted"})


def needs_of(ticket: TicketSnapshot, skills: list[str] | None = None, team: str | None = None) -> Needs:
    return Needs(channel=ticket.channel.value, language=ticket.language, skills=skills or [], team=team)


def explain(agent: Agent, needs: Needs) -> str:
    """Why this agent, in words for the timeline."""
    parts = [f"load {agent.load}/{agent.capacity} at the time"]
    if needs.skills:
        parts.insert(0, "skills " + ", ".join(needs.skills))
    if needs.language:
        parts.append(f"speaks {needs.language}")
    if needs.team:
        parts.append(f"team {needs.team}")
    parts.append(f"works {needs.channel}")
    return "; ".join(parts)


def can_take(agent: Agent, needs: Needs) -> bool:
    return (
        agent.presence == Presence.online
        and agent.load < agent.capacity
        and (not agent.channels or needs.channel in agent.channels)
        and (needs.language is None or not agent.languages or needs.language in agent.languages)
        and all(skill in agent.skills for skill in needs.skills)
        and (needs.team is None or agent.team == needs.team)
    )


def rank(agents: list[Agent], needs: Needs) -> list[Agent]:
    """Best first: most of the wanted skills, then the lowest load relative to capacity,
    then the one who waited longest since their last assignment."""
    epoch = datetime.min.replace(tzinfo=None)

    def key(agent: Agent):
        matched = sum(1 for s in needs.skills if s in agent.skills)
        last = agent.last_assigned_at.replace(tzinfo=None) if agent.last_assigned_at else epoch
        return (-matched, agent.load / agent.capacity, last, agent.id)

    return sorted((a for a in agents if can_take(a, needs)), key=key)
