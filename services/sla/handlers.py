"""Kafka subscribers of SLA: ticket events start and stop clocks; the partitions this process
is assigned decide which clocks it holds and fires."""
from __future__ import annotations

import logging

from aiokafka import ConsumerRebalanceListener, TopicPartition
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from services.sla.service import SlaService
from shared import topics
from shared.broker import at_least_once
from shared.events import CloudEvent, TicketSnapshot

log = logging.getLogger(__name__)


class ClockOwnership(ConsumerRebalanceListener):
    """Kafka hands every partition of tickets.events to one SLA process; that process alone sees
    those tickets change, so it holds their clocks and fires their timers."""

    def __init__(self, service: SlaService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.service.release()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # quick: the consumer sends no heartbeat until this returns; the clocks load meanwhile
        self.service.own({tp.partition for tp in assigned if tp.topic == topics.TICKETS_EVENTS})


def build_router(service: SlaService) -> KafkaRouter:
    router = KafkaRouter()

    @router.subscriber(topics.TICKETS_EVENTS, **at_least_once(topics.GROUP_SLA), listener=ClockOwnership(service),
                       description="Start, pause, resume and settle SLA clocks from every ticket change")
    async def clock_on_ticket_event(event: CloudEvent, message: KafkaMessage) -> None:
        if not event.type.startswith("deskstream.ticket.") or "ticket" not in event.data:
            return  # e.g. purged: nothing left to time
        ticket = TicketSnapshot.model_validate(event.data["ticket"])
        partition = message.raw_message.partition
        await service.ready.wait()  # the clocks of this partition are loaded
        if not service.owns(partition):
            return  # revoked meanwhile: the partition's new owner applies it
        async with service.handling():
            await service.on_ticket_event(event.type, ticket, event.data, event.time, partition=partition)

    return router
