"""Kafka subscribers of routing: ticket events and SLA events in, assignment and automation commands out."""
from __future__ import annotations

from faststream.kafka import KafkaRouter

from services.routing.domain import RELEASING_STATUSES
from services.routing.escalation import SlaKind
from services.routing.service import RoutingService
from shared import topics
from shared.broker import at_least_once
from shared.events import CloudEvent, EventType, SlaTargetEvent, TicketAssigned, TicketCreated, TicketSnapshot

SLA_KINDS = {EventType.SLA_WARNING: SlaKind.warning, EventType.SLA_BREACHED: SlaKind.breached}


def build_router(service: RoutingService) -> KafkaRouter:
    router = KafkaRouter()

    @router.subscriber(topics.TICKETS_EVENTS, **at_least_once(topics.GROUP_ROUTING),
                       description="Assign new tickets; free capacity when tickets are finished")
    async def route_on_ticket_event(event: CloudEvent) -> None:
        if not event.type.startswith("deskstream.ticket.") or event.type == EventType.TICKET_PURGED:
            return
        ticket = TicketSnapshot.model_validate(event.data.get("ticket"))
        if ticket.status in RELEASING_STATUSES:
            await service.ticket_finished(ticket)
        elif event.type == EventType.TICKET_CREATED:
            await service.ticket_created(ticket, TicketCreated.model_validate(event.data).message.text)
        elif event.type == EventType.TICKET_ASSIGNED:
            await service.assigned_elsewhere(ticket, TicketAssigned.model_validate(event.data).agent_id)
        elif event.type == EventType.TICKET_UNASSIGNED:
            await service.unassigned(ticket)
        elif event.type == EventType.TICKET_REOPENED:
            await service.reopened(ticket)
        elif event.type in (EventType.TICKET_PRIORITY_CHANGED, EventType.TICKET_TAGS_CHANGED):
            await service.ticket_changed(ticket)

    @router.subscriber(topics.SLA_EVENTS, **at_least_once(topics.GROUP_ROUTING),
                       description="Escalate tickets on SLA warnings and breaches, as admins configured")
    async def escalate_on_sla_event(event: CloudEvent) -> None:
        if kind := SLA_KINDS.get(event.type):
            await service.sla_event(event.id, kind, SlaTargetEvent.model_validate(event.data))

    return router
