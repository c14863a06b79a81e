"""Who may take a ticket, and who should: pure rules over agents and a ticket's needs.

Skills are written `name` or `name:level` (level 1 to 5; a plain name is level 1). A ticket
that needs `refunds:3` goes only to agents with refunds at level 3 or more; among those who
fit, the best skill match is preferred. An agent is available when they are online and
inside their working hours (when they have any)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from shared.events import TicketSnapshot
from shared.types import TimeZoneName


class Presence(StrEnum):
    online = "online"
    away = "away"
    offline = "offline"


# ---------------------------------------------------------------- skills with levels

MAX_LEVEL = 5
_LEVELLED = re.compile(r"(?P<name>.+):(?P<level>\d+)")


@functools.lru_cache(maxsize=8192)
def parse_skill(skill: str) -> tuple[str, int]:
    """`refunds:3` → ("refunds", 3); `refunds` → ("refunds", 1)."""
    if m := _LEVELLED.fullmatch(skill.strip()):
        return m["name"].strip().casefold(), int(m["level"])
    return skill.strip().casefold(), 1


def check_skills(skills: list[str]) -> list[str]:
    for skill in skills:
        name, level = parse_skill(skill)
        if not name:
            raise ValueError(f"{skill!r}: a skill needs a name")
        if not 1 <= level <= MAX_LEVEL:
            raise ValueError(f"{skill!r}: skill levels are 1 to {MAX_LEVEL}")
    return skills


def skill_levels(skills: list[str]) -> dict[str, int]:
    """Each skill's level (read only: the dict is shared by every agent with these skills)."""
    return _levels(tuple(skills))


@functools.lru_cache(maxsize=4096)
def _levels(skills: tuple[str, ...]) -> dict[str, int]:
    levels: dict[str, int] = {}
    for skill in skills:
        name, level = parse_skill(skill)
        levels[name] = max(level, levels.get(name, 0))
    return levels


# ---------------------------------------------------------------- working hours

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # Python's weekday() order
_HHMM = re.compile(r"([01]\d|2[0-3]):[0-5]\d|24:00")


def _minutes(hhmm: str) -> int:
    if not _HHMM.fullmatch(hhmm):
        raise ValueError(f"{hhmm!r} is not a time of day: use HH:MM from 00:00 to 23:59, or 24:00 as an end")
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


class WorkingHours(BaseModel):
    """An agent's weekly shifts in their time zone. A range ending before it starts runs past
    midnight (`["22:00", "06:00"]` on mon is Monday 22:00 to Tuesday 06:00); days without
    ranges are days off."""

    model_config = ConfigDict(extra="forbid")

    timezone: TimeZoneName
    hours: dict[str, list[tuple[str, str]]] = Field(
        default_factory=dict, examples=[{"sun": [["09:00", "17:00"]], "mon": [["22:00", "06:00"]]}]
    )

    _zone: ZoneInfo = PrivateAttr()

    @field_validator("hours")
    @classmethod
    def _valid_hours(cls, hours: dict[str, list[tuple[str, str]]]) -> dict[str, list[tuple[str, str]]]:
        for day, ranges in hours.items():
            if day not in DAY_NAMES:
                raise ValueError(f"unknown day {day!r}: days are {', '.join(DAY_NAMES)}")
            for start, end in ranges:
                try:
                    if _minutes(start) == _minutes(end):
                        raise ValueError(f"the range {start}-{end} is empty")
                except ValueError as error:
                    raise ValueError(f"{day}: {error}") from None
        return hours

    def model_post_init(self, _context: object) -> None:
        self._zone = ZoneInfo(self.timezone)

    def on_shift(self, at: datetime) -> bool:
        local = at.astimezone(self._zone)
        minute = local.hour * 60 + local.minute
        today = DAY_NAMES[local.weekday()]
        yesterday = DAY_NAMES[(local - timedelta(days=1)).weekday()]
        for start, end in self.hours.get(today, []):
            s, e = _minutes(start), _minutes(end)
            if (s < e and s <= minute < e) or (e < s and minute >= s):
                return True
        for start, end in self.hours.get(yesterday, []):  # last night's shift running past midnight
            s, e = _minutes(start), _minutes(end)
            if e < s and minute < e:
                return True
        return False


# ---------------------------------------------------------------- agents


class AgentProfile(BaseModel):
    """What an admin sets with `PUT /v1/agents/{agent_id}`."""

    name: str = Field(min_length=1, max_length=200)
    skills: list[str] = Field(
        default_factory=list, max_length=100, description="`name` or `name:level` (level 1-5; a plain name is level 1)"
    )
    languages: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="ISO 639-1 codes, as ingest labels messages (`pt-BR` is kept as `pt`)",
    )
    channels: list[str] = Field(default_factory=list, max_length=20)
    capacity: int = Field(ge=0, le=1000)
    team: str | None = Field(None, max_length=200)
    working_hours: WorkingHours | None = Field(
        None, description="weekly shifts; outside them the agent takes no new tickets even when online"
    )

    @field_validator("skills")
    @classmethod
    def _levels_in_range(cls, skills: list[str]) -> list[str]:
        return check_skills(skills)

    @field_validator("languages")
    @classmethod
    def _as_ingest_labels_them(cls, languages: list[str]) -> list[str]:
        """Ingest labels a message `pt`, never `pt-BR` or `PT`: an agent's languages are matched
        in the same form, or a Brazilian agent would never be offered a Portuguese message."""
        return list(dict.fromkeys(primary_language(code) for code in languages if code.strip()))


class Agent(AgentProfile):
    id: str
    presence: Presence = Presence.offline
    tickets: list[str] = Field(default_factory=list)  # the tickets this agent carries now
    slots: list[str] = Field(default_factory=list, exclude=True)  # the capacity slots they hold (store detail)
    last_assigned_at: datetime | None = None

    @property
    def load(self) -> int:
        return len(self.tickets)


def available(agent: Agent, now: datetime) -> bool:
    """Online and on shift: may be offered new tickets."""
    return agent.presence == Presence.online and (agent.working_hours is None or agent.working_hours.on_shift(now))


class Needs(BaseModel):
    """What a ticket requires of the agent who takes it."""

    channel: str
    language: str | None = None
    skills: list[str] = Field(default_factory=list)  # `name` or `name:minimum level`
    team: str | None = None


# statuses after which a ticket no longer occupies its agent
RELEASING_STATUSES = frozenset({"resolved", "closed", "spam", "deleted"})


UNDETERMINED_LANGUAGE = "und"  # ISO 639-2 for "not determined": routes like no language at all


def primary_language(code: str) -> str:
    """`pt-BR`, `PT`, `pt_br` → `pt`: the ISO 639-1 part of a language tag."""
    return code.strip().replace("_", "-").split("-")[0].lower()


def needs_of(ticket: TicketSnapshot, skills: list[str] | None = None, team: str | None = None) -> Needs:
    language = primary_language(ticket.language) if ticket.language else None
    return Needs(
        channel=ticket.channel.value,
        language=None if language == UNDETERMINED_LANGUAGE else language,
        skills=skills or [],
        team=team,
    )


def speaks(agent: Agent, language: str | None) -> bool:
    return language is None or not agent.languages or language in agent.languages


def fits(agent: Agent, needs: Needs) -> bool:
    """Covers the ticket's channel, language, skills (at their levels) and team; load aside."""
    levels = skill_levels(agent.skills)
    return (
        (not agent.channels or needs.channel in agent.channels)
        and speaks(agent, needs.language)
        and all(levels.get(name, 0) >= level for name, level in map(parse_skill, needs.skills))
        and (needs.team is None or agent.team == needs.team)
    )


def can_take(agent: Agent, needs: Needs, now: datetime | None = None) -> bool:
    return (
        (agent.presence == Presence.online if now is None else available(agent, now))
        and agent.load < agent.capacity
        and fits(agent, needs)
    )


def offerable(agents: list[Agent], needs: Needs, now: datetime) -> tuple[Needs, str]:
    """The needs to route by: as they are, unless nobody on shift who otherwise fits reads the
    ticket's language — then better someone who can use a translator than a ticket waiting
    for no one."""
    if needs.language is None:
        return needs, ""
    on_shift = [a for a in agents if available(a, now)]
    anyone = needs.model_copy(update={"language": None})
    if any(fits(a, needs) for a in on_shift) or not any(fits(a, anyone) for a in on_shift):
        return needs, ""
    return anyone, f"; nobody on shift speaks {needs.language}"


def skill_match(agent: Agent, needs: Needs) -> int:
    """How well the agent covers the wanted skills: the sum of their levels in them."""
    levels = skill_levels(agent.skills)
    return sum(levels.get(name, 0) for name, _ in map(parse_skill, needs.skills))


def rank(agents: list[Agent], needs: Needs, now: datetime | None = None, *, previous: str | None = None) -> list[Agent]:
    """Best first among those who can take the ticket: the agent who served this customer
    before (`previous`), then the best skill match, then the lowest load relative to capacity,
    then the one who waited longest since their last assignment."""
    return sorted((a for a in agents if can_take(a, needs, now)), key=_ranking(needs, previous))


def best(
    agents: list[Agent], needs: Needs, now: datetime | None = None, *, previous: str | None = None
) -> Agent | None:
    """The first of `rank` (the plain form of what the dispatcher's index, roster.py, finds)."""
    return min((a for a in agents if can_take(a, needs, now)), key=_ranking(needs, previous), default=None)


def load_order(agent: Agent) -> tuple[float, datetime, str]:
    """Among equally skilled agents: lowest load relative to capacity, then the longest since their
    last assignment, then by id."""
    ratio = agent.load / agent.capacity if agent.capacity else float("inf")
    last = agent.last_assigned_at.replace(tzinfo=None) if agent.last_assigned_at else datetime.min
    return ratio, last, agent.id


def _ranking(needs: Needs, previous: str | None) -> Callable[[Agent], tuple[Any, ...]]:
    def key(agent: Agent) -> tuple[Any, ...]:
        return (agent.id != previous, -skill_match(agent, needs), *load_order(agent))

    return key


def explain(agent: Agent, needs: Needs, *, previous: bool = False) -> str:
    """Why this agent, in words for the timeline."""
    parts = [f"load {agent.load}/{agent.capacity} at the time"]
    if needs.skills:
        levels = skill_levels(agent.skills)
        parts.insert(
            0,
            "skills "
            + ", ".join(
                f"{name} (level {levels.get(name, 0)})" if ":" in wanted else name
                for wanted, (name, _) in ((s, parse_skill(s)) for s in needs.skills)
            ),
        )
    if previous:
        parts.insert(0, "served this customer before")
    if needs.language:
        parts.append(f"speaks {needs.language}")
    if needs.team:
        parts.append(f"team {needs.team}")
    parts.append(f"works {needs.channel}")
    return "; ".join(parts)
