"""Analytics as its reader hands it batches: every ticket and SLA event reaches the numbers once,
and an event whose payload cannot be read is rejected (dead-lettered by the reader) instead of
stopping the others."""
from __future__ import annotations

from shared import topics
from tests.unit.memory import Records, run
from tests.unit.test_analytics_domain import T0, Story, minutes, sla
from tests.unit.test_analytics_readmodel import new_service


async def test_ticket_and_sla_events_reach_the_summary_once_each():
    service = new_service()
    records = Records()
    story = Story("TK-A").assign("layla", T0).reply("layla", T0 + minutes(4))
    batch = [records.record(topics.TICKETS_EVENTS, e.type, e.data, id_=e.id, at=e.time)
             for e in story.events + story.events]  # everything delivered twice
    met = sla("met", "TK-A")
    batch.append(records.record(topics.SLA_EVENTS, met.type, met.data, key="TK-A", id_=met.id, at=met.time))
    done = await run(service, *batch)
    await service.refresh()
    s = service.summary()
    assert s["tickets_total"] == 1 and s["first_response"]["count"] == 1
    assert s["sla"] == {"first_response": {"met": 1}} and done.rejected == []


async def test_an_event_with_an_unreadable_ticket_is_rejected_and_the_rest_counted():
    service = new_service()
    records = Records()
    broken = Story("TK-B").events[0].model_dump(mode="json")
    broken["data"]["ticket"]["channel"] = "carrier-pigeon"
    good = Story("TK-C").events[0]
    done = await run(service, records.record(topics.TICKETS_EVENTS, broken["type"], broken["data"]),
                     records.record(topics.TICKETS_EVENTS, good.type, good.data, id_=good.id, at=good.time))
    await service.refresh()
    assert service.summary()["tickets_total"] == 1
    assert len(done.rejected) == 1 and "channel" in done.rejected[0][1]
