"""SLA use cases: start clocks for new tickets, stop them when answered, and a scheduler
that turns due clocks into warning and breach events — each exactly once per target and
ticket, across restarts, redeliveries and several SLA processes."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from services.sla.calendar import Calendar, CalendarError
from services.sla.domain import (
    DEFAULT_POLICY_ID, DONE_STATUSES, DORMANT_STATUSES, WAITING_STATUSES, Clock, ClockState, Policy,
    choose_policy, clocks_for_new_ticket, start_clock,
)
from services.sla.store import SlaStore
from shared import topics
from shared.events import (
    EventType, MessageSummary, SlaTarget, SlaTargetEvent, TicketSnapshot, make_event, utcnow,
)
from shared.outbox import EventClaims

log = logging.getLogger(__name__)
KIND_TO_TYPE = {"warning": EventType.SLA_WARNING, "breached": EventType.SLA_BREACHED, "met": EventType.SLA_MET}


def no_event(_: object) -> None:
    """Pausing and resuming change a clock but raise no event."""
    return None


class SlaService:
    def __init__(self, *, store: SlaStore, claims: EventClaims, source: str, default_policy: Policy,
                 max_sleep_s: float = 1.0, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.claims = claims
        self.source = source
        self.default_policy = default_policy
        self.max_sleep_s = max_sleep_s
        self.now = clock
        self.wake = asyncio.Event()

    async def install_default_policy(self) -> None:
        await self.store.ensure_policy(DEFAULT_POLICY_ID, self.default_policy)

    async def ticket_created(self, ticket: TicketSnapshot) -> None:
        policy_id, policy = await self._policy_for(ticket)
        calendar = await self._calendar_of(policy_id, policy)
        try:
            clocks = clocks_for_new_ticket(ticket, policy_id, policy, calendar)
        except CalendarError as error:
            # a clock must start: raising would only redeliver the same ticket event forever
            log.warning("policy %s: calendar %s cannot time ticket %s (%s); running around the clock",
                        policy_id, policy.calendar_id, ticket.id, error)
            clocks = clocks_for_new_ticket(ticket, policy_id, policy)
        started = [await self.store.start_clock(c) for c in clocks]
        if any(started):
            self.wake.set()

    async def on_ticket_event(self, event_type: str, ticket: TicketSnapshot, data: dict, at: datetime) -> None:
        """Every ticket event moves the ticket's clocks: answers stop response clocks, a
        customer message starts a next-response wait, and the status pauses or resumes."""
        if event_type == EventType.TICKET_CREATED:
            await self.ticket_created(ticket)
        elif event_type == EventType.TICKET_REPLIED:
            await self.agent_replied(ticket.id, MessageSummary.model_validate(data["message"]).at)
        elif event_type == EventType.TICKET_MESSAGE_ADDED:
            message = MessageSummary.model_validate(data["message"])
            if message.direction == "inbound":
                await self.customer_wrote(ticket, message)
        await self.status_is(ticket, at)

    async def agent_replied(self, ticket_id: str, at: datetime) -> None:
        for clock in await self.store.clocks_of(ticket_id):
            if clock.target != SlaTarget.resolution and not clock.finished:
                await self._apply(clock.key, lambda c, cal: c.answer(at, cal))

    async def customer_wrote(self, ticket: TicketSnapshot, message: MessageSummary) -> None:
        """A customer message after the first answer starts a next-response wait (one at a time)."""
        clocks = await self.store.clocks_of(ticket.id)
        first = next((c for c in clocks if c.target == SlaTarget.first_response), None)
        if first is None or not first.finished:
            return
        if any(c.target == SlaTarget.next_response and not c.finished for c in clocks):
            return
        policy = (await self.store.all_policies()).get(first.policy_id) or self.default_policy
        if not policy.next_response_s:
            return
        calendar = await self._calendar_of(first.policy_id, policy)
        clock = start_clock(ticket.id, SlaTarget.next_response, first.policy_id, policy, policy.next_response_s,
                            message.at, calendar, cycle=message.message_id)
        if await self.store.start_clock(clock):
            self.wake.set()

    async def status_is(self, ticket: TicketSnapshot, at: datetime) -> None:
        """Pause while the ticket waits on the customer (or is spam/deleted), resume when it is
        active again, and settle every open target when it is resolved or closed."""
        for clock in await self.store.clocks_of(ticket.id):
            if clock.finished:
                continue
            if ticket.status in DONE_STATUSES:
                await self._apply(clock.key, lambda c, cal: c.answer(at, cal))
            elif ticket.status in WAITING_STATUSES or ticket.status in DORMANT_STATUSES:
                await self._apply(clock.key, lambda c, cal: no_event(c.pause(at, cal)))
            else:
                await self._apply(clock.key, lambda c, cal: no_event(c.resume(at, cal)))
        self.wake.set()

    async def _policy_for(self, ticket: TicketSnapshot) -> tuple[str, Policy]:
        policies = await self.store.all_policies() or {DEFAULT_POLICY_ID: self.default_policy}
        return choose_policy(policies, ticket) or (DEFAULT_POLICY_ID, self.default_policy)

    async def _calendar_of(self, policy_id: str, policy: Policy) -> Calendar | None:
        """The calendar a policy runs on; one naming a calendar that does not exist (yet) runs
        around the clock rather than leave the ticket without a clock."""
        if policy.calendar_id is None:
            return None
        calendar = await self.store.get_calendar(policy.calendar_id)
        if calendar is None:
            log.warning("policy %s names calendar %s, which does not exist; running around the clock",
                        policy_id, policy.calendar_id)
        return calendar

    async def fire_due(self) -> int:
        """Turn every clock that is due now into its event; returns how many were raised."""
        fired = 0
        for key in await self.store.due(self.now()):
            fired += await self._apply(key, lambda c, cal: c.fire(self.now()))
        return fired

    async def run_scheduler(self) -> None:
        """Sleep until the nearest due time (bounded), not a fixed poll."""
        while True:
            await self.fire_due()
            nearest = await self.store.next_due()
            sleep = self.max_sleep_s if nearest is None else (nearest - self.now()).total_seconds()
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=min(max(sleep, 0.02), self.max_sleep_s))
            except TimeoutError:
                pass

    async def _apply(self, key: str, change: Callable[[Clock, Calendar | None], str | None]) -> int:
        """Change a clock; when the change is a decision (a warning, or the one outcome: met or
        breached) it is claimed under a unique key first, and a process that loses the claim
        takes the earlier decision instead of its own. Returns 1 when this call raised an event."""
        async with self.store.locks.hold(key):
            clock = await self.store.load(key)
            if clock is None:
                return 0
            before = clock.model_dump()
            kind = change(clock, await self._calendar_by_id(clock.calendar_id))
            if kind is None:
                if clock.model_dump() != before:
                    await self.store.save(clock)
                return 0
            slot = "warning" if kind == "warning" else "outcome"
            stored, won = await self.claims.claim(f"{key}:{slot}", topic=topics.SLA_EVENTS,
                                                  key=clock.ticket_id, event=self._event(clock, kind), kind=kind)
            if stored["kind"] != kind:  # another process decided the outcome first
                clock.state = ClockState(stored["kind"])
            await self.store.save(clock)
            if won:
                await self.claims.relay(stored)
            return int(won)

    def _event(self, clock: Clock, kind: str):
        at = {"warning": self.now(), "breached": clock.breached_at, "met": clock.met_at}[kind] or self.now()
        payload = SlaTargetEvent(ticket_id=clock.ticket_id, target=clock.target, policy_id=clock.policy_id,
                                 cycle=clock.cycle, due_at=clock.due_at or clock.breached_at, at=at)
        # deterministic id: a re-sent event is recognisably the same event
        cycle = f"-{clock.cycle}" if clock.cycle else ""
        return make_event(KIND_TO_TYPE[kind], payload, source=self.source, subject=clock.ticket_id,
                          id_=f"sla-{clock.ticket_id}-{clock.target.value}{cycle}-{kind}")

    async def view(self, clocks: list[Clock]) -> list[dict]:
        """Each target with its due time, state and time used (business time on a calendar)."""
        now, out = self.now(), []
        for c in clocks:
            used = c.used(now, await self._calendar_by_id(c.calendar_id))
            out.append({"target": c.target.value, "cycle": c.cycle or None, "policy_id": c.policy_id,
                        "calendar_id": c.calendar_id, "started_at": c.started_at, "due": c.due_at,
                        "warn_at": c.warn_at, "state": c.state.value, "budget_s": c.budget_s,
                        "used_s": round(used, 3),
                        "remaining_s": None if c.finished else round(max(0.0, c.budget_s - used), 3),
                        "met_at": c.met_at, "breached_at": c.breached_at})
        return out

    async def _calendar_by_id(self, calendar_id: str | None) -> Calendar | None:
        return await self.store.get_calendar(calendar_id) if calendar_id else None
