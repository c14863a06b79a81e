"""Kafka subscribers of SLA: ticket events start and stop clocks."""
from __future__ import annotations

from faststream.kafka import KafkaRouter

from services.sla.service import SlaService
from shared import topics
from shared.broker import at_least_once
from shared.events import CloudEvent, TicketSnapshot


def build_router(service: SlaService) -> KafkaRouter:
    router = KafkaRouter()

    @router.subscriber(topics.TICKETS_EVENTS, **at_least_once(topics.GROUP_SLA),
                       description="Start, pause, resume and settle SLA clocks from every ticket change")
    async def clock_on_ticket_event(event: CloudEvent) -> None:
        if not event.type.startswith("deskstream.ticket.") or "ticket" not in event.data:
            return  # e.g. purged: nothing left to time
        ticket = TicketSnapshot.model_validate(event.data["ticket"])
        await service.on_ticket_event(event.type, ticket, event.data, event.time)

    return router
