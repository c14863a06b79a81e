"""A tickets process owning every partition, in this test process, on the real MongoDB-wire server:
records are handed to its processor as Kafka would, and what it sends is kept (commands it sends to
itself — forwarded messages, deliveries — are handed back to it)."""
from __future__ import annotations

from datetime import UTC, datetime

from services.tickets.domain import ThreadingPolicy
from services.tickets.processor import TicketsProcessor
from services.tickets.store import TicketStore
from services.tickets.views import load_ticket
from shared import topics
from shared.events import ChangeTicketStatus, EventType, MessageReceived, RecordDelivery, ReplyToTicket
from shared.kafka import partition_of
from tests.unit.memory import Records, SentRecords, run

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class Tickets:
    """One tickets process owning every partition, on the real MongoDB-wire server; what it sends is kept."""

    def __init__(self, store: TicketStore) -> None:
        self.store, self.sent, self.records, self.now = store, SentRecords(), Records(), T0
        self.processor = TicketsProcessor(store=store, producer=self.sent, bootstrap_servers="unused", source="test",
                                          threading=ThreadingPolicy(window_s=3600, reopen_window_s=3600),
                                          clock=lambda: self.now)
        self.processor.install(set(range(6)), {p: ({}, {}) for p in range(6)})

    async def file(self, msg: MessageReceived) -> str:
        record = self.records.record(topics.INGEST_MESSAGES, EventType.MESSAGE_RECEIVED, msg,
                                     partition=partition_of(msg.thread_key, 6), key=msg.thread_key, at=self.now)
        batch = await run(self.processor, record)
        assert batch.rejected == []
        await self._forwarded()  # what went to another partition
        return (await self.store.entry(msg.message_id))["ticket_id"]

    async def status(self, ticket_id: str, status: str) -> None:
        command = ChangeTicketStatus(command_id=f"status-{ticket_id}-{status}", ticket_id=ticket_id, status=status,
                                     actor="a1")
        await run(self.processor, self.records.record(topics.TICKETS_COMMANDS, EventType.CHANGE_TICKET_STATUS, command,
                                                      partition=partition_of(ticket_id, 6), key=ticket_id, at=self.now))

    async def load(self, ticket_id: str):
        return await load_ticket(self.store, ticket_id)

    async def command(self, type_: str, command) -> None:
        await run(self.processor, self.records.record(topics.TICKETS_COMMANDS, type_, command,
                                                      partition=partition_of(command.ticket_id, 6),
                                                      key=command.ticket_id, at=self.now))

    async def reply(self, ticket_id: str, text: str, message_id: str = "out_1") -> dict:
        """An agent's reply; returns its `deskstream.ticket.replied` event's data."""
        await self.command(EventType.REPLY_TO_TICKET, ReplyToTicket(
            command_id=message_id, ticket_id=ticket_id, message_id=message_id, agent_id="a1", text=text))
        return [e for e in self.sent.events(topics.TICKETS_EVENTS) if e["type"] == EventType.TICKET_REPLIED][-1]["data"]

    async def record_delivery(self, command: RecordDelivery) -> None:
        """What the delivery tells the ticket (a command to its partition)."""
        await self.command(EventType.RECORD_DELIVERY, command)

    async def ingest(self, type_: str, data, key: str) -> None:
        """A record on `ingest.messages`, and whatever it sends on to a ticket's partition."""
        await run(self.processor, self.records.record(topics.INGEST_MESSAGES, type_, data,
                                                      partition=partition_of(key, 6), key=key, at=self.now))
        await self._forwarded()

    async def _forwarded(self) -> None:
        for forwarded in self.sent.events(topics.TICKETS_COMMANDS):
            self.sent.records = [r for r in self.sent.records if r.topic != topics.TICKETS_COMMANDS]
            await run(self.processor, self.records.record(topics.TICKETS_COMMANDS, forwarded["type"], forwarded["data"],
                                                          partition=partition_of(forwarded["subject"], 6),
                                                          key=forwarded["subject"], at=self.now))


