"""Analytics' subscribers in memory (FastStream's TestKafkaBroker): every ticket and SLA event
reaches the read model, a redelivered one changes nothing, and an event whose payload cannot
be read is dead-lettered instead of blocking its partition."""
from __future__ import annotations

import json

import pytest
from faststream.kafka import TestKafkaBroker

from services.analytics import handlers
from shared import topics
from tests.unit.test_analytics_domain import T0, Story, minutes, sla
from tests.unit.test_analytics_readmodel import new_service
from tests.unit.inmemory import broker_with


@pytest.fixture
def broker_and_service():
    service = new_service()
    broker, letters = broker_with("analytics", handlers.build_router(service))
    return broker, service, letters


async def test_ticket_and_sla_events_reach_the_summary_once_each(broker_and_service):
    broker, service, letters = broker_and_service
    story = Story("TK-A").assign("layla", T0).reply("layla", T0 + minutes(4))
    async with TestKafkaBroker(broker) as br:
        for event in story.events + story.events:  # everything delivered twice
            await br.publish(event.model_dump(mode="json"), topics.TICKETS_EVENTS, key=b"TK-A")
        await br.publish(sla("met", "TK-A").model_dump(mode="json"), topics.SLA_EVENTS, key=b"TK-A")
    await service.refresh()
    s = service.summary()
    assert s["tickets_total"] == 1 and s["first_response"]["count"] == 1
    assert s["sla"] == {"first_response": {"met": 1}} and letters == []


async def test_an_event_with_an_unreadable_ticket_is_dead_lettered(broker_and_service):
    broker, service, letters = broker_and_service
    event = Story("TK-B").events[0].model_dump(mode="json")
    event["data"]["ticket"]["channel"] = "carrier-pigeon"
    async with TestKafkaBroker(broker) as br:
        await br.publish(json.dumps(event).encode(), topics.TICKETS_EVENTS, key=b"TK-B")
    await service.refresh()
    assert service.summary()["tickets_total"] == 0
    assert letters and "channel" in letters[0]["data"]["reason"]
