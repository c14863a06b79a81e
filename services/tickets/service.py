"""Ticket use cases: load → decide in the domain → save with events → publish."""
from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

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


class UnknownStatus(Exception):
    """Neither a built-in status nor one an admin defined (HTTP 422)."""


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
        if isinstance(command, AssignTicket):
            def decide(t: Ticket, now: datetime) -> list[Event]:
                return t.assign(command.agent_id, actor="routing", now=now, reason=command.reason,
                                team=command.team)
        else:
            def decide(t: Ticket, now: datetime) -> list[Event]:
                return t.automate(rules=command.rules, priority=command.priority, add_tags=command.add_tags,
                                  mark_spam=command.mark_spam, now=now, team=command.team, reply=command.reply,
                                  reply_id="out_" + stable_id(command.command_id, "reply", size=24),
                                  reply_source=command.reply_source)
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

    async def change_status(self, ticket_id: str, *, status: str, actor: str,
                            until: datetime | None) -> Ticket:
        """`status` is a base status or an admin-defined one (set as its category)."""
        if status in Status.__members__:
            base, substatus = Status(status), None
        elif custom := await self.store.custom_status(status):
            base, substatus = custom.category, custom.name
        else:
            raise UnknownStatus(status)
        return await self._change(ticket_id, lambda t, now: t.change_status(
            base, actor=actor, now=now, until=until, substatus=substatus))

    async def close_quiet(self, *, after_s: float) -> int:
        """Close resolved tickets the customer has not come back to (run periodically)."""
        closed = 0
        for ticket_id in await self.store.resolved_before(self.clock() - timedelta(seconds=after_s)):
            try:
                ticket = await self._change(ticket_id, lambda t, now: t.close_if_quiet(now, after_s=after_s))
            except NotFound:
                continue
            closed += ticket.status == Status.closed
        return closed

    async def record_sla(self, event_id: str, ticket_id: str, *, target: str, state: str, at: datetime,
                         due_at: datetime | None) -> None:
        def decide(t: Ticket, now: datetime) -> list[Event]:
            t.record_sla(target, state, at=at, due_at=due_at, now=now)
            return []
        try:
            await self._change(ticket_id, decide, command_id=event_id)
        except NotFound:
            pass  # purged meanwhile

    # ------------------------------------------------------------ merge, split, bulk
    async def merge(self, survivor_id: str, other_id: str, *, actor: str) -> Ticket:
        """Fold `other` into `survivor`. Two documents and no transactions: the survivor takes
        the messages first (idempotently), then the other is closed pointing at it; a merge
        cut short is finished by asking again."""
        if survivor_id == other_id:
            raise LifecycleError("a ticket cannot be merged into itself")
        other = await self._load(other_id)
        if other.merged_into and other.merged_into != survivor_id:
            raise LifecycleError(f"{other_id} was already merged into {other.merged_into}")
        survivor = await self._change(survivor_id, lambda t, now: t.absorb(other, actor=actor, now=now))
        await self.store.repoint(other_id, survivor_id, [m.message_id for m in other.messages])
        await self._change(other_id, lambda t, now: t.close_as_merged(survivor_id, actor=actor, now=now))
        return survivor

    async def split(self, ticket_id: str, message_id: str, *, actor: str) -> Ticket:
        """Take a customer message out into a new ticket: the new one is written first (its id
        follows from the message, so a retry finds it), then the message leaves the original."""
        new_id = ticket_id_for(f"split:{ticket_id}:{message_id}")
        original = await self._load(ticket_id)
        async with self.locks.hold(new_id):
            existing = await self.store.load(new_id)
            if existing is None:
                message = next((m for m in original.messages if m.message_id == message_id), None)
                if message is None:
                    raise LifecycleError(f"message {message_id} is not on ticket {ticket_id}")
                probe = original.model_copy(deep=True)
                probe.split_off(message_id, new_id, actor=actor, now=self.clock())  # the rules say yes
                new, events = Ticket.open_split(original, message, ticket_id=new_id, actor=actor, now=self.clock())
                try:
                    await self._save(new, events, expected_version=None)
                except VersionConflict:
                    pass  # a racing retry wrote it
                existing = new
        await self.store.move_message(message_id, new_id)

        def take_out(t: Ticket, now: datetime) -> list[Event]:
            if not t.has_message(message_id):
                return []  # already taken out
            return t.split_off(message_id, new_id, actor=actor, now=now)[1]
        await self._change(ticket_id, take_out)
        return existing

    async def _load(self, ticket_id: str) -> Ticket:
        try:
            ticket = await self.store.load(ticket_id)
        except Purged as exc:
            raise NotFound(ticket_id) from exc
        if ticket is None:
            raise NotFound(ticket_id)
        return ticket

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
            await self.outbox.mark(ticket.id)
            await self.outbox.relay(await self.store.purge(ticket, event, now))

    async def record_delivery(self, ticket_id: str, *, message_id: str, state: DeliveryState, detail: str | None,
                              provider_id: str | None, attempts: int, next_attempt_at: datetime | None = None) -> Ticket:
        return await self._change(ticket_id, lambda t, now: t.record_delivery(
            message_id, state=state, detail=detail, provider_id=provider_id, attempts=attempts, now=now,
            next_attempt_at=next_attempt_at))

    async def record_provider_report(self, ticket_id: str, *, provider_id: str, state: DeliveryState,
                                     detail: str) -> Ticket:
        def decide(t: Ticket, now: datetime) -> list[Event]:
            message = next((m for m in t.messages if m.delivery and m.delivery.provider_id == provider_id), None)
            if message is None:
                return []
            return t.record_delivery(message.message_id, state=state, detail=detail, provider_id=provider_id,
                                     attempts=message.delivery.attempts, now=now)
        return await self._change(ticket_id, decide)

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
                    ticket, applied = await self.store.load_for(ticket_id, command_id)
                except Purged as exc:
                    raise NotFound(ticket_id) from exc
                if ticket is None:
                    raise NotFound(ticket_id)
                if applied:  # a redelivered command: done before, but its events may be unsent
                    await self._relay(ticket_id)
                    return ticket
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
        if cloud:
            await self.outbox.mark(ticket.id)
        doc = await self.store.save(ticket, cloud, expected_version=expected_version, command_id=command_id)
        await self.outbox.relay(doc)

    async def _relay(self, ticket_id: str) -> None:
        doc = await self.store.pending_of(ticket_id)
        if doc:
            await self.outbox.relay(doc)

    def _cloud_event(self, ticket_id: str, type_: str, payload) -> CloudEvent:
        return make_event(type_, payload, source=self.source, subject=ticket_id, time=self.clock())

