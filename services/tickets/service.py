"""Ticket use cases: load → decide in the domain → save with events → publish."""
from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from services.tickets.domain import (
    CustomerInfo, DeliveryState, Event, LifecycleError, Priority, Status, ThreadingPolicy, Ticket, continues, ticket_id_for,
)
from services.tickets.store import Purged, TicketStore, VersionConflict
from shared import topics
from shared.broker import PoisonMessage
from shared.events import (
    ApplyAutomation, AssignTicket, Attachment, CloudEvent, EventType, MessageReceived, TicketPurged, make_event, stable_id, utcnow,
)
from shared.outbox import Outbox

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8


class NotFound(Exception):
    pass


class TicketService:
    def __init__(self, *, store: TicketStore, outbox: Outbox, source: str,
                 threading: ThreadingPolicy | None = None, clock: Callable[[], datetime] = utcnow) -> None:
        self.threading = threading or ThreadingPolicy()
        self.store = store
        self.outbox = outbox
        self.locks = outbox.locks  # one writer per ticket (see shared/locks.py)
        self.source = source
        self.clock = clock

    # ------------------------------------------------------------ inbound messages
    async def file_message(self, msg: MessageReceived) -> str:
        """File a customer message into exactly one ticket (idempotent)."""
        known = await self.store.ticket_of_message(msg.message_id)
        if known:
            async with self.locks.hold(known):
                await self._relay(known)  # a crash may have left its events unsent
            return known
        now = self.clock()
        customer = await self.store.resolve_customer(msg.customer.name, msg.customer.identities, now,
                                                     locks=self.locks)
        async with self.locks.hold(msg.thread_key):
            return await self._file(msg, customer, now)

    async def _file(self, msg: MessageReceived, customer: CustomerInfo, now: datetime) -> str:
        for _ in range(MAX_ATTEMPTS):
            target = await self._find_ticket(msg, customer) or await self.store.claim_thread(
                msg.thread_key, candidate=ticket_id_for(msg.message_id), replacing=None)
            follows: str | None = None
            new_ticket = False
            async with self.locks.hold(target):
                try:
                    ticket = await self.store.load(target)
                except Purged:  # its old ticket is gone: the customer starts afresh
                    ticket, new_ticket = None, True
                if new_ticket:
                    filed = None
                elif ticket is None or continues(ticket, msg, now=now, policy=self.threading):
                    filed = await self._file_into(msg, target, ticket, customer, now)
                else:  # closed, or quiet for too long: the conversation goes on in a new ticket
                    filed, follows, new_ticket = None, ticket.id, True
            if new_ticket:
                new_id = ticket_id_for(msg.message_id)
                async with self.locks.hold(new_id):
                    filed = await self._file_into(msg, new_id, await self.store.load(new_id), customer, now,
                                                  follows=follows)
                await self.store.claim_thread(msg.thread_key, candidate=new_id, replacing=target)
            if filed:
                await self.store.index_external(msg.channel.value, msg.external_id, filed)
                await self.store.index_message(msg.message_id, filed)
                return filed
        raise RuntimeError(f"could not file {msg.message_id}: too much contention on its ticket")

    async def _find_ticket(self, msg: MessageReceived, customer: CustomerInfo) -> str | None:
        """The ticket a message names or answers: a quoted ticket reference (only the
        customer's own), a message it replies to, or its conversation's current ticket."""
        if msg.ticket_ref:
            try:
                quoted = await self.store.load(msg.ticket_ref)
            except Purged:
                quoted = None
            if quoted and quoted.customer.id == customer.id:
                return quoted.id
        for ref in [msg.in_reply_to, *reversed(msg.references)]:
            if ref and (found := await self.store.ticket_of_external(msg.channel.value, ref)):
                return found
        return await self.store.thread_ticket(msg.thread_key)

    async def _file_into(self, msg: MessageReceived, ticket_id: str, ticket: Ticket | None,
                         customer: CustomerInfo, now: datetime, follows: str | None = None) -> str | None:
        """Create the ticket or add the message to it; None when another writer got in first."""
        try:
            if ticket is None:
                ticket, events = Ticket.open_from(msg, ticket_id=ticket_id, customer=customer, now=now,
                                                  follows=follows)
                await self._save(ticket, events, expected_version=None)
            else:
                version = ticket.version
                ticket.customer.tier = customer.tier  # the tier as of the customer's latest message
                if events := ticket.receive(msg, now=now):
                    await self._save(ticket, events, expected_version=version)
        except VersionConflict:
            return None
        return ticket.id

    # ------------------------------------------------------------ commands and agent actions
    async def apply_command(self, command: AssignTicket | ApplyAutomation) -> None:
        if await self.store.command_applied(command.ticket_id, command.command_id):
            async with self.locks.hold(command.ticket_id):
                await self._relay(command.ticket_id)
            return
        if isinstance(command, AssignTicket):
            def decide(t: Ticket, now: datetime) -> list[Event]:
                return t.assign(command.agent_id, actor="routing", now=now, reason=command.reason,
                                team=command.team)
        else:
            def decide(t: Ticket, now: datetime) -> list[Event]:
                return t.automate(rules=command.rules, priority=command.priority, add_tags=command.add_tags,
                                  mark_spam=command.mark_spam, now=now)
        try:
            await self._change(command.ticket_id, decide, command_id=command.command_id)
        except NotFound as exc:
            raise PoisonMessage(f"ticket {command.ticket_id} does not exist") from exc
        except LifecycleError as exc:
            log.info("assignment of %s skipped: %s", command.ticket_id, exc)

    async def reply(self, ticket_id: str, *, agent_id: str, text: str, request_id: str | None,
                    html: str | None = None, attachments: list[Attachment] | None = None) -> Ticket:
        message_id = "out_" + stable_id(ticket_id, request_id or uuid.uuid4().hex, agent_id, size=24)
        return await self._change(ticket_id, lambda t, now: t.reply(
            agent_id=agent_id, text=text, message_id=message_id, now=now, html=html, attachments=attachments))

    async def change_status(self, ticket_id: str, *, status: Status, actor: str,
                            until: datetime | None) -> Ticket:
        return await self._change(ticket_id, lambda t, now: t.change_status(status, actor=actor, now=now, until=until))

    async def note(self, ticket_id: str, *, author: str, text: str, request_id: str | None) -> Ticket:
        note_id = "note_" + stable_id(ticket_id, request_id or uuid.uuid4().hex, author, size=20)
        return await self._change(ticket_id, lambda t, now: t.add_note(author=author, text=text, note_id=note_id,
                                                                       now=now))

    async def set_priority(self, ticket_id: str, *, priority: Priority, actor: str) -> Ticket:
        return await self._change(ticket_id, lambda t, now: t.set_priority(priority, actor=actor, now=now))

    async def change_tags(self, ticket_id: str, *, add: list[str], remove: list[str], actor: str) -> Ticket:
        return await self._change(ticket_id, lambda t, now: t.change_tags(add=add, remove=remove, actor=actor,
                                                                          now=now))

    async def assign(self, ticket_id: str, *, agent_id: str, actor: str) -> Ticket:
        return await self._change(ticket_id, lambda t, now: t.assign(agent_id, actor=actor, now=now))

    async def unassign(self, ticket_id: str, *, actor: str) -> Ticket:
        return await self._change(ticket_id, lambda t, now: t.unassign(actor=actor, now=now))

    async def purge(self, ticket_id: str, *, actor: str) -> None:
        async with self.locks.hold(ticket_id):
            try:
                ticket = await self.store.load(ticket_id)
            except Purged:
                return
            if ticket is None:
                raise NotFound(ticket_id)
            ticket.check_purgeable()
            now = self.clock()
            event = self._cloud_event(ticket.id, EventType.TICKET_PURGED, TicketPurged(
                ticket_id=ticket.id, customer_id=ticket.customer.id, actor=actor, at=now))
            await self.outbox.relay(await self.store.purge(ticket, event, now))

    async def record_delivery(self, ticket_id: str, *, message_id: str, state: DeliveryState, detail: str | None,
                              provider_id: str | None, attempts: int, next_attempt_at: datetime | None = None) -> Ticket:
        return await self._change(ticket_id, lambda t, now: t.record_delivery(
            message_id, state=state, detail=detail, provider_id=provider_id, attempts=attempts, now=now,
            next_attempt_at=next_attempt_at))

    async def wake_postponed(self) -> int:
        woken = 0
        for ticket_id in await self.store.postponed_due(self.clock()):
            ticket = await self._change(ticket_id, lambda t, now: t.wake_if_due(now))
            woken += ticket.status == Status.open
        return woken

    async def _change(self, ticket_id: str, decide: Callable[[Ticket, datetime], list[Event]], *,
                      command_id: str | None = None) -> Ticket:
        for _ in range(MAX_ATTEMPTS):
            async with self.locks.hold(ticket_id):
                try:
                    ticket = await self.store.load(ticket_id)
                except Purged as exc:
                    raise NotFound(ticket_id) from exc
                if ticket is None:
                    raise NotFound(ticket_id)
                version = ticket.version
                events = decide(ticket, self.clock())
                if not events and not command_id:
                    return ticket
                try:
                    await self._save(ticket, events, expected_version=version, command_id=command_id)
                except VersionConflict:  # another process changed it (MongoDB); decide again
                    continue
                return ticket
        raise VersionConflict(ticket_id)

    # ------------------------------------------------------------ persistence + publishing
    async def _save(self, ticket: Ticket, events: list[Event], *, expected_version: int | None,
                    command_id: str | None = None) -> None:
        cloud = [(topics.TICKETS_EVENTS, self._cloud_event(ticket.id, type_, payload)) for type_, payload in events]
        doc = await self.store.save(ticket, cloud, expected_version=expected_version, command_id=command_id)
        await self.outbox.relay(doc)

    async def _relay(self, ticket_id: str) -> None:
        doc = await self.store.pending_of(ticket_id)
        if doc:
            await self.outbox.relay(doc)

    def _cloud_event(self, ticket_id: str, type_: str, payload) -> CloudEvent:
        return make_event(type_, payload, source=self.source, subject=ticket_id, time=self.clock())

