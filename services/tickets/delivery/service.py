"""Delivering agents' replies on the customer's channel.

Driven by `deskstream.ticket.replied` on `tickets.events` (its own consumer group), so the
agent's API call never waits for a provider. Each reply becomes a queue entry; each attempt
is claimed by an atomic insert, so one worker makes it; a transient failure schedules the
next attempt with back-off instead of holding up the partition; the outcome is stored
before the ticket hears of it, so a redelivered event or a restart never sends twice.

The one window left: a worker that dies after the provider accepted a message but before
storing the outcome. The next attempt (after `lease_s`) sends it again — with the same
Message-ID for mail and the same Idempotency-Key for webhooks, so receivers can drop it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from services.tickets.delivery.channels import ChannelAdapter, Outgoing, Sent, TryLater, Undeliverable
from services.tickets.delivery.rules import RetryPolicy, route
from services.tickets.delivery.store import DeliveryStore
from services.tickets.domain import DeliveryState
from services.tickets.store import Purged, TicketStore
from services.tickets.views import load_ticket
from shared.events import RecordDelivery, TicketReplied, stable_id, utcnow

# tells the ticket what became of a reply: a command to the process owning it (no answer awaited)
Record = Callable[[RecordDelivery], Awaitable[None]]

log = logging.getLogger(__name__)


class DeliveryService:
    def __init__(
        self,
        *,
        store: DeliveryStore,
        record: Record,
        ticket_store: TicketStore,
        adapters: dict[str, ChannelAdapter],
        retry: RetryPolicy | None = None,
        lease_s: float = 60.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.record = record
        self.ticket_store = ticket_store
        self.adapters = adapters
        self.retry = retry or RetryPolicy()
        self.lease = timedelta(seconds=lease_s)
        self.clock = clock

    async def on_replied(self, replied: TicketReplied) -> None:
        await self.on_outbound(replied.ticket.id, replied.message.message_id)

    async def on_outbound(self, ticket_id: str, message_id: str) -> None:
        """An outbound message of the ticket (an agent's reply, a confirmation request) is to be delivered."""
        if await self.store.outcome(message_id) is None:
            await self.store.enqueue(message_id, ticket_id, self.clock())
        await self.attempt(message_id)

    async def retry_due(self) -> int:
        """Make every attempt that has come due (run periodically by every instance)."""
        made = 0
        for message_id in await self.store.due(self.clock()):
            made += await self.attempt(message_id)
        return made

    async def attempt(self, message_id: str) -> bool:
        """One delivery attempt, if one is due and no other worker is making it."""
        item = await self.store.pending(message_id)
        if item is None:
            return False
        if (done := await self.store.outcome(message_id)) is not None:  # finished, but the entry outlived a crash
            await self._tell_ticket(
                done["ticket_id"],
                message_id,
                done["state"],
                done.get("detail"),
                done.get("provider_id"),
                done.get("attempts", 0),
            )
            await self.store.forget(message_id)
            return False
        now = self.clock()
        if item["next_at"] > now:
            return False  # waiting for its back-off, or another worker's attempt is in flight
        number = item["attempts"] + 1
        if await self.store.claim(message_id, number, now) is None:
            claim = await self.store.claim_of(message_id, number)
            if claim and now - claim["at"] > self.lease:  # that worker died mid-attempt: move past it
                await self.store.schedule(
                    message_id, attempts=number, next_at=now, error="an earlier attempt was interrupted"
                )
            return False
        # until this attempt reports back, the entry is not due for anyone else
        await self.store.schedule(message_id, attempts=number, next_at=now + self.lease)
        ticket_id = item["ticket_id"]
        try:
            ticket = await load_ticket(self.ticket_store, ticket_id)
        except Purged:
            ticket = None
        message = next((m for m in ticket.messages if m.message_id == message_id), None) if ticket else None
        if ticket is None or message is None:
            await self._finish(
                ticket_id, message_id, DeliveryState.not_sent, "the ticket no longer exists", None, number
            )
            return True
        way = route(ticket)
        adapter = self.adapters.get(way.adapter)
        if adapter is None:
            await self._finish(
                ticket_id, message_id, DeliveryState.not_sent, f"no {way.adapter} provider is configured", None, number
            )
            return True
        if way.to is None:
            await self._finish(
                ticket_id,
                message_id,
                DeliveryState.not_sent,
                f"the customer has no address {way.adapter} can reach",
                None,
                number,
            )
            return True
        out = Outgoing(ticket=ticket, message=message, to=way.to, idempotency_key=message_id)
        if (planned := getattr(adapter, "planned_id", None)) is not None:
            # the customer's answer will quote our id: it must lead back to this ticket first
            await self.ticket_store.index_external(ticket.channel.value, planned(out), ticket_id)
        try:
            sent: Sent = await adapter.send(out)
        except Undeliverable as exc:
            await self._finish(ticket_id, message_id, DeliveryState.failed, str(exc), None, number)
            return True
        except Exception as exc:  # TryLater, or an adapter bug: both are worth another attempt
            detail = str(exc) if isinstance(exc, TryLater) else f"{type(exc).__name__}: {exc}"[:500]
            if not isinstance(exc, TryLater):
                log.exception("delivery of %s failed unexpectedly", message_id)
            await self._failed_attempt(ticket_id, message_id, number, item["first_at"], detail)
            return True
        if sent.provider_id:
            await self.ticket_store.index_external(ticket.channel.value, sent.provider_id, ticket_id)
        await self._finish(ticket_id, message_id, DeliveryState.sent, sent.detail, sent.provider_id, number)
        return True

    async def mark_delivered(self, ticket_id: str, message_id: str, detail: str) -> None:
        """The customer's device has it (a chat widget took it, a provider reported it)."""
        await self._tell_ticket(ticket_id, message_id, DeliveryState.delivered, detail, None, 1)

    async def _failed_attempt(
        self, ticket_id: str, message_id: str, number: int, first_at: datetime, detail: str
    ) -> None:
        now = self.clock()
        next_at = self.retry.next_attempt(number, now, first_at)
        if next_at is None:
            await self._finish(
                ticket_id, message_id, DeliveryState.failed, f"gave up after {number} attempts: {detail}", None, number
            )
            return
        log.warning("delivery of %s failed (attempt %d), next at %s: %s", message_id, number, next_at, detail)
        await self.store.schedule(message_id, attempts=number, next_at=next_at, error=detail)
        await self._tell_ticket(ticket_id, message_id, DeliveryState.queued, detail, None, number, next_at)

    async def _finish(
        self,
        ticket_id: str,
        message_id: str,
        state: DeliveryState,
        detail: str | None,
        provider_id: str | None,
        attempts: int,
    ) -> None:
        await self.store.record_outcome(
            message_id,
            ticket_id=ticket_id,
            state=state.value,
            detail=detail,
            provider_id=provider_id,
            attempts=attempts,
            now=self.clock(),
        )
        await self._tell_ticket(ticket_id, message_id, state, detail, provider_id, attempts)
        await self.store.forget(message_id)

    async def _tell_ticket(
        self,
        ticket_id: str,
        message_id: str,
        state: DeliveryState | str,
        detail: str | None,
        provider_id: str | None,
        attempts: int,
        next_at: datetime | None = None,
    ) -> None:
        state = DeliveryState(state)
        await self.record(
            RecordDelivery(
                command_id=stable_id("delivery", message_id, state.value, str(attempts), size=24),
                ticket_id=ticket_id,
                message_id=message_id,
                state=state.value,
                detail=detail,
                provider_id=provider_id,
                attempts=attempts,
                next_attempt_at=next_at,
            )
        )
