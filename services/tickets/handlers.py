"""Kafka subscribers of the tickets service: a record in, one service call."""
from __future__ import annotations

from faststream.kafka import KafkaRouter

from services.tickets.delivery.chat import ChatHub, chat_item
from services.tickets.delivery.service import DeliveryService
from services.tickets.service import TicketService
from shared import topics
from shared.broker import at_least_once, broadcast
from shared.events import (
    ApplyAutomation, AssignTicket, Channel, CloudEvent, DeliveryReported, EventType, MessageReceived, SlaTargetEvent, TicketReplied,
)

SLA_STATES = {EventType.SLA_WARNING: "warning", EventType.SLA_BREACHED: "breached", EventType.SLA_MET: "met"}


def build_router(service: TicketService, delivery: DeliveryService | None = None,
                 hub: ChatHub | None = None, consumers: int = 1) -> KafkaRouter:
    """`consumers` > 1: that many Kafka consumers of one group file messages (and apply commands)
    side by side, each on its own partitions; writes to one ticket stay one at a time (the
    service's per-ticket lock)."""
    router = KafkaRouter()

    if delivery is not None:
        @router.subscriber(topics.TICKETS_EVENTS, **at_least_once(topics.GROUP_TICKETS_DELIVERY),
                           description="Deliver agents' replies on the customer's channel")
        async def deliver_reply(event: CloudEvent) -> None:
            if event.type == EventType.TICKET_REPLIED:
                await delivery.on_replied(TicketReplied.model_validate(event.data))

    if hub is not None:
        @router.subscriber(topics.TICKETS_EVENTS, **broadcast(),
                           description="Push chat replies to the widgets connected to this instance")
        async def push_chat_reply(event: CloudEvent) -> None:
            if event.type == EventType.TICKET_REPLIED:
                replied = TicketReplied.model_validate(event.data)
                if replied.ticket.channel == Channel.chat:
                    hub.publish(replied.ticket.id, chat_item(replied.message))

    @router.subscriber(topics.INGEST_MESSAGES, **at_least_once(topics.GROUP_TICKETS), max_workers=consumers,
                       description="File each normalised channel message into exactly one ticket; "
                                   "record providers' delivery reports on the messages we sent")
    async def file_message(event: CloudEvent) -> None:
        if event.type == EventType.MESSAGE_RECEIVED:
            await service.file_message(MessageReceived.model_validate(event.data))
        elif event.type == EventType.DELIVERY_REPORTED and delivery is not None:
            await delivery.on_report(DeliveryReported.model_validate(event.data))

    @router.subscriber(topics.SLA_EVENTS, **at_least_once(topics.GROUP_TICKETS),
                       description="Put SLA warnings, breaches and met targets on the ticket's timeline")
    async def note_sla(event: CloudEvent) -> None:
        if state := SLA_STATES.get(event.type):
            sla = SlaTargetEvent.model_validate(event.data)
            await service.record_sla(event.id, sla.ticket_id, target=sla.target.value, state=state, at=sla.at,
                                     due_at=sla.due_at)

    @router.subscriber(topics.TICKETS_COMMANDS, **at_least_once(topics.GROUP_TICKETS), max_workers=consumers,
                       description="Apply commands other services send (assignments, automation)")
    async def apply_command(event: CloudEvent) -> None:
        if event.type == EventType.ASSIGN_TICKET:
            await service.apply_command(AssignTicket.model_validate(event.data))
        elif event.type == EventType.APPLY_AUTOMATION:
            await service.apply_command(ApplyAutomation.model_validate(event.data))

    return router
