"""Routing's reading of ticket and SLA events, partitioned like them: what a new ticket needs
(automation rules, a knowledge-base answer), and which changes the dispatcher must hear of.

It holds no state: the work that can be split by ticket (rules, article search) is done here by
whichever routing process owns the ticket's partition; who carries which ticket is the
dispatcher's (services/routing/dispatch.py), told by records on `routing.dispatch`. Routing's own
assignments coming back as `deskstream.ticket.assigned` are not read again."""

from __future__ import annotations

import logging
from typing import Any

from services.routing.domain import UNDETERMINED_LANGUAGE, needs_of
from services.routing.kb import best_answer
from services.routing.rules import Facts, evaluate
from services.routing.store import RoutingStore
from shared import topics
from shared.events import (
    ApplyAutomation,
    EscalateTicket,
    EventType,
    KeepTicketWithAgent,
    ReleaseTicket,
    RouteTicket,
    SlaTargetEvent,
    TicketAssigned,
    TicketChangedForRouting,
    TicketCreated,
    TicketPurged,
    TicketSnapshot,
    TicketStatusChanged,
    TicketUnassigned,
    stable_id,
)
from shared.kafka import Outgoing, Producer, event
from shared.stream import Batch, Record

log = logging.getLogger(__name__)
RELEASING_STATUSES = frozenset({"resolved", "closed", "spam", "deleted"})
STATUS_TYPES = (
    EventType.TICKET_STATUS_CHANGED,
    EventType.TICKET_DELETED,
    EventType.TICKET_RESTORED,
    EventType.TICKET_REOPENED,
)
SLA_KINDS = {EventType.SLA_WARNING: "warning", EventType.SLA_BREACHED: "breached"}


class RoutingProcessor:
    def __init__(self, *, store: RoutingStore, producer: Producer, source: str) -> None:
        self.store = store
        self.producer = producer
        self.source = source
        self.handlers = {
            EventType.TICKET_CREATED: self._created,
            EventType.TICKET_ASSIGNED: self._assigned,
            EventType.TICKET_UNASSIGNED: self._unassigned,
            **dict.fromkeys(STATUS_TYPES, self._status),
            EventType.TICKET_PURGED: self._purged,
            EventType.TICKET_PRIORITY_CHANGED: self._changed,
            EventType.TICKET_TAGS_CHANGED: self._changed,
            EventType.SLA_WARNING: self._sla,
            EventType.SLA_BREACHED: self._sla,
        }

    async def load(self, partitions: set[int]) -> None:
        return None

    def install(self, partitions: set[int], loaded: Any) -> None:
        pass

    def revoke(self, partitions: set[int]) -> None:
        pass

    async def process(self, batch: Batch) -> None:
        out: list[Outgoing] = []
        for record in batch.records:
            if (handler := self.handlers.get(record.type)) is None:
                continue
            try:
                await handler(record, out)
            except ValueError as exc:  # pydantic's ValidationError included
                batch.reject(record, f"{type(exc).__name__}: {exc}"[:2000])
        if out:
            await self.producer.send_many(out)

    # ------------------------------------------------------------ ticket events
    async def _created(self, record: Record, out: list[Outgoing]) -> None:
        """Run the automation rules on a new ticket, then ask the dispatcher for an agent."""
        created = TicketCreated.model_validate(record.data)
        ticket, text = created.ticket, created.message.text
        outcome = evaluate(
            await self.store.all_rules(),
            Facts(
                channel=ticket.channel.value,
                language=ticket.language,
                text=text,
                tags=ticket.tags,
                customer_id=ticket.customer_id,
                priority=ticket.priority,
            ),
        )
        if outcome.fired:
            reply = reply_source = None
            if outcome.kb_min_score is not None and not outcome.spam:
                language = None if ticket.language == UNDETERMINED_LANGUAGE else ticket.language  # any article
                found = best_answer(await self.store.all_articles(language), text, language, outcome.kb_min_score)
                if found:
                    article_id, article, score = found
                    reply, reply_source = article.body, f"kb:{article_id}"
                    log.info("ticket %s answered from %s (score %.2f)", ticket.id, reply_source, score)
            command = ApplyAutomation(
                command_id=stable_id("automation", ticket.id),
                ticket_id=ticket.id,
                rules=outcome.fired,
                priority=outcome.priority.value if outcome.priority else None,
                add_tags=outcome.add_tags,
                mark_spam=outcome.spam,
                team=outcome.team,
                reply=reply,
                reply_source=reply_source,
            )
            out.append(
                event(
                    topics.TICKETS_COMMANDS,
                    ticket.id,
                    EventType.APPLY_AUTOMATION,
                    command,
                    source=self.source,
                    subject=ticket.id,
                    id_=command.command_id,
                    time=record.timestamp,
                )
            )
        if outcome.spam:
            return  # spam waits for nobody
        ticket = ticket.model_copy(
            update={  # as it is about to be, for escalations and the queue
                "priority": outcome.priority.value if outcome.priority else ticket.priority,
                "tags": [*ticket.tags, *outcome.add_tags],
                "team": outcome.team or ticket.team,
            }
        )
        needs = needs_of(ticket, outcome.skills, outcome.team)
        self._tell(
            out,
            record,
            EventType.ROUTE_TICKET,
            RouteTicket(request_id=record.event["id"], ticket=ticket, needs=needs.model_dump()),
        )

    async def _assigned(self, record: Record, out: list[Outgoing]) -> None:
        assigned = TicketAssigned.model_validate(record.data)
        if assigned.actor in (None, "routing"):
            return  # the dispatcher's own decision coming back
        self._tell(
            out,
            record,
            EventType.KEEP_TICKET_WITH_AGENT,
            KeepTicketWithAgent(request_id=record.event["id"], ticket=assigned.ticket, agent_id=assigned.agent_id),
        )

    async def _unassigned(self, record: Record, out: list[Outgoing]) -> None:
        taken_off = TicketUnassigned.model_validate(record.data)
        self._tell(
            out,
            record,
            EventType.RELEASE_TICKET,
            ReleaseTicket(request_id=record.event["id"], ticket_id=taken_off.ticket.id, reroute=True),
        )

    async def _status(self, record: Record, out: list[Outgoing]) -> None:
        change = TicketStatusChanged.model_validate(record.data)
        if change.to_status in RELEASING_STATUSES:
            self._tell(
                out,
                record,
                EventType.RELEASE_TICKET,
                ReleaseTicket(request_id=record.event["id"], ticket_id=change.ticket.id),
            )
        elif change.from_status in RELEASING_STATUSES:  # reopened or restored: it needs someone again
            self._tell(
                out,
                record,
                EventType.ROUTE_TICKET,
                RouteTicket(
                    request_id=record.event["id"], ticket=change.ticket, needs=needs_of(change.ticket).model_dump()
                ),
            )

    async def _purged(self, record: Record, out: list[Outgoing]) -> None:
        purged = TicketPurged.model_validate(record.data)
        self._tell(
            out,
            record,
            EventType.RELEASE_TICKET,
            ReleaseTicket(
                request_id=record.event["id"],
                ticket_id=purged.ticket_id,
                forget_customer=purged.customer_id if purged.reason == "erasure" else None,
            ),
        )

    async def _changed(self, record: Record, out: list[Outgoing]) -> None:
        ticket = TicketSnapshot.model_validate(record.data.get("ticket"))
        self._tell(
            out,
            record,
            EventType.TICKET_CHANGED_FOR_ROUTING,
            TicketChangedForRouting(request_id=record.event["id"], ticket=ticket),
        )

    async def _sla(self, record: Record, out: list[Outgoing]) -> None:
        sla = SlaTargetEvent.model_validate(record.data)
        if not await self.store.all_escalations():
            return  # nothing configured: the dispatcher need not hear of it
        self._tell(
            out,
            record,
            EventType.ESCALATE_TICKET,
            EscalateTicket(request_id=record.event["id"], kind=SLA_KINDS[record.type], sla=sla),
        )

    def _tell(self, out: list[Outgoing], record: Record, type_: str, request: Any) -> None:
        ticket_id = record.event.get("subject") or ""
        out.append(
            event(
                topics.ROUTING_DISPATCH,
                ticket_id,
                type_,
                request,
                source=self.source,
                subject=ticket_id,
                id_=stable_id(type_, request.request_id, size=24),
                time=record.timestamp,
            )
        )
