"""Kafka subscribers of SLA: ticket events start and stop clocks."""
from __future__ import annotations

from faststream.kafka import KafkaRouter

from services.sla.service import SlaService
from shared import topics
from shared.broker import at_least_once
from shared.events import CloudEvent, EventType, TicketCreated, TicketReplied


def build_router(service: SlaService) -> KafkaRouter:
    router = KafkaRouter()

    @router.subscriber(topics.TICKETS_EVENTS, **at_least_once(topics.GROUP_SLA),
                       description="Start SLA clocks for new tickets, stop them when an agent answers")
    async def clock_on_ticket_event(event: CloudEvent) -> None:
        if event.type == EventType.TICKET_CREATED:
            await service.ticket_created(TicketCreated.model_validate(event.data).ticket)
        elif event.type == EventType.TICKET_REPLIED:
            replied = TicketReplied.model_validate(event.data)
            await service.agent_replied(replied.ticket.id, replied.message.at)

    return router
