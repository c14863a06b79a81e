"""SLA use cases: start clocks for new tickets, pause, resume and stop them as the ticket
changes, and a scheduler that turns due clocks into warning and breach events — each exactly
once per target and ticket, across restarts, redeliveries and several SLA processes.

The clocks of the tickets this process owns (the tickets.events partitions it consumes) live in
memory with a due-ordered heap (services/sla/timers.py): loaded from MongoDB when a partition
is assigned, then kept current by the events of those partitions, which only this process
receives. So neither a ticket event nor a scheduler tick reads the clocks collection, and a
restart or a partition taken over from a dead process loads the clocks again and fires every
one that came due meanwhile."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from services.sla.calendar import Calendar, CalendarError
from services.sla.decisions import SlaClaims, decided_at
from services.sla.domain import (
    DEFAULT_POLICY_ID, DONE_STATUSES, DORMANT_STATUSES, WAITING_STATUSES, Clock, Policy,
    choose_policy, clocks_for_new_ticket, start_clock,
)
from services.sla.store import SlaStore
from services.sla.timers import ClockBook
from shared import topics
from shared.events import (
    EventType, MessageSummary, SlaTarget, SlaTargetEvent, TicketSnapshot, make_event, utcnow,
)

log = logging.getLogger(__name__)
KIND_TO_TYPE = {"warning": EventType.SLA_WARNING, "breached": EventType.SLA_BREACHED, "met": EventType.SLA_MET}
RETRY_AFTER = timedelta(seconds=1)  # a clock whose decision could not be stored is looked at again


def no_event(_: object) -> None:
    """Pausing and resuming change a clock but raise no event."""
    return None


class SlaService:
    def __init__(self, *, store: SlaStore, claims: SlaClaims, source: str, default_policy: Policy,
                 max_sleep_s: float = 1.0, clock: Callable[[], datetime] = utcnow,
                 fire_batch: int = 500, fire_concurrency: int = 32) -> None:
        self.store = store
        self.claims = claims
        self.source = source
        self.default_policy = default_policy
        self.max_sleep_s = max_sleep_s
        self.now = clock
        self.fire_batch = fire_batch
        self.fire_concurrency = fire_concurrency
        self.book = ClockBook()
        self.wake = asyncio.Event()
        # between a revocation and the next assignment nobody knows who owns what: fire nothing
        self.suspended = False
        self._handling = asyncio.Lock()  # held while one ticket event is applied
        self._loaded: set[int] = set()  # partitions whose clocks are in memory
        self._loaded_unpartitioned = False
        self._loading: asyncio.Task | None = None
        self.ready = asyncio.Event()  # clear while the clocks of newly owned partitions load
        self.ready.set()
        self.observe_lag: Callable[[float], None] = lambda seconds: None  # due time -> event sent

    async def install_default_policy(self) -> None:
        await self.store.ensure_policy(DEFAULT_POLICY_ID, self.default_policy)

    # ------------------------------------------------------------ ticket events
    @asynccontextmanager
    async def handling(self):
        """Wrap the application of one ticket event, so a revocation waits for it to finish."""
        async with self._handling:
            yield

    async def on_ticket_event(self, event_type: str, ticket: TicketSnapshot, data: dict, at: datetime,
                              partition: int | None = None) -> None:
        """Every ticket event moves the ticket's clocks: answers stop response clocks, a
        customer message starts a next-response wait, and the status pauses or resumes."""
        if event_type == EventType.TICKET_CREATED:
            await self.ticket_created(ticket, partition)
        elif event_type == EventType.TICKET_REPLIED:
            await self.agent_replied(ticket.id, MessageSummary.model_validate(data["message"]).at)
        elif event_type == EventType.TICKET_MESSAGE_ADDED:
            message = MessageSummary.model_validate(data["message"])
            if message.direction == "inbound":
                await self.customer_wrote(ticket, message, partition)
        await self.status_is(ticket, at)

    async def ticket_created(self, ticket: TicketSnapshot, partition: int | None = None) -> None:
        policy_id, policy = await self._policy_for(ticket)
        calendar = await self._calendar_of(policy_id, policy)
        try:
            clocks = clocks_for_new_ticket(ticket, policy_id, policy, calendar)
        except CalendarError as error:
            # a clock must start: raising would only redeliver the same ticket event forever
            log.warning("policy %s: calendar %s cannot time ticket %s (%s); running around the clock",
                        policy_id, policy.calendar_id, ticket.id, error)
            clocks = clocks_for_new_ticket(ticket, policy_id, policy)
        for clock in clocks:
            await self._start(clock, partition)

    async def agent_replied(self, ticket_id: str, at: datetime) -> None:
        for clock in self.book.of_ticket(ticket_id):
            if clock.target != SlaTarget.resolution and not clock.finished:
                await self._apply(clock.key, lambda c, cal: c.answer(at, cal))

    async def customer_wrote(self, ticket: TicketSnapshot, message: MessageSummary,
                             partition: int | None = None) -> None:
        """A customer message after the first answer starts a next-response wait (one at a time)."""
        clocks = self.book.of_ticket(ticket.id)
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
        await self._start(clock, first.partition if partition is None else partition)

    async def status_is(self, ticket: TicketSnapshot, at: datetime) -> None:
        """Pause while the ticket waits on the customer (or is spam/deleted), resume when it is
        active again, and settle every open target when it is resolved or closed. A clock that
        was already past its due time when the ticket stopped waiting on the team has breached."""
        for clock in self.book.of_ticket(ticket.id):
            if clock.finished:
                continue
            if ticket.status in DONE_STATUSES:
                await self._apply(clock.key, lambda c, cal: c.answer(at, cal))
            elif ticket.status in WAITING_STATUSES or ticket.status in DORMANT_STATUSES:
                await self._apply(clock.key, lambda c, cal: c.fire(at) if c.overdue(at) else no_event(c.pause(at, cal)))
            else:
                await self._apply(clock.key, lambda c, cal: no_event(c.resume(at, cal)))

    async def _start(self, clock: Clock, partition: int | None) -> None:
        clock.partition = partition
        if await self.store.start_clock(clock):
            self.book.put(clock)
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

    async def _apply(self, key: str, change: Callable[[Clock, Calendar | None], str | None]) -> int:
        """Change a clock because its ticket changed: the new state is stored before the ticket
        event is acknowledged. A change that is a decision (a warning, or the one outcome: met or
        breached) is claimed first, and a process that loses the claim takes the earlier
        decision instead of its own. Returns 1 when this call raised an event."""
        async with self.store.locks.hold(key):
            current = self.book.clocks.get(key)
            if current is None:
                return 0
            clock = current.model_copy()  # the held copy changes only once the change is stored
            calendar = await self._calendar_by_id(clock.calendar_id)
            kind = change(clock, calendar)
            clock, stored = await self._decide(current, clock, kind, calendar) if kind else (clock, None)
            if clock != current:
                await self.store.save(clock)
            self.book.put(clock)
        self.wake.set()
        return await self._relay(stored)

    # ------------------------------------------------------------ scheduler
    async def fire_due(self) -> int:
        """Turn every clock of this process that is due now into its event; returns how many
        events were raised."""
        if self.suspended:
            return 0
        now = self.now()
        keys = self.book.due.pop_due(now, self.fire_batch)
        if not keys:
            return 0
        gate = asyncio.Semaphore(self.fire_concurrency)

        async def one(key: str) -> int:
            async with gate:
                try:
                    return await self._fire(key, now)
                except Exception:
                    log.exception("clock %s: its event could not be stored; trying again shortly", key)
                    if key in self.book.clocks:
                        self.book.due.set(key, now + RETRY_AFTER)
                    return 0

        return sum(await asyncio.gather(*(one(k) for k in keys)))

    async def _fire(self, key: str, now: datetime) -> int:
        """A due clock's warning or breach: stored as its decision (a unique insert), published,
        and the clock in memory moved on. The clock document is not rewritten here: the decision
        is the durable record, read back with the clock on load, and the document catches up with
        the next change of its ticket."""
        async with self.store.locks.hold(key):
            current = self.book.clocks.get(key)
            if current is None or not self.book.mine(current):
                return 0
            clock = current.model_copy()
            due_at = clock.next_fire_at()
            kind = clock.fire(now)
            clock, stored = await self._decide(current, clock, kind, None) if kind else (clock, None)
            self.book.put(clock)
        if stored is not None and due_at is not None:
            self.observe_lag((self.now() - due_at).total_seconds())
        return await self._relay(stored)

    async def run_scheduler(self) -> None:
        """Sleep until the nearest due time (bounded), or until a change brings one nearer."""
        while True:
            await self.fire_due()
            self.wake.clear()
            nearest = None if self.suspended else self.book.due.next_at()
            sleep = self.max_sleep_s if nearest is None else (nearest - self.now()).total_seconds()
            if sleep <= 0:
                await asyncio.sleep(0)  # more came due meanwhile: go on, but let handlers run
                continue
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=min(sleep, self.max_sleep_s))
            except TimeoutError:
                pass

    # ------------------------------------------------------------ decisions
    async def _decide(self, before: Clock, clock: Clock, kind: str,
                      calendar: Calendar | None) -> tuple[Clock, dict[str, Any] | None]:
        """Claim the decision `clock` took; returns the clock to keep and the decision when it is
        ours to publish. A lost claim means another process decided first: the clock as it was
        `before` takes that decision instead."""
        slot = "warning" if kind == "warning" else "outcome"
        stored, won = await self.claims.claim(f"{clock.key}:{slot}", topic=topics.SLA_EVENTS, key=clock.ticket_id,
                                              event=self._event(clock, kind), kind=kind)
        if stored["kind"] != kind:
            clock = before.model_copy()
            if calendar is None and clock.calendar_id:
                calendar = await self._calendar_by_id(clock.calendar_id)
            clock.settle(stored["kind"], decided_at(stored), calendar)
        return clock, (stored if won else None)

    async def _relay(self, stored: dict[str, Any] | None) -> int:
        if stored is None:
            return 0
        try:
            await self.claims.relay(stored)
        except Exception:  # stored: the sweeper sends it once Kafka answers again
            log.exception("SLA event %s could not be published yet", stored["_id"])
        return 1

    def _event(self, clock: Clock, kind: str):
        at = {"warning": self.now(), "breached": clock.breached_at, "met": clock.met_at}[kind] or self.now()
        payload = SlaTargetEvent(ticket_id=clock.ticket_id, target=clock.target, policy_id=clock.policy_id,
                                 cycle=clock.cycle, due_at=clock.due_at or clock.breached_at, at=at)
        # deterministic id: a re-sent event is recognisably the same event
        cycle = f"-{clock.cycle}" if clock.cycle else ""
        return make_event(KIND_TO_TYPE[kind], payload, source=self.source, subject=clock.ticket_id,
                          id_=f"sla-{clock.ticket_id}-{clock.target.value}{cycle}-{kind}")

    # ------------------------------------------------------------ ownership
    def owns(self, partition: int | None) -> bool:
        return self.book.owned is None or partition is None or partition in self.book.owned

    async def release(self) -> None:
        """A rebalance starts: stop loading and firing until the partitions are handed out
        again, once the ticket event being applied (if any) is stored, so the next owner loads it."""
        if self._loading is not None:
            self._loading.cancel()
            await asyncio.gather(self._loading, return_exceptions=True)
            self._loading = None
        async with self._handling:
            self.suspended = True

    def own(self, partitions: set[int]) -> asyncio.Task | None:
        """This process now consumes these tickets.events partitions: forget the clocks of the
        others, and load those of partitions new to it (the clocks another process kept until
        now, or this process before a restart) in the background — Kafka does not hear from a
        consumer until its assignment callback returns. Ticket events wait for the load (see
        `ready`); the scheduler fires clocks as they are loaded. Returns the load, if any."""
        lost = (self._loaded | self.book.partitions()) - partitions
        if lost:
            forgotten = self.book.forget_partitions(lost)
            log.info("partitions %s went to another SLA process: %d clock(s) handed over", sorted(lost), forgotten)
        self._loaded &= partitions
        gained = partitions - self._loaded
        self.book.owned = set(partitions)
        self.suspended = False
        if gained or not self._loaded_unpartitioned:
            self.ready.clear()
            self._loading = asyncio.create_task(self._load_until_done(gained), name="sla-load-clocks")
        self.wake.set()
        return self._loading

    async def _load_until_done(self, partitions: set[int]) -> None:
        delay = 0.5
        while True:
            try:
                await self.load(partitions)
                break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("loading the SLA clocks failed; retrying in %.1f s", delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 10.0)
        self._loading = None
        self.ready.set()

    async def load(self, partitions: set[int] | None = None) -> int:
        """Read the clocks of `partitions` (all when None) from MongoDB with the decisions taken
        on them, and hold them; publish decisions whose claimer died before sending them.
        Returns how many clocks were new to this process."""
        started = self.now()
        claims = await self.claims.all_claims()
        by_clock: dict[str, list[dict[str, Any]]] = {}
        for claim in claims:
            by_clock.setdefault(claim["_id"].rsplit(":", 1)[0], []).append(claim)
        calendars: dict[str, Calendar | None] = {}
        count = 0
        async for clock in self.store.all_clocks():
            if clock.partition is None:
                if self._loaded_unpartitioned:
                    continue
            elif partitions is not None and clock.partition not in partitions:
                continue
            if clock.key in self.book.clocks:  # the copy held is the newer one
                continue
            for claim in by_clock.get(clock.key, ()):
                if clock.calendar_id and clock.calendar_id not in calendars:
                    calendars[clock.calendar_id] = await self.store.get_calendar(clock.calendar_id)
                clock.settle(claim.get("kind", ""), decided_at(claim), calendars.get(clock.calendar_id or ""))
            self.book.put(clock)
            count += 1
            if count % 1000 == 0:
                self.wake.set()  # fire what is due among those loaded so far
        self._loaded |= partitions if partitions is not None else self.book.partitions()
        self._loaded_unpartitioned = True
        resent = await self.claims.relay_unsent(claims)
        log.info("loaded %d SLA clock(s) of partitions %s in %.1f s (%d running here now); "
                 "%d decision(s) nobody had sent, sent", count,
                 "all" if partitions is None else sorted(partitions),
                 (self.now() - started).total_seconds(), len(self.book.due), resent)
        self.wake.set()
        return count

    # ------------------------------------------------------------ the per-ticket view
    async def ticket_clocks(self, ticket_id: str) -> list[Clock]:
        """A ticket's clocks: held in memory when this process owns the ticket, otherwise read
        from MongoDB together with the decisions taken on them."""
        if self.book.knows(ticket_id):
            return self.book.of_ticket(ticket_id)
        clocks = await self.store.clocks_of(ticket_id)
        claims = await self.store.claims_of(clocks)
        for clock in clocks:
            for claim in claims:
                if claim["_id"].rsplit(":", 1)[0] == clock.key:
                    clock.settle(claim.get("kind", ""), decided_at(claim),
                                 await self._calendar_by_id(clock.calendar_id))
        return clocks

    async def view(self, clocks: list[Clock]) -> list[dict]:
        """Each target with its due time, state and time used (business time on a calendar).
        A paused clock has no due time — it is only known once the clock runs again — but
        shows since when it is paused and how much of its budget is left."""
        now, out = self.now(), []
        for c in clocks:
            calendar = await self._calendar_by_id(c.calendar_id)
            used = c.used(now, calendar)
            remaining = c.remaining(now, calendar)
            out.append({"target": c.target.value, "cycle": c.cycle or None, "policy_id": c.policy_id,
                        "calendar_id": c.calendar_id, "started_at": c.started_at, "due": c.due_at,
                        "warn_at": c.warn_at, "state": c.state.value, "budget_s": c.budget_s,
                        "used_s": round(used, 3), "remaining_s": None if remaining is None else round(remaining, 3),
                        "paused_at": c.paused_at, "met_at": c.met_at, "breached_at": c.breached_at})
        return out

    async def _calendar_by_id(self, calendar_id: str | None) -> Calendar | None:
        return await self.store.get_calendar(calendar_id) if calendar_id else None
