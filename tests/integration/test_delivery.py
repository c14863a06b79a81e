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
from services.tickets.service import TicketService
from services.tickets.store import TicketStore
from shared.events import TicketReplied, utcnow
from shared.outbox import Outbox
from tests.integration.test_storage_guarantees import Published
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


async def setup(mongo, channel, clock=None, retry=None):
    published = Published()
    store = TicketStore(mongo)
    clock = clock or Clock()
    tickets = TicketService(store=store, outbox=Outbox(store.tickets, published), source="test", clock=clock)
    ticket_id = await tickets.file_message(chat("m1"))
    ticket = await tickets.reply(ticket_id, agent_id="a1", text="On its way", request_id="r1")
    replied = TicketReplied(ticket=ticket.snapshot(), message=ticket.messages[-1].model_dump(), agent_id="a1")

    def worker():
        return DeliveryService(store=DeliveryStore(mongo), tickets=tickets, ticket_store=store,
                               adapters={"chat": channel}, retry=retry or RetryPolicy(base_s=2, cap_s=60),
                               clock=clock)
    return worker, replied, store, published, clock


async def delivery_of(store, replied):
    ticket = await store.load(replied.ticket.id)
    return next(m for m in ticket.messages if m.message_id == replied.message.message_id).delivery


async def test_redelivered_events_and_racing_workers_send_a_reply_once(mongo):
    channel = Channel(pause=0.05)
    worker, replied, store, published, _ = await setup(mongo, channel)
    workers = [worker() for _ in range(3)]  # three tickets processes, sharing only the database
    await asyncio.gather(*(w.on_replied(replied) for w in workers for _ in range(2)))
    await asyncio.gather(*(w.retry_due() for w in workers))
    assert channel.sent == [replied.message.message_id]
    delivery = await delivery_of(store, replied)
    assert delivery.state == DeliveryState.sent and delivery.provider_id == "p-1"
    assert [t for _, t, _, _ in published].count("deskstream.ticket.delivery_updated") == 1


async def test_a_transient_failure_is_retried_with_back_off_until_the_channel_is_back(mongo):
    channel = Channel(TryLater, TryLater)
    worker, replied, store, published, clock = await setup(mongo, channel)
    w = worker()
    await w.on_replied(replied)
    first = await delivery_of(store, replied)
    assert first.state == DeliveryState.queued and first.attempts == 1 and "TryLater" in first.detail
    assert first.next_attempt_at == clock.now + timedelta(seconds=2)
    assert await w.retry_due() == 0  # not due yet
    clock.now += timedelta(seconds=2)
    assert await w.retry_due() == 1
    assert (await delivery_of(store, replied)).next_attempt_at == clock.now + timedelta(seconds=4)
    clock.now += timedelta(seconds=4)
    assert await w.retry_due() == 1
    assert channel.sent == [replied.message.message_id]
    done = await delivery_of(store, replied)
    assert (done.state, done.attempts) == (DeliveryState.sent, 3)
    await w.on_replied(replied)  # the event again, after the fact: nothing is sent
    clock.now += timedelta(minutes=10)
    assert await w.retry_due() == 0 and channel.sent == [replied.message.message_id]


async def test_a_permanent_refusal_fails_at_once(mongo):
    refused = Channel(Undeliverable)
    worker, replied, store, published, _ = await setup(mongo, refused)
    await worker().on_replied(replied)
    delivery = await delivery_of(store, replied)
    assert delivery.state == DeliveryState.failed and "Undeliverable" in delivery.detail and refused.sent == []
    assert any(t == "deskstream.ticket.delivery_updated" for _, t, _, _ in published)


async def test_a_channel_down_for_longer_than_the_give_up_time_fails_visibly(mongo):
    down = Channel(*[TryLater] * 10)
    worker, replied, store, published, clock = await setup(mongo, down, retry=RetryPolicy(base_s=1, cap_s=1,
                                                                                             give_up_after_s=3))
    w = worker()
    await w.on_replied(replied)
    for _ in range(5):
        clock.now += timedelta(seconds=1)
        await w.retry_due()
    delivery = await delivery_of(store, replied)
    assert delivery.state == DeliveryState.failed and delivery.detail.startswith("gave up after")
    assert any(t == "deskstream.ticket.delivery_updated" for _, t, _, _ in published)


async def test_an_attempt_cut_short_by_a_crash_is_made_again_after_its_lease(mongo):
    channel = Channel()
    worker, replied, store, _, clock = await setup(mongo, channel)
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
    assert (await delivery_of(store, replied)).state == DeliveryState.sent


async def test_no_adapter_means_not_sent_said_on_the_ticket(mongo):
    worker, replied, store, _, _ = await setup(mongo, Channel())
    w = worker()
    w.adapters = {}
    await w.on_replied(replied)
    delivery = await delivery_of(store, replied)
    assert delivery.state == DeliveryState.not_sent and "no chat provider" in delivery.detail


async def test_a_providers_delivery_report_marks_the_message_delivered_once(mongo):
    from shared.events import DeliveryReported
    from shared.events import Channel as Ch

    channel = Channel()
    worker, replied, store, published, clock = await setup(mongo, channel)
    w = worker()
    await w.on_replied(replied)
    report = DeliveryReported(channel=Ch.chat, provider_id="p-1", state="delivered", provider_status="read",
                              at=clock.now)
    assert await w.on_report(report)
    assert await w.on_report(report)  # redelivered: no second change
    delivery = await delivery_of(store, replied)
    assert (delivery.state, delivery.detail) == (DeliveryState.delivered, "read")
    assert [t for _, t, _, _ in published].count("deskstream.ticket.delivery_updated") == 2  # sent, delivered
    unknown = report.model_copy(update={"provider_id": "p-someone-elses"})
    assert not await w.on_report(unknown)
