"""SLA use cases: start clocks for new tickets, pause, resume and stop them as the ticket changes,
and a scheduler that turns due clocks into warning and breach events — each exactly once per
target and ticket, across restarts, redeliveries and several SLA processes.

The process consuming partition n of `tickets.events` owns the clocks of its tickets: it holds them
in memory with a due-ordered heap (services/sla/timers.py), loads them when the partition is
assigned, and is the only one to change or fire them. A batch of ticket events, or a round of due
timers, is one unit: its clocks and decisions are written together, then its events are sent, then
the decisions are marked sent. A process taking a partition over sends again what was decided but
not marked (same event ids: consumers drop what they had)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.sla.calendar import Calendar, CalendarError
from services.sla.domain import (
    DEFAULT_POLICY_ID,
    DONE_STATUSES,
    DORMANT_STATUSES,
    WAITING_STATUSES,
    Clock,
    Policy,
    choose_policy,
    clocks_for_new_ticket,
    start_clock,
)
from services.sla.store import SlaStore
from services.sla.timers import ClockBook
from shared import topics
from shared.events import EventType, MessageSummary, SlaTarget, SlaTargetEvent, TicketPurged, TicketSnapshot, utcnow
from shared.kafka import Outgoing, Producer, encode_event, partition_of
from shared.stream import Batch, Record

log = logging.getLogger(__name__)
KIND_TO_TYPE = {"warning": EventType.SLA_WARNING, "breached": EventType.SLA_BREACHED, "met": EventType.SLA_MET}
RETRY_AFTER = timedelta(seconds=1)  # a clock whose decision could not be stored is looked at again
RESEND_AFTER = timedelta(seconds=3)  # a decision not marked sent after this long was lost with its process


def no_event(_: object) -> None:
    """Pausing and resuming change a clock but raise no event."""
    return None


@dataclass
class Unit:
    """What a batch of ticket events, or a round of due timers, writes and sends."""

    new: dict[str, Clock] = field(default_factory=dict)
    changed: dict[str, Clock] = field(default_factory=dict)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    gone: dict[str, tuple[int, list[str]]] = field(default_factory=dict)  # purged ticket → partition, clock keys


def decided_at(decision: dict[str, Any]) -> datetime | None:
    """When a decision says it happened (the answer's time for a met target)."""
    at = decision.get("event_at")
    return datetime.fromisoformat(at) if isinstance(at, str) else None


class SlaService:
    def __init__(
        self,
        *,
        store: SlaStore,
        producer: Producer,
        source: str,
        default_policy: Policy,
        max_sleep_s: float = 1.0,
        clock: Callable[[], datetime] = utcnow,
        fire_batch: int = 500,
        hot_clocks: int | None = 10_000,
    ) -> None:
        self.store = store
        self.producer = producer
        self.source = source
        self.default_policy = default_policy
        self.max_sleep_s = max_sleep_s
        self.now = clock
        self.fire_batch = fire_batch
        self.partitions = 6  # of tickets.events; learnt at start
        self.book = ClockBook(hot=hot_clocks)
        self.book.owned = set()
        self.wake = asyncio.Event()
        self.unsent: list[dict[str, Any]] = []  # decisions found unsent on takeover: sent by the next unit
        self.observe_lag: Callable[[float], None] = lambda seconds: None  # due time -> event sent
        self.handlers = dict.fromkeys(
            (
                EventType.TICKET_CREATED,
                EventType.TICKET_REPLIED,
                EventType.TICKET_MESSAGE_ADDED,
                EventType.TICKET_STATUS_CHANGED,
                EventType.TICKET_REOPENED,
                EventType.TICKET_DELETED,
                EventType.TICKET_RESTORED,
            ),
            self._ticket_event,
        )
        self.handlers[EventType.TICKET_PURGED] = self._ticket_purged

    async def install_default_policy(self) -> None:
        await self.store.ensure_policy(DEFAULT_POLICY_ID, self.default_policy)

    # ------------------------------------------------------------ ownership (shared/stream.py)
    async def load(self, partitions: set[int]) -> Any:
        return {p: await self.store.read_partition(p) for p in partitions}

    def install(self, partitions: set[int], loaded: Any) -> None:
        cutoff = (self.now() - RESEND_AFTER).isoformat()
        count = 0
        for p, (clocks, decisions, sent) in loaded.items():
            by_clock: dict[str, list[dict[str, Any]]] = {}
            for decision in decisions:
                by_clock.setdefault(decision["_id"].rsplit(":", 1)[0], []).append(decision)
                if decision["_id"] not in sent and decision.get("at", "") < cutoff:
                    self.unsent.append({**decision, "partition": p})
            for clock in clocks:
                for decision in by_clock.get(clock.key, ()):
                    clock.settle(decision.get("kind", ""), decided_at(decision))
                clock.partition = p
                self.book.put(clock)
                count += 1
        self.book.owned = (self.book.owned or set()) | partitions
        self.book.cool()
        log.info(
            "holding %d SLA clock(s) of partitions %s (%d running here now); %d decision(s) to send again",
            count,
            sorted(partitions),
            len(self.book.due),
            len(self.unsent),
        )
        self.wake.set()

    def revoke(self, partitions: set[int]) -> None:
        forgotten = self.book.forget_partitions(partitions)
        self.book.owned = (self.book.owned or set()) - partitions
        self.unsent = [d for d in self.unsent if d["partition"] not in partitions]
        if forgotten:
            log.info(
                "partitions %s went to another SLA process: %d clock(s) handed over", sorted(partitions), forgotten
            )

    def owns(self, partition: int) -> bool:
        return partition in (self.book.owned or ())

    # ------------------------------------------------------------ ticket events
    async def process(self, batch: Batch) -> None:
        unit = Unit()
        for record in batch.records:
            if (handler := self.handlers.get(record.type)) is None:
                continue
            try:
                await handler(record, unit)
            except ValueError as exc:  # pydantic's ValidationError included
                batch.reject(record, f"{type(exc).__name__}: {exc}"[:2000])
        await self.commit(unit)

    async def _ticket_event(self, record: Record, unit: Unit) -> None:
        """Every ticket event moves the ticket's clocks: answers stop response clocks, a customer
        message starts a next-response wait, and the status pauses or resumes."""
        if "ticket" not in record.data:
            return
        ticket = TicketSnapshot.model_validate(record.data["ticket"])
        at = (
            datetime.fromisoformat(record.event["time"])
            if isinstance(record.event.get("time"), str)
            else record.timestamp
        )
        p = record.partition
        if record.type == EventType.TICKET_CREATED:
            await self.ticket_created(ticket, p, unit)
        elif record.type == EventType.TICKET_REPLIED:
            await self.agent_replied(ticket.id, MessageSummary.model_validate(record.data["message"]).at, unit)
        elif record.type == EventType.TICKET_MESSAGE_ADDED:
            message = MessageSummary.model_validate(record.data["message"])
            if message.direction == "inbound":
                await self.customer_wrote(ticket, message, p, unit)
        await self.status_is(ticket, at, unit)

    async def _ticket_purged(self, record: Record, unit: Unit) -> None:
        """A purged or erased ticket: its clocks stop and are forgotten, here and in the database (they
        hold nothing personal, but nothing of the ticket is to outlive it)."""
        purged = TicketPurged.model_validate(record.data)
        if keys := self.book.forget_ticket(purged.ticket_id):
            unit.gone[purged.ticket_id] = (record.partition, keys)
            for key in keys:
                unit.new.pop(key, None)
                unit.changed.pop(key, None)
            # decided, not sent: no event is owed about a ticket that is gone
            unit.decisions = [d for d in unit.decisions if d["ticket_id"] != purged.ticket_id]
            self.unsent = [d for d in self.unsent if d["ticket_id"] != purged.ticket_id]

    async def ticket_created(self, ticket: TicketSnapshot, partition: int, unit: Unit) -> None:
        if self.book.knows(ticket.id):
            return  # a redelivered event: its clocks run already
        policy_id, policy = await self._policy_for(ticket)
        calendar = await self._calendar_of(policy_id, policy)
        try:
            clocks = clocks_for_new_ticket(ticket, policy_id, policy, calendar)
        except CalendarError as error:
            # a clock must start: raising would only redeliver the same ticket event forever
            log.warning(
                "policy %s: calendar %s cannot time ticket %s (%s); running around the clock",
                policy_id,
                policy.calendar_id,
                ticket.id,
                error,
            )
            clocks = clocks_for_new_ticket(ticket, policy_id, policy)
        for clock in clocks:
            self._start(clock, partition, unit)

    async def agent_replied(self, ticket_id: str, at: datetime, unit: Unit) -> None:
        for clock in self.book.of_ticket(ticket_id):
            if clock.target != SlaTarget.resolution and not clock.finished:
                await self._apply(clock.key, lambda c, cal: c.answer(at, cal), unit)

    async def customer_wrote(self, ticket: TicketSnapshot, message: MessageSummary, partition: int, unit: Unit) -> None:
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
        clock = start_clock(
            ticket.id,
            SlaTarget.next_response,
            first.policy_id,
            policy,
            policy.next_response_s,
            message.at,
            calendar,
            cycle=message.message_id,
        )
        if not self.book.has(clock.key):
            self._start(clock, partition, unit)

    async def status_is(self, ticket: TicketSnapshot, at: datetime, unit: Unit) -> None:
        """Pause while the ticket waits on the customer (or is spam/deleted), resume when it is
        active again, and settle every open target when it is resolved or closed. A clock that
        was already past its due time when the ticket stopped waiting on the team has breached."""
        for clock in self.book.of_ticket(ticket.id):
            if clock.finished:
                continue
            if ticket.status in DONE_STATUSES:
                await self._apply(clock.key, lambda c, cal: c.answer(at, cal), unit)
            elif ticket.status in WAITING_STATUSES or ticket.status in DORMANT_STATUSES:
                await self._apply(
                    clock.key, lambda c, cal: c.fire(at) if c.overdue(at) else no_event(c.pause(at, cal)), unit
                )
            else:
                await self._apply(clock.key, lambda c, cal: no_event(c.resume(at, cal)), unit)

    def _start(self, clock: Clock, partition: int, unit: Unit) -> None:
        clock.partition = partition
        self.book.put(clock)
        unit.new[clock.key] = clock
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
            log.warning(
                "policy %s names calendar %s, which does not exist; running around the clock",
                policy_id,
                policy.calendar_id,
            )
        return calendar

    async def _apply(self, key: str, change: Callable[[Clock, Calendar | None], str | None], unit: Unit) -> None:
        """Change a clock because its ticket changed; a change that is a decision (a warning, or the one
        outcome: met or breached) becomes a decision record and an event."""
        clock = self.book.get(key)
        if clock is None:
            return
        before = clock.model_dump()
        calendar = await self._calendar_by_id(clock.calendar_id)
        kind = change(clock, calendar)
        if kind:
            self._decide(clock, kind, unit)
        if clock.model_dump() != before and key not in unit.new:
            unit.changed[key] = clock
        self.book.put(clock)
        self.wake.set()

    # ------------------------------------------------------------ scheduler
    async def fire_due(self) -> int:
        """Turn every clock of this process that is due now into its event; returns how many
        events were raised. The caller holds the stream runner's exclusive lock."""
        now = self.now()
        keys = self.book.due.pop_due(now, self.fire_batch)
        if not keys and not self.unsent:
            return 0
        unit = Unit()
        fired = 0
        for key in keys:
            clock = self.book.get(key)
            if clock is None or not self.book.mine(clock):
                continue
            due_at = clock.next_fire_at()
            kind = clock.fire(now)
            self.book.put(clock)
            if kind:
                self._decide(clock, kind, unit)
                fired += 1
                if due_at is not None:
                    self.observe_lag((self.now() - due_at).total_seconds())
        try:
            await self.commit(unit)
        except Exception:
            for key in keys:  # looked at again shortly; the decisions are keyed, so never taken twice
                if self.book.has(key):
                    self.book.due.set(key, now + RETRY_AFTER)
            raise
        return fired

    async def run_scheduler(self, exclusive: Callable[[], AbstractAsyncContextManager[None]]) -> None:
        """Sleep until the nearest due time (bounded), or until a change brings one nearer."""
        while True:
            try:
                async with exclusive():
                    await self.fire_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("SLA timers could not be fired; trying again shortly")
                await asyncio.sleep(RETRY_AFTER.total_seconds())
            self.wake.clear()
            nearest = self.book.due.next_at()
            sleep = self.max_sleep_s if nearest is None else (nearest - self.now()).total_seconds()
            if sleep <= 0:
                await asyncio.sleep(0)  # more came due meanwhile: go on, but let handlers run
                continue
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=min(sleep, self.max_sleep_s))
            except TimeoutError:
                pass

    # ------------------------------------------------------------ decisions
    def _decide(self, clock: Clock, kind: str, unit: Unit) -> None:
        at = {"warning": self.now(), "breached": clock.breached_at, "met": clock.met_at}[kind] or self.now()
        payload = SlaTargetEvent(
            ticket_id=clock.ticket_id,
            target=clock.target,
            policy_id=clock.policy_id,
            cycle=clock.cycle,
            due_at=clock.due_at or clock.breached_at,
            at=at,
        )
        cycle = f"-{clock.cycle}" if clock.cycle else ""
        # deterministic id: a re-sent event is recognisably the same event
        event_id = f"sla-{clock.ticket_id}-{clock.target.value}{cycle}-{kind}"
        record = encode_event(
            KIND_TO_TYPE[kind], payload, source=self.source, subject=clock.ticket_id, id_=event_id, time=self.now()
        )
        slot = "warning" if kind == "warning" else "outcome"
        unit.decisions.append(
            {
                "_id": f"{clock.key}:{slot}",
                "kind": kind,
                "ticket_id": clock.ticket_id,
                "type": KIND_TO_TYPE[kind],
                "record": record.decode(),
                "event_at": at.isoformat(),
                "at": self.now().isoformat(),
                "partition": clock.partition,
            }
        )

    async def commit(self, unit: Unit) -> None:
        """Clocks and decisions first, then the events, then the marks that they were sent. Decisions
        that could not be stored or sent stay pending and go with the next unit."""
        self.unsent = [*self.unsent, *unit.decisions]
        by_partition: dict[int, dict[str, list[Any]]] = {}
        for clock in unit.new.values():
            by_partition.setdefault(clock.partition or 0, {}).setdefault("new", []).append(clock)
        for clock in unit.changed.values():
            by_partition.setdefault(clock.partition or 0, {}).setdefault("changed", []).append(clock)
        for decision in self.unsent:
            by_partition.setdefault(decision["partition"], {}).setdefault("decisions", []).append(
                {k: v for k, v in decision.items() if k != "partition"}
            )
        for p, parts in by_partition.items():
            await self.store.add_clocks(p, parts.get("new", []))
            await self.store.save_clocks(p, parts.get("changed", []))
            await self.store.add_decisions(p, parts.get("decisions", []))
        for p, keys in unit.gone.values():
            await self.store.forget_clocks(p, keys)
        decisions = self.unsent
        if not decisions:
            self.book.cool()
            return
        await self.producer.send_many(
            [Outgoing(topics.SLA_EVENTS, d["ticket_id"], d["record"].encode(), None, d["type"]) for d in decisions]
        )
        self.unsent = []
        sent_at = self.now().isoformat()
        marks: dict[int, list[str]] = {}
        for decision in decisions:
            marks.setdefault(decision["partition"], []).append(decision["_id"])
        for p, ids in marks.items():
            await self.store.mark_sent(p, ids, sent_at)
        self.book.cool()

    # ------------------------------------------------------------ the per-ticket view
    async def ticket_clocks(self, ticket_id: str) -> list[Clock]:
        """A ticket's clocks: held in memory when this process owns the ticket, otherwise read
        from MongoDB together with the decisions taken on them."""
        if self.book.knows(ticket_id):
            return self.book.of_ticket(ticket_id)
        clocks, decisions = await self.store.clocks_of(partition_of(ticket_id, self.partitions), ticket_id)
        for clock in clocks:
            for decision in decisions:
                if decision["_id"].rsplit(":", 1)[0] == clock.key:
                    clock.settle(
                        decision.get("kind", ""), decided_at(decision), await self._calendar_by_id(clock.calendar_id)
                    )
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
            out.append(
                {
                    "target": c.target.value,
                    "cycle": c.cycle or None,
                    "policy_id": c.policy_id,
                    "calendar_id": c.calendar_id,
                    "started_at": c.started_at,
                    "due": c.due_at,
                    "warn_at": c.warn_at,
                    "state": c.state.value,
                    "budget_s": c.budget_s,
                    "used_s": round(used, 3),
                    "remaining_s": None if remaining is None else round(remaining, 3),
                    "paused_at": c.paused_at,
                    "met_at": c.met_at,
                    "breached_at": c.breached_at,
                }
            )
        return out

    async def _calendar_by_id(self, calendar_id: str | None) -> Calendar | None:
        return await self.store.get_calendar(calendar_id) if calendar_id else None
