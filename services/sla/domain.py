"""SLA policies and clocks. Pure: which policy applies, when a target is due, and what
a due clock turns into (a warning, a breach)."""
from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, Field

from shared.events import SlaTarget, TicketSnapshot

DEFAULT_POLICY_ID = "default"


class PolicyMatch(BaseModel):
    channel: str | None = None
    priority: str | None = None
    tags: list[str] | None = None
    tier: str | None = None


class Policy(BaseModel):
    """`PUT /v1/policies/{policy_id}` (CONTRACT.md); times in seconds."""

    name: str = Field(min_length=1, max_length=200)
    match: PolicyMatch = Field(default_factory=PolicyMatch)
    first_response_s: int = Field(gt=0)
    next_response_s: int | None = Field(None, gt=0)
    resolution_s: int | None = Field(None, gt=0)
    warn_before_s: int | None = Field(None, ge=0)
    calendar_id: str | None = None
    order: int = 1000


class ClockState(StrEnum):
    running = "running"
    paused = "paused"
    met = "met"
    breached = "breached"


def matches(policy: Policy, ticket: TicketSnapshot, tier: str | None = None) -> bool:
    m = policy.match
    return ((m.channel is None or m.channel == ticket.channel.value)
            and (m.priority is None or m.priority == ticket.priority)
            and (not m.tags or all(t in ticket.tags for t in m.tags))
            and (m.tier is None or m.tier == tier))


def choose_policy(policies: dict[str, Policy], ticket: TicketSnapshot) -> tuple[str, Policy] | None:
    """The lowest `order` whose match fits wins (ties by id, so the choice is stable)."""
    fitting = [(p.order, pid, p) for pid, p in policies.items() if matches(p, ticket)]
    if not fitting:
        return None
    _, pid, policy = min(fitting, key=lambda x: (x[0], x[1]))
    return pid, policy


def due_after(start: datetime, seconds: int) -> datetime:
    """Around-the-clock arithmetic (business-hours calendars come with their own module)."""
    return start + timedelta(seconds=seconds)


class Clock(BaseModel):
    """One target of one ticket."""

    ticket_id: str
    target: SlaTarget
    policy_id: str
    started_at: datetime
    due_at: datetime
    warn_at: datetime | None = None
    state: ClockState = ClockState.running
    warned: bool = False
    met_at: datetime | None = None
    breached_at: datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.ticket_id}:{self.target.value}"

    def next_fire_at(self) -> datetime | None:
        """When the scheduler must look at this clock next (None: never again)."""
        if self.state != ClockState.running:
            return None
        if self.warn_at and not self.warned and self.warn_at < self.due_at:
            return self.warn_at
        return self.due_at

    def fire(self, now: datetime) -> str | None:
        """What a due clock turns into: "warning", "breached", or None if not yet due."""
        if self.state != ClockState.running:
            return None
        if now >= self.due_at:
            self.state, self.breached_at = ClockState.breached, now
            return "breached"
        if self.warn_at and not self.warned and now >= self.warn_at:
            self.warned = True
            return "warning"
        return None

    def answer(self, at: datetime) -> str | None:
        """The awaited answer came at `at`: "met" in time, "breached" if late and not yet
        reported, None when the clock already has its outcome."""
        if self.state in (ClockState.met, ClockState.breached):
            return None
        if at > self.due_at:
            self.state, self.breached_at = ClockState.breached, self.due_at
            return "breached"
        self.state, self.met_at = ClockState.met, at
        return "met"

    def used_s(self, now: datetime) -> float:
        end = self.met_at or self.breached_at or now
        return max(0.0, (end - self.started_at).total_seconds())


def first_response_clock(ticket: TicketSnapshot, policy_id: str, policy: Policy) -> Clock:
    due = due_after(ticket.created_at, policy.first_response_s)
    warn = due - timedelta(seconds=policy.warn_before_s) if policy.warn_before_s else None
    return Clock(ticket_id=ticket.id, target=SlaTarget.first_response, policy_id=policy_id,
                 started_at=ticket.created_at, due_at=due, warn_at=warn)
