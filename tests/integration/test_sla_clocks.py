"""SLA clocks through a ticket's life, on the real MongoDB-wire server."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.sla.domain import Policy
from services.sla.service import SlaService
from services.sla.store import SlaStore
from shared import topics
from shared.events import Channel, EventType, TicketSnapshot
from shared.kafka import partition_of
from tests.unit.memory import Records, SentRecords, run

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class Events(list):
    """What the SLA processes sent to `sla.events`."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = SentRecords()

    def refresh(self) -> list:
        self[:] = self.sent.events(topics.SLA_EVENTS)
        return self


class Clock:
    now = T0

    def __call__(self):
        return self.now


class Sla:
    """An SLA process owning every partition, on the real server; ticket events handed to it as Kafka would."""

    def __init__(self, store: SlaStore, events: Events, clock: Clock) -> None:
        self.service = SlaService(store=store, producer=events.sent, source="test",
                                  default_policy=Policy(name="d", first_response_s=60), clock=clock)
        self.store, self.events, self.records = store, events, Records()

    async def own(self) -> None:
        self.service.install(set(range(6)), await self.service.load(set(range(6))))

    async def on_ticket_event(self, type_: str, ticket: TicketSnapshot, data: dict, at: datetime) -> None:
        record = self.records.record(topics.TICKETS_EVENTS, type_, {"ticket": ticket.model_dump(mode="json"), **data},
                                     partition=partition_of(ticket.id, 6), key=ticket.id, at=at)
        await run(self.service, record)
        self.events.refresh()

    async def fire_due(self) -> int:
        fired = await self.service.fire_due()
        self.events.refresh()
        return fired

    async def view(self, clocks):
        return await self.service.view(clocks)

    async def ticket_clocks(self, ticket_id: str):
        return await self.service.ticket_clocks(ticket_id)


def snap(status: str) -> TicketSnapshot:
    return TicketSnapshot(id="TK-9", status=status, priority="normal", channel=Channel.email, customer_id="c",
                          created_at=T0, version=1)


def msg(direction: str, at: datetime, mid: str) -> dict:
    return {"message": {"message_id": mid, "direction": direction, "channel": "email", "text": "x", "at": at.isoformat()}}


@pytest.fixture
async def sla(storage):
    store = SlaStore(storage)
    await store.put_policy("std", Policy(name="std", first_response_s=3600, next_response_s=1800,
                                         resolution_s=8 * 3600, warn_before_s=600))
    events, clock = Events(), Clock()
    service = new_service(store, events, clock)
    await service.own()
    return service, events, clock


def new_service(store, events, clock) -> Sla:
    return Sla(store, events, clock)


async def targets(service):
    return {t["target"] + (f":{t['cycle']}" if t["cycle"] else ""): t
            for t in await service.view(await service.ticket_clocks("TK-9"))}


async def test_clocks_pause_while_waiting_on_the_customer_and_next_response_starts_on_their_reply(sla):
    service, events, clock = sla
    await service.on_ticket_event(EventType.TICKET_CREATED, snap("new"), {}, T0)
    t = await targets(service)
    assert set(t) == {"first_response", "resolution"}
    assert datetime.fromisoformat(str(t["resolution"]["due"])) == T0 + timedelta(hours=8)

    # the agent answers after 20 minutes: first response met, resolution paused (waiting on the customer)
    replied = T0 + timedelta(minutes=20)
    clock.now = replied
    await service.on_ticket_event(EventType.TICKET_REPLIED, snap("new"), msg("outbound", replied, "o1"), replied)
    await service.on_ticket_event(EventType.TICKET_STATUS_CHANGED, snap("answered"), {}, replied)
    t = await targets(service)
    assert t["first_response"]["state"] == "met" and t["resolution"]["state"] == "paused"
    assert [e["type"] for e in events] == ["deskstream.sla.met"]

    # the customer takes a day to write back: that day is not charged to the resolution target
    back = T0 + timedelta(days=1)
    clock.now = back
    await service.on_ticket_event(EventType.TICKET_MESSAGE_ADDED, snap("answered"), msg("inbound", back, "m2"), back)
    await service.on_ticket_event(EventType.TICKET_STATUS_CHANGED, snap("open"), {}, back)
    t = await targets(service)
    assert t["resolution"]["state"] == "running" and t["resolution"]["used_s"] == 20 * 60
    assert datetime.fromisoformat(str(t["resolution"]["due"])) == back + timedelta(hours=8) - timedelta(minutes=20)
    assert t["next_response:m2"]["state"] == "running"

    # nobody answers the follow-up for 31 minutes: one warning, then one breach of next_response
    clock.now = back + timedelta(minutes=21)
    await service.fire_due()
    clock.now = back + timedelta(minutes=31)
    await service.fire_due()
    await service.fire_due()
    kinds = [(e["data"]["target"], e["type"]) for e in events]
    assert kinds[1:] == [("next_response", "deskstream.sla.warning"), ("next_response", "deskstream.sla.breached")]
    assert events[-1]["id"] == "sla-TK-9-next_response-m2-breached"

    # resolved: the resolution target is met
    done = back + timedelta(hours=2)
    clock.now = done
    await service.on_ticket_event(EventType.TICKET_STATUS_CHANGED, snap("resolved"), {}, done)
    t = await targets(service)
    assert t["resolution"]["state"] == "met" and t["resolution"]["used_s"] == 20 * 60 + 2 * 3600
    assert events[-1]["type"] == "deskstream.sla.met" and events[-1]["data"]["target"] == "resolution"


async def test_redelivered_ticket_events_change_nothing(sla):
    service, events, clock = sla
    for _ in range(2):
        await service.on_ticket_event(EventType.TICKET_CREATED, snap("new"), {}, T0)
    replied = T0 + timedelta(minutes=5)
    clock.now = replied
    for _ in range(2):
        await service.on_ticket_event(EventType.TICKET_REPLIED, snap("new"), msg("outbound", replied, "o1"), replied)
    assert [e["type"] for e in events] == ["deskstream.sla.met"]
    clocks, _ = await service.store.clocks_of(partition_of("TK-9", 6), "TK-9")
    assert len(clocks) == 2


async def test_a_restarted_service_reads_back_every_clock_and_decision_and_raises_nothing_twice(sla):
    service, events, clock = sla
    await service.on_ticket_event(EventType.TICKET_CREATED, snap("new"), {}, T0)
    clock.now = T0 + timedelta(minutes=55)
    await service.fire_due()  # the first-response warning
    replied = T0 + timedelta(minutes=70)  # too late: breached on the answer
    clock.now = replied
    await service.on_ticket_event(EventType.TICKET_REPLIED, snap("new"), msg("outbound", replied, "o1"), replied)
    await service.on_ticket_event(EventType.TICKET_STATUS_CHANGED, snap("open"), {}, replied)
    clock.now = T0 + timedelta(hours=7, minutes=51)
    await service.fire_due()  # the resolution warning, recorded as its decision only
    before = await targets(service)
    assert [e["type"].rsplit(".", 1)[1] for e in events] == ["warning", "breached", "warning"]

    # a second process (or this one after a restart) loads the clocks from the real server
    clock.now = T0 + timedelta(hours=9)  # the resolution target (8 h) passed while nobody watched
    restarted = new_service(service.store, events, clock)
    await restarted.own()
    assert len(restarted.service.book) == 2
    after = await targets(restarted)
    assert after["first_response"]["state"] == "breached" and after["resolution"]["state"] == "running"
    assert {k: (v["due"], v["state"]) for k, v in after.items()} == {k: (v["due"], v["state"]) for k, v in before.items()}
    assert await restarted.fire_due() == 1  # the resolution breach, and no second warning
    assert [e["type"].rsplit(".", 1)[1] for e in events] == ["warning", "breached", "warning", "breached"]
    # what a process that does not hold the ticket answers for it, from the store
    view = {t["target"]: t["state"] for t in await service.view(await new_service(service.store, events, clock)
                                                                 .ticket_clocks("TK-9"))}
    assert view == {"first_response": "breached", "resolution": "breached"}
