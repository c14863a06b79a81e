"""Duplicate suspicion and recurring problems, beside the ticket flow: a reader of `tickets.events` of its own.

Every analytics instance reads every partition of `tickets.events` (a `Replica`, as the numbers are read),
so it sees all of a customer's tickets whichever partitions they are on, and all customers' reports of a
product. It keeps in memory the first messages' features of the last 14 days (duplicates.py) and the
problems of the last 7 (problems.py), and nothing else; the tickets service never waits for it (it lags
under a burst, the filing does not).

What it decides goes out as messages: `SuspectDuplicate` to the new ticket's partition of
`tickets.commands` (the tickets process owning it marks it and emits
`deskstream.ticket.duplicate_suspected`), with `MergeTicket`/`CloseMergedTicket` when the score is above
the auto-merge rule (`PUT /v1/settings/duplicates`, else `DUPLICATES_MERGE_ABOVE`);
`deskstream.problem.detected` on `tickets.events` (key = problem id), where
webhooks read. Ids derive from the input, and it acts only on events younger than `act_within`: a
restart replays the topic to rebuild its memory without acting again, and two instances acting on the
same event send the same ids (the ticket applies a command once, consumers drop repeated event ids)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from services.analytics.duplicate_rules import DuplicateSettings
from services.analytics.duplicates import DuplicateIndex, Match
from services.analytics.problems import Problem, ProblemBook
from services.analytics.similar import features
from shared import topics
from shared.events import (
    CloseMergedTicket,
    CustomerChanged,
    CustomerErased,
    EventType,
    MergeTicket,
    ProblemDetected,
    SuspectDuplicate,
    TicketCreated,
    TicketPurged,
    TicketStatusChanged,
    stable_id,
    utcnow,
)
from shared.kafka import Outgoing, Producer, event
from shared.stream import Batch, Record

log = logging.getLogger(__name__)

JUNK = frozenset({"spam", "deleted"})
GONE = frozenset({"closed", "spam", "deleted"})


def _time(value: Any) -> datetime:
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return at


class SimilarTickets:
    def __init__(
        self,
        *,
        producer: Producer,
        source: str,
        duplicates: DuplicateIndex | None = None,
        problems: ProblemBook | None = None,
        act_within: timedelta = timedelta(minutes=10),
        merge_above: float | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.producer = producer
        self.source = source
        self.duplicates = duplicates or DuplicateIndex()
        self.problems = problems or ProblemBook()
        self.act_within = act_within
        self.merge_above = merge_above
        self.clock = clock
        self.positions: dict[tuple[str, int], int] = {}
        self.suspected = 0
        self.detected = 0
        self._expired_at: datetime | None = None
        self.handlers: dict[str, Callable[[Record, list[Outgoing]], None]] = {
            EventType.TICKET_CREATED: self._created,
            EventType.TICKET_STATUS_CHANGED: self._status,
            EventType.TICKET_REOPENED: self._status,
            EventType.TICKET_DELETED: self._status,
            EventType.TICKET_RESTORED: self._status,
            EventType.TICKET_PURGED: self._purged,
            EventType.CUSTOMER_CHANGED: self._customer_changed,
            EventType.CUSTOMER_ERASED: self._customer_erased,
        }

    def apply(self, rule: DuplicateSettings) -> None:
        """The admin's rule (services/analytics/duplicate_rules.py), from the next new ticket on."""
        self.duplicates.threshold = rule.suspect_above
        self.merge_above = rule.merge_above

    @property
    def types(self) -> frozenset[str]:
        return frozenset(self.handlers)

    async def load(self) -> dict[tuple[str, int], int]:
        """Nothing is stored: the topic is read from its start (its retention bounds the work), acting on
        nothing older than `act_within`."""
        return {}

    async def process(self, batch: Batch) -> None:
        out: list[Outgoing] = []
        for record in batch.records:
            handle = self.handlers.get(record.type)
            if handle is None:
                continue
            try:
                handle(record, out)
            except ValueError as exc:  # pydantic's ValidationError included
                batch.reject(record, f"{type(exc).__name__}: {exc}"[:2000])
        now = self.clock()
        if self._expired_at is None or now - self._expired_at > timedelta(minutes=1):
            self._expired_at = now
            self.duplicates.expire(now)
            self.problems.expire(now)
        if out:
            await self.producer.send_many(out)

    # ------------------------------------------------------------ what each event changes

    def _created(self, record: Record, out: list[Outgoing]) -> None:
        created = TicketCreated.model_validate(record.data)
        ticket = created.ticket
        now = self.clock()
        if now - ticket.created_at > self.duplicates.window or ticket.status in JUNK:
            return  # older than anything either read model keeps
        f = features(created.message.text)
        acting = now - _time(record.event["time"]) <= self.act_within
        match = self.duplicates.match(ticket.customer_id, ticket.id, f, ticket.created_at)
        self.duplicates.add(ticket.customer_id, ticket.id, f, ticket.created_at)
        if match is not None and acting:
            self.suspected += 1
            out.extend(self._suspect(created, match))
        if now - ticket.created_at > self.problems.window:
            return
        problem = self.problems.add(
            ticket_id=ticket.id,
            customer_id=ticket.customer_id,
            at=ticket.created_at,
            channel=ticket.channel.value,
            language=ticket.language,
            features=f,
        )
        if problem is not None and acting:
            self.detected += 1
            out.append(self._detected(problem, now))

    def _status(self, record: Record, out: list[Outgoing]) -> None:
        change = TicketStatusChanged.model_validate(record.data)
        ticket_id, to = change.ticket.id, change.to_status
        at = _time(record.event["time"])
        if to == "resolved":
            self.duplicates.finished(ticket_id, at)
        elif to in GONE:
            self.duplicates.finished(ticket_id, at, gone=True)
        else:
            self.duplicates.finished(ticket_id, None)
        if to in JUNK:
            self.problems.remove(ticket_id)

    def _purged(self, record: Record, out: list[Outgoing]) -> None:
        purged = TicketPurged.model_validate(record.data)
        self.duplicates.forget(purged.ticket_id)
        self.problems.remove(purged.ticket_id)

    def _customer_changed(self, record: Record, out: list[Outgoing]) -> None:
        change = CustomerChanged.model_validate(record.data)
        if change.merged_into and change.merged_into != change.customer_id:
            self.duplicates.merge_customers(change.customer_id, change.merged_into)

    def _customer_erased(self, record: Record, out: list[Outgoing]) -> None:
        erased = CustomerErased.model_validate(record.data)
        for customer_id in (erased.customer_id, *erased.merged_ids):
            self.duplicates.forget_customer(customer_id)
        for ticket_id in erased.ticket_ids:
            self.problems.remove(ticket_id)

    # ------------------------------------------------------------ what goes out

    def _suspect(self, created: TicketCreated, match: Match) -> list[Outgoing]:
        ticket = created.ticket
        now = self.clock()
        key = stable_id("duplicate", ticket.id, size=24)
        records = [
            self._command(
                EventType.SUSPECT_DUPLICATE,
                SuspectDuplicate(
                    command_id=key,
                    ticket_id=ticket.id,
                    duplicate_of=match.ticket_id,
                    score=match.score,
                    signals=list(match.signals),
                ),
                now,
            )
        ]
        if self.merge_above is not None and match.score >= self.merge_above:
            records.append(
                self._command(
                    EventType.MERGE_TICKET,
                    MergeTicket(
                        command_id=key + ":merge",
                        ticket_id=match.ticket_id,
                        other_id=ticket.id,
                        other_tags=ticket.tags,
                        other_inbound=1,
                        moved_message_ids=[created.message.message_id],
                        actor="duplicates",
                    ),
                    now,
                )
            )
            records.append(
                self._command(
                    EventType.CLOSE_MERGED_TICKET,
                    CloseMergedTicket(
                        command_id=key + ":merge:close",
                        ticket_id=ticket.id,
                        survivor_id=match.ticket_id,
                        actor="duplicates",
                    ),
                    now,
                )
            )
        return records

    def _command(self, type_: str, cmd: Any, now: datetime) -> Outgoing:
        return event(
            topics.TICKETS_COMMANDS,
            cmd.ticket_id,
            type_,
            cmd,
            source=self.source,
            subject=cmd.ticket_id,
            id_=stable_id(type_, cmd.command_id, size=24),
            time=now,
        )

    def _detected(self, problem: Problem, now: datetime) -> Outgoing:
        view = problem.view(sample=20)
        detected = ProblemDetected(
            problem_id=problem.id,
            label=view["label"],
            product=problem.product,
            fault=problem.fault,
            tickets=view["tickets"],
            customers=view["customers"],
            ticket_ids=view["ticket_ids"],
            skus=view["skus"],
            order_ids=view["order_ids"],
            channels=view["channels"],
            languages=view["languages"],
            first_seen=view["first_seen"],
            last_seen=view["last_seen"],
            at=now,
        )
        return event(
            topics.TICKETS_EVENTS,
            problem.id,
            EventType.PROBLEM_DETECTED,
            detected,
            source=self.source,
            subject=problem.id,
            id_=stable_id("problem-detected", problem.id, size=24),
            time=now,
        )

    # ------------------------------------------------------------ what readers see

    def listing(self, *, limit: int = 50) -> list[dict[str, Any]]:
        since = self.clock() - timedelta(days=1)
        return [p.view(since=since) for p in self.problems.active()[:limit]]

    def problem(self, problem_id: str) -> dict[str, Any] | None:
        found = self.problems.find(problem_id)
        return None if found is None else found.view(sample=None, since=self.clock() - timedelta(days=1))

    def top_today(self, n: int = 5) -> list[dict[str, Any]]:
        """The problems with most tickets in the last 24 hours."""
        views = [v for v in self.listing(limit=1000) if v["tickets_today"]]
        return sorted(views, key=lambda v: (-v["tickets_today"], v["id"]))[:n]
