"""Kafka subscribers of routing: ticket events in, assignment commands out."""
from __future__ import annotations

from faststream.kafka import KafkaRouter

from services.routing.domain import RELEASING_STATUSES
from services.routing.service import RoutingService
from shared import topics
from shared.broker import at_least_once
from shared.events import CloudEvent, EventType, TicketAssigned, TicketCreated, TicketSnapshot


def build_router(service: RoutingService) -> KafkaRouter:
    router = KafkaRouter()

    @router.subscriber(topics.TICKETS_EVENTS, **at_least_once(topics.GROUP_ROUTING),
                       description="Assign new tickets; free capacity when tickets are finished")
    async def route_on_ticket_event(event: CloudEvent) -> None:
        if not event.type.startswith("deskstream.ticket.") or event.type == EventType.TICKET_PURGED:
            return
        ticket = TicketSnapshot.model_validate(event.data.get("ticket"))
        if ticket.status in RELEASING_STATUSES:
            await service.ticket_finished(ticket.id)
        elif event.type == EventType.TICKET_CREATED:
            await service.ticket_created(ticket, TicketCreated.model_validate(event.data).message.text)
        elif event.type == EventType.TICKET_ASSIGNED:
            await service.assigned_elsewhere(ticket.id, TicketAssigned.model_validate(event.data).agent_id)
        elif event.type == EventType.TICKET_UNASSIGNED:
            await service.unassigned(ticket)
        elif event.type == EventType.TICKET_REOPENED:
            await service.route(ticket)

    return router
