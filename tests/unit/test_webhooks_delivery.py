"""The webhook queue and its lanes, with the database in memory and a scripted subscriber:
order per ticket while retrying, one subscriber never holding up another, nothing lost when a
process starts again, and a subscriber switched off after failing for the whole retry period."""
from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from services.tickets.webhooks.rules import RetryPolicy
from services.tickets.webhooks.service import Dispatcher, Subscriptions, WebhookProcessor
from services.tickets.webhooks.store import WebhookStore
from shared import topics
from shared.events import EventType
from tests.unit.memory import MemoryMongo, Records, run

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Subscriber:
    """Answers with the status the script gives for (webhook, event id), 200 once it runs out."""

    def __init__(self, failures: dict[str, int] | None = None, hang: set[str] | None = None) -> None:
        self.failures = dict(failures or {})
        self.hang = hang or set()
        self.received: dict[str, list[str]] = defaultdict(list)  # webhook id → event ids, as they arrived

    async def send(self, sub, entry):
        if sub["_id"] in self.hang:
            await asyncio.sleep(3600)
        if self.failures.get(entry.event_id, 0) > 0:
            self.failures[entry.event_id] -= 1
            return 500, "answered 500"
        self.received[sub["_id"]].append(entry.event_id)
        return 200, None


async def setup(subscriber: Subscriber, store: WebhookStore | None = None, *, give_up_s: float = 3600):
    store = store or WebhookStore(MemoryMongo())  # type: ignore[arg-type]
    subs = Subscriptions(store, max_age_s=0)
    dispatcher = Dispatcher(store=store, subscriptions=subs, client=None, allow_private=True,  # type: ignore[arg-type]
                            retry=RetryPolicy(base_s=0.02, cap_s=0.05, give_up_after_s=give_up_s), per_webhook=2)
    dispatcher.send = subscriber.send  # type: ignore[method-assign]
    return store, dispatcher, WebhookProcessor(store=store, subscriptions=subs, dispatcher=dispatcher)


async def subscribe(store: WebhookStore, webhook_id: str, events=("*",), active=True) -> None:
    await store.put(webhook_id, {"url": f"https://{webhook_id}.example/hook", "events": list(events), "secret": SECRET,
                                 "active": active}, created_at=datetime.now(UTC))


def ticket_events(records: Records, ticket: str, n: int, partition: int = 0) -> list:
    return [records.record(topics.TICKETS_EVENTS, EventType.TICKET_NOTE_ADDED, {"ticket_id": ticket},
                           key=ticket, partition=partition, id_=f"{ticket}-e{i}") for i in range(n)]


async def until(check, timeout: float = 5.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < end, "timed out"
        await asyncio.sleep(0.01)


async def working(dispatcher: Dispatcher):
    task = asyncio.create_task(dispatcher.run())
    await asyncio.sleep(0)
    return task


async def test_each_event_is_queued_once_per_subscription_that_wants_it():
    store, _, processor = await setup(Subscriber())
    await subscribe(store, "crm", events=["deskstream.ticket.*"])
    await subscribe(store, "breaches", events=["deskstream.sla.breached"])
    await subscribe(store, "paused", active=False)
    records = Records()
    batch = [*ticket_events(records, "t1", 2),
             records.record(topics.SLA_EVENTS, EventType.SLA_BREACHED, {"ticket_id": "t1"}, key="t1", id_="b1")]
    await run(processor, *batch)
    await run(processor, *batch)  # the batch again (a crash before its commit): nothing twice
    queued = sorted([(d["webhook_id"], d["event_id"]) async for d in store.queue.find({})])
    assert queued == [("breaches", "b1"), ("crm", "t1-e0"), ("crm", "t1-e1")]
    body = (await store.queue.find_one({"_id": "crm|t1-e0"}))["body"]
    assert orjson.loads(body)["id"] == "t1-e0"  # the CloudEvent as it was on the topic


async def test_a_tickets_next_event_waits_while_its_earlier_one_is_retried_but_other_tickets_go_on():
    subscriber = Subscriber(failures={"a-e0": 3})
    store, dispatcher, processor = await setup(subscriber)
    await subscribe(store, "crm")
    records = Records()
    await run(processor, *ticket_events(records, "a", 3), *ticket_events(records, "b", 3))
    task = await working(dispatcher)
    try:
        await until(lambda: len(subscriber.received["crm"]) == 6)
    finally:
        task.cancel()
    got = subscriber.received["crm"]
    assert [e for e in got if e.startswith("a-")] == ["a-e0", "a-e1", "a-e2"]
    assert [e for e in got if e.startswith("b-")] == ["b-e0", "b-e1", "b-e2"]
    assert got.index("b-e2") < got.index("a-e0")  # b went on while a's first event was failing
    await dispatcher.flush()
    log = await store.recent("crm", 100)
    first = sorted((a for a in log if a["event_id"] == "a-e0"), key=lambda a: a["attempt"])
    assert [a["status_code"] for a in first] == [500, 500, 500, 200]
    assert [a["outcome"] for a in first] == ["retrying"] * 3 + ["delivered"]
    assert first[0]["next_attempt_at"] is not None and first[0]["error"] == "answered 500"
    assert [d async for d in store.queue.find({})] == []  # finished deliveries leave the queue


async def test_a_hanging_subscriber_never_holds_up_another():
    subscriber = Subscriber(hang={"dead"})
    store, dispatcher, processor = await setup(subscriber)
    await subscribe(store, "dead")
    await subscribe(store, "alive")
    records = Records()
    await run(processor, *[e for t in range(20) for e in ticket_events(records, f"t{t}", 2)])
    task = await working(dispatcher)
    try:
        await until(lambda: len(subscriber.received["alive"]) == 40)
    finally:
        task.cancel()
    assert dispatcher.in_flight["dead"] == 2  # its share, no more


async def test_what_was_queued_and_not_delivered_is_delivered_after_a_restart():
    subscriber = Subscriber(hang={"crm"})
    store, _, processor = await setup(subscriber)
    await subscribe(store, "crm")
    records = Records()
    await run(processor, *ticket_events(records, "a", 3))
    processor.revoke({0})  # the process goes away; its memory with it
    revived = Subscriber()
    _, dispatcher2, processor2 = await setup(revived, store)
    processor2.install({0}, await processor2.load({0}))
    task = await working(dispatcher2)
    try:
        await until(lambda: len(revived.received["crm"]) == 3)
    finally:
        task.cancel()
    assert revived.received["crm"] == ["a-e0", "a-e1", "a-e2"]


async def test_a_delivery_failed_after_the_retry_period_is_shown_and_the_subscriber_disabled():
    subscriber = Subscriber(failures={"a-e0": 10_000})
    store, dispatcher, processor = await setup(subscriber, give_up_s=0.2)
    said: list = []

    async def disabled(change):
        said.append(change)
    dispatcher.disabled = disabled
    await subscribe(store, "crm")
    await store.subscriptions.update_one({"_id": "crm"}, {"$set": {
        "created_at": datetime.now(UTC) - timedelta(days=2)}})
    records = Records()
    await run(processor, *ticket_events(records, "a", 2))
    task = await working(dispatcher)
    try:
        await until(lambda: bool(said))
    finally:
        task.cancel()
    await dispatcher.flush()
    outcomes = [a["outcome"] for a in await store.recent("crm", 100) if a["event_id"] == "a-e0"]
    assert outcomes[0] == "failed" and set(outcomes[1:]) == {"retrying"}
    assert said[0].webhook_id == "crm" and (await store.get("crm"))["active"] is False


@pytest.mark.parametrize("restart_after_final", [True, False])
async def test_a_crash_between_the_final_attempt_and_the_queues_tidy_up_sends_nothing_again(restart_after_final):
    subscriber = Subscriber()
    store, dispatcher, processor = await setup(subscriber)
    await subscribe(store, "crm")
    await run(processor, *ticket_events(Records(), "a", 1))
    task = await working(dispatcher)
    try:
        await until(lambda: subscriber.received["crm"] == ["a-e0"])
    finally:
        task.cancel()
    if restart_after_final:
        await store.record(dispatcher.attempts)  # the log was written, the queue document not yet removed
    assert await store.pending({0}) == ([] if restart_after_final else [await store.queue.find_one({})])


async def test_an_erasure_drops_what_is_queued_of_the_tickets_and_hides_the_erased_identities():
    subscriber = Subscriber(failures={"t1-e0": 1000})  # down for the whole test: t1's events wait
    store, dispatcher, processor = await setup(subscriber)
    await subscribe(store, "crm")
    records = Records()
    await run(processor, *ticket_events(records, "t1", 3), *ticket_events(records, "t2", 1))
    task = await working(dispatcher)
    try:
        await until(lambda: subscriber.received["crm"] == ["t2-e0"])
        purged = records.record(topics.TICKETS_EVENTS, EventType.TICKET_PURGED,
                                {"ticket_id": "t1", "customer_id": "c1", "actor": "admin", "reason": "erasure",
                                 "at": "2026-12-03T10:00:00Z"}, key="t1", id_="t1-purged")
        erased = records.record(topics.TICKETS_EVENTS, EventType.CUSTOMER_ERASED,
                                {"customer_id": "c1", "identities": ["email:ana@example.com"], "ticket_ids": ["t1"],
                                 "at": "2026-12-03T10:00:00Z"}, key="c1", id_="c1-erased")
        await run(processor, purged, erased)
        queued = {d["_id"]: d async for d in store.queue.find({})}
        assert not [i for i in queued if i.startswith("crm|t1-e")][1:]  # at most the one being sent
        assert "crm|t1-purged" in queued
        body = queued["crm|c1-erased"]["body"]
        assert "ana@example.com" not in body and "sha256:" in body
    finally:
        task.cancel()
