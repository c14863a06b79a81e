"""The per-subscriber circuit breaker: a receiver that keeps failing is probed with one delivery at a time
instead of every ticket's lane retrying on its own; when it answers, every lane resumes, in order, nothing lost."""
from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

from services.tickets.webhooks.rules import Breakers, Queued, ready
from tests.unit.memory import Records, run
from tests.unit.test_webhooks_delivery import setup, subscribe, ticket_events, until, working

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_the_breaker_opens_after_failures_in_a_row_and_lets_one_probe_through_when_its_time_is_up():
    b = Breakers(threshold=3, base_s=10, cap_s=40, rand=random.Random(1))
    assert b.allowance("crm", T0, 8) == 8
    assert [b.failed("crm", T0) for _ in range(3)] == [False, False, True]
    assert b.allowance("crm", T0, 8) == 0
    until_ = b.state("crm", T0)["next_probe_at"]
    assert T0 + timedelta(seconds=5) <= until_ <= T0 + timedelta(seconds=10)
    assert b.allowance("crm", until_, 8) == 1
    b.sent("crm")
    assert b.allowance("crm", until_, 8) == 0  # the probe is out: nothing else
    assert b.failed("crm", until_) is True  # the probe failed: open again, for longer
    second = b.state("crm", until_)["next_probe_at"]
    assert second - until_ >= timedelta(seconds=10)
    b.sent("crm")
    assert b.succeeded("crm") is True and b.allowance("crm", second, 8) == 8
    assert b.succeeded("crm") is False  # an ordinary success changes nothing


def test_a_success_between_failures_keeps_the_breaker_closed_and_a_late_answer_does_not_extend_it():
    b = Breakers(threshold=3)
    b.failed("crm", T0)
    b.failed("crm", T0)
    b.succeeded("crm")
    assert [b.failed("crm", T0) for _ in range(2)] == [False, False] and b.allowance("crm", T0, 4) == 4
    b.failed("crm", T0)
    opened = b.state("crm", T0)["next_probe_at"]
    assert b.failed("crm", T0 + timedelta(seconds=1)) is False  # a request sent before it opened
    assert b.state("crm", T0)["next_probe_at"] == opened


def test_ready_honours_a_lower_share_for_one_subscriber():
    heads = [Queued(("dead", f"t{i}"), T0) for i in range(5)] + [Queued(("alive", f"t{i}"), T0) for i in range(5)]
    chosen = ready(heads, now=T0, busy=set(), in_flight={}, limit_per_webhook=3, limits={"dead": 1})
    assert sum(k[0] == "dead" for k in chosen) == 1 and sum(k[0] == "alive" for k in chosen) == 3


class Flaky:
    """A receiver that is down (500 to everything) until told otherwise, counting what it is sent."""

    def __init__(self) -> None:
        self.down = True
        self.attempts = 0
        self.received: list[str] = []

    async def send(self, sub, entry):
        self.attempts += 1
        if self.down:
            return 500, "answered 500"
        self.received.append(entry.event_id)
        return 200, None


async def test_a_dead_subscriber_is_probed_not_hammered_and_gets_everything_in_order_when_it_is_back():
    receiver = Flaky()
    store, dispatcher, processor = await setup(receiver)
    dispatcher.breakers = Breakers(threshold=3, base_s=0.1, cap_s=0.1)
    await subscribe(store, "crm")
    records = Records()
    await run(processor, *[e for t in range(20) for e in ticket_events(records, f"t{t}", 3)])
    task = await working(dispatcher)
    try:
        await asyncio.sleep(0.6)
        # 3 failures open it, the 2 in flight meanwhile answer late, then one probe per ~0.05-0.1 s (without
        # the breaker every one of the 20 lanes retries every 0.01-0.05 s: hundreds of attempts)
        assert receiver.attempts <= 3 + 2 + 12, receiver.attempts
        assert dispatcher.breakers.state("crm", datetime.now(UTC))["state"] in ("open", "probing")
        receiver.down = False
        await until(lambda: len(receiver.received) == 60)
    finally:
        task.cancel()
    for t in range(20):
        assert [e for e in receiver.received if e.startswith(f"t{t}-")] == [f"t{t}-e{i}" for i in range(3)]
    assert dispatcher.breakers.state("crm", datetime.now(UTC))["state"] == "closed"
    await dispatcher.flush()
    assert [d async for d in store.queue.find({})] == []


class Counting:
    """A healthy receiver that notes how many deliveries the dispatcher held in memory at each request."""

    def __init__(self, dispatcher) -> None:
        self.dispatcher = dispatcher
        self.received: list[tuple[str, str]] = []  # (subscriber, event id)
        self.held: list[int] = []

    async def send(self, sub, entry):
        self.held.append(len(self.dispatcher.known))
        await asyncio.sleep(0)
        self.received.append((sub["_id"], entry.event_id))
        return 200, None


async def test_beyond_the_memory_bound_deliveries_wait_in_the_durable_queue_and_all_arrive_in_order():
    store, dispatcher, processor = await setup(Flaky())
    receiver = Counting(dispatcher)
    dispatcher.send = receiver.send  # type: ignore[method-assign]
    dispatcher.max_pending = 10
    await subscribe(store, "crm")
    await subscribe(store, "erp")  # two subscriptions: one event, two deliveries of the same seq
    processor.install({0}, await processor.load({0}))
    records = Records()
    for t in range(8):  # 8 tickets x 4 events x 2 subscribers = 64 deliveries, 10 held at most (+ one event's)
        await run(processor, *ticket_events(records, f"t{t}", 4))
    assert len(dispatcher.known) <= 10 + 1 and dispatcher.spilled_after is not None
    assert await store.queue.count_documents({}) == 64  # nothing is lost: the rest waits in the queue
    task = await working(dispatcher)
    try:
        await until(lambda: len(receiver.received) == 64)
    finally:
        task.cancel()
    assert max(receiver.held) <= 11
    for who in ("crm", "erp"):
        for t in range(8):
            got = [e for w, e in receiver.received if w == who and e.startswith(f"t{t}-")]
            assert got == [f"t{t}-e{i}" for i in range(4)]
    assert dispatcher.spilled_after is None
