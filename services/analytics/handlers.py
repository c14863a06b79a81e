"""Kafka subscribers of analytics: every ticket and SLA event becomes facts."""
from __future__ import annotations

from faststream.kafka import KafkaRouter

from services.analytics.service import AnalyticsService
from shared import topics
from shared.broker import at_least_once
from shared.events import CloudEvent


def build_router(service: AnalyticsService) -> KafkaRouter:
    router = KafkaRouter()

    @router.subscriber(topics.TICKETS_EVENTS, **at_least_once(topics.GROUP_ANALYTICS),
                       description="Ticket facts for the read model")
    async def count_ticket_event(event: CloudEvent) -> None:
        await service.apply(event)

    @router.subscriber(topics.SLA_EVENTS, **at_least_once(topics.GROUP_ANALYTICS),
                       description="SLA facts for the read model")
    async def count_sla_event(event: CloudEvent) -> None:
        await service.apply(event)

    return router
