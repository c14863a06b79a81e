"""Delivery guarantees on the real MongoDB-wire server: a reply is sent once however often
its event arrives and however many workers race; transient failures are retried with
back-off until the channel is back; permanent ones and give-ups fail visibly."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from services.tickets.delivery.channels import Sent, TryLater, Undeliverable
from services.tickets.delivery.rules import RetryPolicy
from services.tickets.delivery.service import DeliveryService
from services.tickets.delivery.store import DeliveryStore
from services.tickets.domain import DeliveryState
from services.tickets.store import TicketStore
from shared import topics
from shared.events import TicketReplied, utcnow
from tests.integration.harness import Tickets
from tests.unit.test_ticket_lifecycle import chat

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        now = utcnow()  # whole milliseconds, as the database keeps them
        self.now = now.replace(microsecond=now.microsecond // 1000 * 1000)

    def __call__(self):
        return self.now


class Channel:
    """A scripted channel: answers from `script` in turn (an exception class raises), then sends."""

    def __init__(self, *script, pause: float = 0.0) -> None:
        self.script = list(script)
        self.sent: list[str] = []
        self.pause = pause

    async def send(self, out):
        await asyncio.sleep(self.pause)
        if self.script:
            outcome = self.script.pop(0)
            if isinstance(outcome, type) and issubclass(outcome, Exception):
                raise outcome(f"{outcome.__name__} from the provider")
        self.sent.append(out.message.message_id)
        return Sent(provider_id=f"p-{len(self.sent)}", detail="accepted")


class Published:
    """The ticket events the tickets process sent, as (topic, type, subject, data)."""

    def __init__(self, tickets: Tickets) -> None:
        self.tickets = tickets

    def __iter__(self):
        return iter([(topics.TICKETS_EVENTS, e["type"], e["subject"], e["data"])
                     for e in self.tickets.sent.events(topics.TICKETS_EVENTS)])


async def setup(storage, channel, clock=None, retry=None):
    store = TicketStore(storage)
    await store.ensure_indexes()
    clock = clock or Clock()
    tickets = Tickets(store)
    ticket_id = await tickets.file(chat("m1"))
    replied = TicketReplied.model_validate(await tickets.reply(ticket_id, "On its way"))

    def worker():
        return DeliveryService(store=DeliveryStore(storage.mongo), record=tickets.record_delivery, ticket_store=store,
                               adapters={"chat": channel}, retry=retry or RetryPolicy(base_s=2, cap_s=60),
                               clock=clock)
    return worker, replied, tickets, Published(tickets), clock


async def delivery_of(tickets, replied):
    ticket = await tickets.load(replied.ticket.id)
    return next(m for m in ticket.messages if m.message_id == replied.message.message_id).delivery


async def test_redelivered_events_and_racing_workers_send_a_reply_once(storage):
    channel = Channel(pause=0.05)
    worker, replied, tickets, published, _ = await setup(storage, channel)
    workers = [worker() for _ in range(3)]  # three tickets processes, sharing only the database
    await asyncio.gather(*(w.on_replied(replied) for w in workers for _ in range(2)))
    await asyncio.gather(*(w.retry_due() for w in workers))
    assert channel.sent == [replied.message.message_id]
    delivery = await delivery_of(tickets, replied)
    assert delivery.state == DeliveryState.sent and delivery.provider_id == "p-1"
    assert [t for _, t, _, _ in published].count("deskstream.ticket.delivery_updated") == 1


async def test_a_transient_failure_is_retried_with_back_off_until_the_channel_is_back(storage):
    channel = Channel(TryLater, TryLater)
    worker, replied, tickets, published, clock = await setup(storage, channel)
    w = worker()
    await w.on_replied(replied)
    first = await delivery_of(tickets, replied)
    assert first.state == DeliveryState.queued and first.attempts == 1 and "TryLater" in first.detail
    assert first.next_attempt_at == clock.now + timedelta(seconds=2)
    assert await w.retry_due() == 0  # not due yet
    clock.now += timedelta(seconds=2)
    assert await w.retry_due() == 1
    assert (await delivery_of(tickets, replied)).next_attempt_at == clock.now + timedelta(seconds=4)
    clock.now += timedelta(seconds=4)
    assert await w.retry_due() == 1
    assert channel.sent == [replied.message.message_id]
    done = await delivery_of(tickets, replied)
    assert (done.state, done.attempts) == (DeliveryState.sent, 3)
    await w.on_replied(replied)  # the event again, after the fact: nothing is sent
    clock.now += timedelta(minutes=10)
    assert await w.retry_due() == 0 and channel.sent == [replied.message.message_id]


async def test_a_permanent_refusal_fails_at_once(storage):
    refused = Channel(Undeliverable)
    worker, replied, tickets, published, _ = await setup(storage, refused)
    await worker().on_replied(replied)
    delivery = await delivery_of(tickets, replied)
    assert delivery.state == DeliveryState.failed and "Undeliverable" in delivery.detail and refused.sent == []
    assert any(t == "deskstream.ticket.delivery_updated" for _, t, _, _ in published)


async def test_a_channel_down_for_longer_than_the_give_up_time_fails_visibly(storage):
    down = Channel(*[TryLater] * 10)
    worker, replied, tickets, published, clock = await setup(storage, down, retry=RetryPolicy(base_s=1, cap_s=1,
                                                                                             give_up_after_s=3))
    w = worker()
    await w.on_replied(replied)
    for _ in range(5):
        clock.now += timedelta(seconds=1)
        await w.retry_due()
    delivery = await delivery_of(tickets, replied)
    assert delivery.state == DeliveryState.failed and delivery.detail.startswith("gave up after")
    assert any(t == "deskstream.ticket.delivery_updated" for _, t, _, _ in published)


async def test_an_attempt_cut_short_by_a_crash_is_made_again_after_its_lease(storage):
    channel = Channel()
    worker, replied, tickets, _, clock = await setup(storage, channel)
    w = worker()
    deliveries = w.store
    await deliveries.enqueue(replied.message.message_id, replied.ticket.id, clock.now)
    # a worker claimed attempt 1 and died before sending
    assert await deliveries.claim(replied.message.message_id, 1, clock.now)
    assert await w.retry_due() == 0 and channel.sent == []
    clock.now += timedelta(seconds=61)
    await w.retry_due()  # notices the dead claim and moves past it
    await w.retry_due()
    assert channel.sent == [replied.message.message_id]
    assert (await delivery_of(tickets, replied)).state == DeliveryState.sent


async def test_no_adapter_means_not_sent_said_on_the_ticket(storage):
    worker, replied, tickets, _, _ = await setup(storage, Channel())
    w = worker()
    w.adapters = {}
    await w.on_replied(replied)
    delivery = await delivery_of(tickets, replied)
    assert delivery.state == DeliveryState.not_sent and "no chat provider" in delivery.detail


async def test_a_providers_delivery_report_marks_the_message_delivered_once(storage):
    from shared.events import Channel as Ch
    from shared.events import DeliveryReported, EventType

    channel = Channel()
    worker, replied, tickets, published, clock = await setup(storage, channel)
    await tickets.store.index_external("chat", "p-1", replied.ticket.id)  # the provider's id, as the chat adapter says
    w = worker()
    await w.on_replied(replied)
    report = DeliveryReported(channel=Ch.chat, provider_id="p-1", state="delivered", provider_status="read",
                              at=clock.now)
    for _ in range(2):  # redelivered: no second change
        await tickets.ingest(EventType.DELIVERY_REPORTED, report, key="p-1")
    delivery = await delivery_of(tickets, replied)
    assert (delivery.state, delivery.detail) == (DeliveryState.delivered, "read")
    assert [t for _, t, _, _ in published].count("deskstream.ticket.delivery_updated") == 2  # sent, delivered
    unknown = report.model_copy(update={"provider_id": "p-someone-elses"})
    before = len(list(published))
    await tickets.ingest(EventType.DELIVERY_REPORTED, unknown, key="p-someone-elses")
    assert len(list(published)) == before  # not a message we sent: nothing
