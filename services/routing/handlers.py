"""Kafka subscribers of routing: ticket events in, assignment commands out."""
from __future__ import annotations

from faststream.kafka import KafkaRouter

from services.routing.domain import RELEASING_STATUSES
from services.routing.service import RoutingService
from shared import topics
from shared.broker import at_least_once
from shared.events import CloudEvent, EventType, TicketCreated, TicketStatusChanged


def build_router(service: RoutingService) -> KafkaRouter:
    router = KafkaRouter()

    @router.subscriber(topics.TICKETS_EVENTS, **at_least_once(topics.GROUP_ROUTING),
                       description="Assign new tickets; free capacity when tickets are finished")
    async def route_on_ticket_event(event: CloudEvent) -> None:
        if event.type == EventType.TICKET_CREATED:
            await service.route(TicketCreated.model_validate(event.data).ticket)
        elif event.type == EventType.TICKET_STATUS_CHANGED:
            change = TicketStatusChanged.model_validate(event.data)
            if change.to_status in RELEASING_STATUSES:
                await service.ticket_finished(change.ticket.id)

    return router
