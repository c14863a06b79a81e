"""SLA policies and clocks. Pure: which policy applies, when a target is due, and what
a due clock turns into (a warning, a breach)."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, Field

from services.sla.calendar import Calendar, add_business_seconds, business_seconds_between
from shared.events import SlaTarget, TicketSnapshot

DEFAULT_POLICY_ID = "default"


class PolicyMatch(BaseModel):
    """What a ticket must have for the policy to apply; a field left out matches anything."""

    channel: str | None = None
    priority: str | None = None
    tags: list[str] | None = Field(None, description="every one of these tags")
    tier: str | None = Field(None, description="the customer's service tier (e.g. vip)")
    team: str | None = Field(None, description="the team the ticket belongs to")


MAX_TARGET_S = 10 * 365 * 86400  # ten years: longer is a typo, and would not fit the clock arithmetic


class Policy(BaseModel):
    """`PUT /v1/policies/{policy_id}` (CONTRACT.md); times in seconds."""

    name: str = Field(min_length=1, max_length=200)
    match: PolicyMatch = Field(default_factory=PolicyMatch)
    first_response_s: int = Field(gt=0, le=MAX_TARGET_S)
    next_response_s: int | None = Field(None, gt=0, le=MAX_TARGET_S)
    resolution_s: int | None = Field(None, gt=0, le=MAX_TARGET_S)
    warn_before_s: int | None = Field(None, ge=0, le=MAX_TARGET_S)
    calendar_id: str | None = None
    order: int = Field(1000, ge=-1_000_000, le=1_000_000)


class ClockState(StrEnum):
    running = "running"
    paused = "paused"
    met = "met"
    breached = "breached"


def matches(policy: Policy, ticket: TicketSnapshot) -> bool:
    """A ticket without a tier or a team (not known yet) fits only policies that ask for neither."""
    m = policy.match
    return (
        (m.channel is None or m.channel == ticket.channel.value)
        and (m.priority is None or m.priority == ticket.priority)
        and (not m.tags or all(t in ticket.tags for t in m.tags))
        and (m.tier is None or m.tier == ticket.customer_tier)
        and (m.team is None or m.team == ticket.team)
    )


def choose_policy(policies: dict[str, Policy], ticket: TicketSnapshot) -> tuple[str, Policy] | None:
    """The lowest `order` whose match fits wins (ties by id, so the choice is stable)."""
    fitting = [(p.order, pid, p) for pid, p in policies.items() if matches(p, ticket)]
    if not fitting:
        return None
    _, pid, policy = min(fitting, key=lambda x: (x[0], x[1]))
    return pid, policy


def due_after(start: datetime, seconds: int, calendar: Calendar | None = None) -> datetime:
    """`seconds` after `start`: around the clock, or of business time when the policy runs on a
    calendar (raises `CalendarError` when the calendar has not that much time within its horizon)."""
    if calendar is None:
        return start + timedelta(seconds=seconds)
    return add_business_seconds(calendar, start, seconds)


# ticket statuses in which the clocks stop because the ticket waits on the customer
WAITING_STATUSES = frozenset({"answered", "postponed"})
# statuses in which no clock is of any use any more (nothing is owed to anyone)
DORMANT_STATUSES = frozenset({"spam", "deleted"})
DONE_STATUSES = frozenset({"resolved", "closed"})


class Clock(BaseModel):
    """One target of one ticket: a budget of seconds (business seconds on a calendar) that is
    spent while the clock runs and not while it is paused."""

    ticket_id: str
    target: SlaTarget
    cycle: str = ""  # next_response clocks: the customer message that started this cycle
    policy_id: str
    calendar_id: str | None = None  # the calendar the times are counted in; None: around the clock
    budget_s: int
    warn_before_s: int | None = None
    started_at: datetime
    used_s: float = 0.0  # spent before `running_since`
    running_since: datetime | None = None
    due_at: datetime | None = None
    warn_at: datetime | None = None
    state: ClockState = ClockState.running
    paused_at: datetime | None = None
    warned: bool = False
    met_at: datetime | None = None
    breached_at: datetime | None = None
    # the tickets.events partition the ticket's events arrive on: the SLA process consuming that
    # partition owns the clock's timers (None: unknown, any process may fire them)
    partition: int | None = None

    @property
    def key(self) -> str:
        return f"{self.ticket_id}:{self.target.value}" + (f":{self.cycle}" if self.cycle else "")

    @property
    def finished(self) -> bool:
        return self.state in (ClockState.met, ClockState.breached)

    def next_fire_at(self) -> datetime | None:
        """When the scheduler must look at this clock next (None: not while it stays as it is)."""
        if self.state != ClockState.running or self.due_at is None:
            return None
        if self.warn_at and not self.warned and self.warn_at < self.due_at:
            return self.warn_at
        return self.due_at

    def overdue(self, at: datetime) -> bool:
        """Running past its due time: breached, whether or not the breach was noticed yet."""
        return self.state == ClockState.running and self.due_at is not None and at >= self.due_at

    def fire(self, now: datetime) -> str | None:
        """What a due clock turns into: "warning", "breached", or None if not yet due."""
        if self.state != ClockState.running or self.due_at is None:
            return None
        if now >= self.due_at:
            self._breach()
            return "breached"
        if self.warn_at and not self.warned and now >= self.warn_at:
            self.warned = True
            return "warning"
        return None

    def answer(self, at: datetime, calendar: Calendar | None = None) -> str | None:
        """The awaited answer came at `at`: "met" in time, "breached" if late and not yet
        reported, None when the clock already has its outcome."""
        if self.finished:
            return None
        if self.due_at is not None and self.state == ClockState.running and at > self.due_at:
            self._breach()
            return "breached"
        self._meet(at, calendar)
        return "met"

    def settle(self, kind: str, at: datetime | None, calendar: Calendar | None = None) -> None:
        """Take a decision made elsewhere (another process, or before a restart): "warning",
        "breached" or "met" at `at`, so this copy of the clock never decides it again."""
        if kind == "warning":
            self.warned = True
        elif not self.finished and kind == "breached":
            self._breach()
        elif not self.finished and kind == "met":
            self._meet(at or self.running_since or self.started_at, calendar)

    def _breach(self) -> None:
        self.used_s, self.running_since, self.paused_at = float(self.budget_s), None, None
        self.state, self.breached_at = ClockState.breached, self.due_at

    def _meet(self, at: datetime, calendar: Calendar | None) -> None:
        self.used_s, self.running_since, self.paused_at = self.used(at, calendar), None, None
        self.state, self.met_at = ClockState.met, at

    def pause(self, at: datetime, calendar: Calendar | None) -> bool:
        """The ticket waits on the customer: stop spending the budget."""
        if self.state != ClockState.running or self.running_since is None:
            return False
        self.used_s += max(0.0, elapsed(self.running_since, at, calendar))
        # no due time while paused: it is only known once the clock runs again
        self.state, self.running_since, self.due_at, self.warn_at = ClockState.paused, None, None, None
        self.paused_at = at
        return True

    def resume(self, at: datetime, calendar: Calendar | None) -> bool:
        """The customer wrote (or the ticket is active again): the rest of the budget runs from `at`."""
        if self.state != ClockState.paused:
            return False
        self.state, self.running_since, self.paused_at = ClockState.running, at, None
        self._schedule(at, calendar)
        return True

    def remaining(self, now: datetime, calendar: Calendar | None) -> float | None:
        """Budget left (business seconds on a calendar); None once the target is met or breached."""
        return None if self.finished else max(0.0, self.budget_s - self.used(now, calendar))

    def used(self, now: datetime, calendar: Calendar | None) -> float:
        if self.state == ClockState.running and self.running_since is not None:
            return self.used_s + max(0.0, elapsed(self.running_since, now, calendar))
        return self.used_s

    def _schedule(self, since: datetime, calendar: Calendar | None) -> None:
        """Set the due and warning times of a clock running since `since`."""
        remaining = max(0, round(self.budget_s - self.used_s))
        self.due_at = due_after(since, remaining, calendar)
        self.warn_at = None
        if self.warn_before_s and not self.warned:
            # warn when `warn_before_s` of the policy's own time is left, so on a calendar that is
            # business time: "warn 30 minutes before" then leaves the team 30 working minutes
            # (Friday 16:40 for a Monday 09:10 deadline), not Monday 08:40 before anyone is in
            self.warn_at = due_after(since, max(0, remaining - self.warn_before_s), calendar)


def elapsed(a: datetime, b: datetime, calendar: Calendar | None) -> float:
    if calendar is None:
        return (b - a).total_seconds()
    return business_seconds_between(calendar, a, b)


def start_clock(
    ticket_id: str,
    target: SlaTarget,
    policy_id: str,
    policy: Policy,
    budget_s: int,
    at: datetime,
    calendar: Calendar | None,
    cycle: str = "",
) -> Clock:
    clock = Clock(
        ticket_id=ticket_id,
        target=target,
        cycle=cycle,
        policy_id=policy_id,
        calendar_id=policy.calendar_id if calendar is not None else None,
        budget_s=budget_s,
        warn_before_s=policy.warn_before_s,
        started_at=at,
        running_since=at,
    )
    clock._schedule(at, calendar)  # noqa: SLF001 - the factory of Clock, in Clock's own module
    return clock


def first_response_clock(
    ticket: TicketSnapshot, policy_id: str, policy: Policy, calendar: Calendar | None = None
) -> Clock:
    """The first-response clock of a new ticket; `calendar` is the one the policy names, if any."""
    return start_clock(
        ticket.id, SlaTarget.first_response, policy_id, policy, policy.first_response_s, ticket.created_at, calendar
    )


def clocks_for_new_ticket(
    ticket: TicketSnapshot, policy_id: str, policy: Policy, calendar: Calendar | None = None
) -> list[Clock]:
    clocks = [first_response_clock(ticket, policy_id, policy, calendar)]
    if policy.resolution_s:
        clocks.append(
            start_clock(
                ticket.id, SlaTarget.resolution, policy_id, policy, policy.resolution_s, ticket.created_at, calendar
            )
        )
    return clocks
