"""The analytics read model end to end without Kafka or MongoDB: events in (with redeliveries,
out-of-date events, replays and restarts), the summary a support lead reads out. Snapshots go to
in-memory collections through the store's real code."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from services.analytics.service import AnalyticsService, SeriesError
from services.analytics.store import AnalyticsStore
from shared.events import EventType
from tests.unit.memory import memory_storage
from tests.unit.test_analytics_domain import T0, Story, minutes, sla

NOW = T0 + timedelta(hours=3)


def new_service(now: datetime = NOW, storage=None) -> AnalyticsService:
    return AnalyticsService(store=AnalyticsStore(storage or memory_storage()), clock=lambda: now, series_cache_s=0)


async def play(service: AnalyticsService, events) -> dict[str, Any]:
    for event in events:
        service.apply(event)
    await service.refresh()
    return service.summary()


def a_morning() -> list:
    """Three tickets: a chat answered and resolved, reopened and resolved again; an email
    answered late; a WhatsApp message nobody has picked up; SLA outcomes for each."""
    chat = (Story("TK-A", channel="chat", tags=("orders",)).assign("layla", T0 + minutes(1))
            .reply("layla", T0 + minutes(5)).status("resolved", T0 + minutes(20))
            .customer_writes(T0 + minutes(40)).reply("layla", T0 + minutes(45)).status("resolved", T0 + minutes(50)))
    email = (Story("TK-B", channel="email", at=T0 + minutes(10), tags=("refund", "orders"))
             .assign("omar", T0 + minutes(11)).reply("omar", T0 + minutes(130)))
    whatsapp = Story("TK-C", channel="whatsapp", at=T0 + minutes(100)).tag("orders", at=T0 + minutes(101))
    slas = [sla("met", "TK-A", policy="chat-fast", at=T0 + minutes(5)),
            sla("warning", "TK-B", at=T0 + minutes(100)), sla("breached", "TK-B", at=T0 + minutes(120)),
            sla("met", "TK-A", "next_response", policy="chat-fast", cycle="TK-A-m4", at=T0 + minutes(45))]
    return chat.events + email.events + whatsapp.events + slas


# ---------------------------------------------------------------- what a support lead reads

async def test_the_summary_tells_volume_backlog_times_sla_agents_and_tags():
    s = await play(new_service(), a_morning())
    assert s["tickets_total"] == 3
    assert s["tickets_by_channel"] == {"chat": 1, "email": 1, "whatsapp": 1}
    assert s["channel_mix"] == {"chat": 0.3333, "email": 0.3333, "whatsapp": 0.3333}
    assert s["tickets_by_status"] == {"answered": 1, "new": 1, "resolved": 1}
    assert s["backlog"]["total"] == 2
    assert s["backlog"]["by_status"] == {"new": 1, "open": 0, "answered": 1, "postponed": 0}
    assert s["backlog"]["by_age"]["1-4h"] == 2  # created 2h50 and 1h20 before NOW
    assert s["backlog"]["oldest_age_s"] == 170 * 60
    # first responses: 5 min (chat), 120 min (email); resolution: the chat's first one, 20 min
    assert s["first_response"]["count"] == 2 and s["first_response"]["p50_s"] == (300 + 7200) / 2
    assert s["resolution"] == {"count": 1, "mean_s": 1200.0, "p50_s": 1200.0, "p90_s": 1200.0, "p99_s": 1200.0}
    assert s["sla"] == {"first_response": {"met": 1, "warning": 1, "breached": 1}, "next_response": {"met": 1}}
    assert {(r["target"], r["policy_id"]): (r["met"], r["breached"], r["compliance"]) for r in s["sla_compliance"]} == {
        ("first_response", "chat-fast"): (1, 0, 1.0), ("first_response", "standard"): (0, 1, 0.0),
        ("next_response", "chat-fast"): (1, 0, 1.0)}
    agents = {a["agent_id"]: a for a in s["agents"]}
    assert agents["layla"] == {"agent_id": "layla", "handled": 1, "open": 0, "first_responses": 1,
                               "first_response_mean_s": 300.0, "resolved": 2, "reopened": 1, "reopen_rate": 0.5}
    assert agents["omar"]["open"] == 1 and agents["omar"]["first_response_mean_s"] == 7200.0
    assert s["top_tags"] == [{"tag": "orders", "tickets": 3}, {"tag": "refund", "tickets": 1}]
    assert s["last_24h"] == {"tickets_created": 3, "by_channel": {"chat": 1, "email": 1, "whatsapp": 1}}
    assert s["as_of"] == NOW


async def test_every_event_delivered_twice_changes_nothing():
    once = await play(new_service(), a_morning())
    events = a_morning()
    twice = await play(new_service(), [e for e in events for _ in range(2)])
    assert once == twice


async def test_a_redelivered_batch_after_later_events_does_not_turn_the_clock_back():
    story = Story("TK-A").assign("layla", T0).reply("layla", T0 + minutes(3)).status("resolved", T0 + minutes(9))
    service = new_service()
    # Kafka rewinds to the last committed offset: the first events come again after the last
    s = await play(service, story.events + story.events[:3])
    assert s["tickets_by_status"] == {"resolved": 1}
    assert s["backlog"]["total"] == 0
    assert s["first_response"]["count"] == 1 and s["resolution"]["count"] == 1


async def test_replaying_the_topics_into_an_empty_store_gives_the_same_summary():
    events = a_morning()
    live = new_service()
    for e in events:  # live: some events arrive twice along the way
        live.apply(e)
        if e.type == EventType.TICKET_REPLIED:
            live.apply(e)
    await live.refresh()
    replayed = await play(new_service(), events)
    assert live.summary() == replayed


async def test_a_purged_ticket_still_counts_as_created_but_leaves_backlog_and_tags():
    story = Story("TK-Z", channel="sms", tags=("spam-bot",)).status("spam", T0 + minutes(1)).purge(T0 + minutes(2))
    s = await play(new_service(), story.events + [story.events[0]])  # a late redelivery of `created`
    assert s["tickets_by_channel"] == {"sms": 1}
    assert s["tickets_by_status"] == {"purged": 1}
    assert s["backlog"]["total"] == 0 and s["top_tags"] == []


async def test_the_summary_before_the_first_read_is_empty_not_an_error():
    s = new_service().summary()
    assert s["tickets_total"] == 0 and s["as_of"] is None and s["agents"] == []
    assert s["first_response"]["count"] == 0 and s["first_response"]["p50_s"] is None


# ---------------------------------------------------------------- time series

async def test_tickets_created_per_hour_and_channel_are_zero_filled():
    service = new_service()
    await play(service, a_morning())
    answer = await service.series(metric="tickets_created", dimension="channel", bucket="hour",
                                  start=T0 - timedelta(hours=1), end=T0 + timedelta(hours=3))
    # whole buckets: from 08:15 to 12:15 means the hours 08:00 to 12:00 inclusive
    assert [b.hour for b in answer["buckets"]] == [8, 9, 10, 11, 12]
    assert answer["from"] == T0.replace(hour=8, minute=0) and answer["to"] == T0.replace(hour=13, minute=0)
    assert {s["key"]: s["values"] for s in answer["series"]} == {
        "chat": [0, 1, 0, 0, 0], "email": [0, 1, 0, 0, 0], "whatsapp": [0, 0, 1, 0, 0]}


async def test_series_by_tag_and_undivided():
    service = new_service()
    await play(service, a_morning())
    by_tag = await service.series(metric="tickets_created", dimension="tag", bucket="day",
                                  start=T0 - timedelta(days=1), end=T0 + timedelta(days=1))
    assert {s["key"]: s["total"] for s in by_tag["series"]} == {"orders": 3, "refund": 1}
    whole = await service.series(metric="tickets_created", bucket="day", start=T0 - timedelta(days=1),
                                 end=T0 + timedelta(days=1))
    assert whole["series"] == [{"key": "all", "total": 3, "values": [0, 3, 0]}]


async def test_response_time_series_give_the_median_per_bucket_and_by_agent():
    service = new_service()
    await play(service, a_morning())
    answer = await service.series(metric="first_response_seconds", dimension="agent", bucket="hour",
                                  start=T0.replace(minute=0), end=T0.replace(minute=0) + timedelta(hours=3))
    assert {s["key"]: s["values"] for s in answer["series"]} == {"layla": [300.0, None, None],
                                                                 "omar": [None, None, 7200.0]}
    assert answer["unit"] == "seconds"


async def test_sla_compliance_series_is_met_over_met_and_breached():
    service = new_service()
    await play(service, a_morning())
    answer = await service.series(metric="sla_compliance", dimension="target", bucket="day",
                                  start=T0.replace(hour=0, minute=0), end=T0.replace(hour=0, minute=0) + timedelta(days=1))
    assert answer["series"] == [
        {"key": "first_response", "total": 2, "met": [1], "breached": [1], "values": [0.5]},
        {"key": "next_response", "total": 1, "met": [1], "breached": [0], "values": [1.0]}]


@pytest.mark.parametrize("kwargs, code", [
    ({"metric": "tickets_created", "dimension": "agent"}, "invalid_dimension"),
    ({"metric": "nothing"}, "invalid_metric"),
    ({"metric": "tickets_created", "bucket": "week"}, "invalid_bucket"),
    ({"metric": "tickets_created", "start": T0, "end": T0}, "invalid_range"),
    ({"metric": "tickets_created", "bucket": "hour", "start": T0 - timedelta(days=40), "end": T0}, "invalid_range"),
    ({"metric": "tickets_created", "start": datetime(2026, 3, 1)}, "invalid_time"),
])
async def test_series_refuse_what_they_cannot_answer(kwargs, code):
    with pytest.raises(SeriesError) as err:
        await new_service().series(**kwargs)
    assert err.value.code == code


async def test_a_restarted_service_reads_its_snapshot_back_and_shows_the_same_numbers():
    storage = memory_storage()
    live = new_service(storage=storage)
    before = await play(live, a_morning())
    live.positions = {("tickets.events", 0): 42}
    await live.snapshot()
    restarted = new_service(storage=storage)
    assert await restarted.load() == {("tickets.events", 0): 42}  # where the replay of the topics resumes
    await restarted.refresh()
    assert restarted.summary() == before
    # and the events read again after the restart (those after the snapshot) change nothing twice
    assert await play(restarted, a_morning()[-6:]) == before


async def test_a_snapshot_is_written_whole_in_chunks_and_the_old_one_goes(monkeypatch):
    from services.analytics import store as store_module

    monkeypatch.setattr(store_module, "CHUNK", 64)  # small chunks: several per snapshot
    storage = memory_storage()
    service = new_service(storage=storage)
    await play(service, a_morning())
    await service.snapshot()
    await service.snapshot()
    docs = storage.mongo.collection("analytics_snapshots").docs
    header = docs["snapshot:1"]
    assert header["chunks"] > 1 and len(docs) == header["chunks"] + 1
    restored = new_service(storage=storage)
    await restored.load()
    await restored.refresh()
    assert restored.summary() == service.summary()
