"""The SLA service with its clocks in memory, over in-memory stores: what the scheduler fires, what it
writes on the way, restarts and partitions changing hands (no Kafka, no MongoDB; the same paths on
the real stack: tests/integration/test_sla_clocks.py, tests/e2e/test_sla.py)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.sla.calendar import Calendar, add_business_seconds
from services.sla.domain import ClockState, Policy, PolicyMatch
from services.sla.service import SlaService
from services.sla.store import SlaStore
from services.sla.timers import DueHeap
from shared import topics
from shared.events import Channel, EventType, MessageSummary, TicketSnapshot
from shared.kafka import partition_of
from tests.unit.memory import Records, SentRecords, memory_storage, run

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday
RIYADH_WEEK = Calendar(timezone="Asia/Riyadh", hours={d: [("09:00", "17:00")] for d in ("sun", "mon", "tue", "wed", "thu")})
STD = Policy(name="std", first_response_s=600, warn_before_s=60)


def ticket(tid: str = "TK-1", status: str = "new", **extra) -> TicketSnapshot:
    return TicketSnapshot(id=tid, status=status, priority="normal", channel=Channel.chat, customer_id="CU-1",
                          created_at=T0, version=1, **extra)


class Sla:
    """One SLA process owning every partition, over in-memory stores."""

    def __init__(self, *, policies: dict[str, Policy] | None = None, storage=None, sent=None, hot: int = 10_000) -> None:
        self.now = T0
        self.storage = storage or memory_storage()
        self.store = SlaStore(self.storage)
        self.sent = sent or SentRecords()
        self.service = SlaService(store=self.store, producer=self.sent, source="deskstream/sla",
                                  default_policy=STD, clock=lambda: self.now, hot_clocks=hot)
        for policy_id, policy in (policies or {}).items():
            self.store._policies._value = None  # noqa: SLF001 - written through the store below
            self.storage.mongo.collection("sla_policies").docs[policy_id] = {"_id": policy_id, **policy.model_dump()}
        self.records = Records()

    async def own(self, partitions=range(6)) -> None:
        partitions = set(partitions)
        self.service.install(partitions, await self.service.load(partitions))

    async def event(self, type_: str, t: TicketSnapshot, data: dict | None = None) -> None:
        record = self.records.record(topics.TICKETS_EVENTS, type_, {"ticket": t.model_dump(mode="json"), **(data or {})},
                                     partition=partition_of(t.id, 6), key=t.id, at=self.now)
        record.event["time"] = self.now.isoformat()
        batch = await run(self.service, record)
        assert batch.rejected == []

    async def at(self, when: datetime) -> int:
        self.now = when
        return await self.service.fire_due()

    def kinds(self) -> list[tuple[str, str]]:
        return [(e["subject"], e["type"].rsplit(".", 1)[1]) for e in self.sent.events(topics.SLA_EVENTS)]

    def clock_docs(self) -> dict:
        return {k: v for name, c in self.storage.mongo.collections.items() if name.startswith("sla_clocks_p")
                for k, v in c.docs.items()}


@pytest.fixture
async def sla() -> Sla:
    svc = Sla()
    await svc.own()
    return svc


async def test_the_scheduler_warns_then_breaches_once_and_a_fire_rewrites_no_clock(sla):
    await sla.event(EventType.TICKET_CREATED, ticket())
    stored = {k: dict(v) for k, v in sla.clock_docs().items()}
    for minutes in (5, 9, 9.5, 10, 11, 30):
        await sla.at(T0 + timedelta(minutes=minutes))
    assert sla.kinds() == [("TK-1", "warning"), ("TK-1", "breached")]
    breach = sla.sent.events(topics.SLA_EVENTS)[-1]
    assert breach["id"] == "sla-TK-1-first_response-breached"
    assert breach["data"]["due_at"] == (T0 + timedelta(minutes=10)).isoformat().replace("+00:00", "Z")
    assert sla.clock_docs() == stored  # the decisions are the durable record of the warning and the breach
    assert sla.service.book.get("TK-1:first_response").state == ClockState.breached
    assert len(sla.service.book.due) == 0


async def test_an_answer_in_time_meets_the_target_and_a_redelivered_event_changes_nothing(sla):
    await sla.event(EventType.TICKET_CREATED, ticket())
    await sla.event(EventType.TICKET_CREATED, ticket())  # redelivered: its clock runs already
    reply = MessageSummary(message_id="o1", direction="outbound", channel=Channel.chat, text="hi",
                           at=T0 + timedelta(minutes=3))
    await sla.event(EventType.TICKET_REPLIED, ticket(status="answered"), {"message": reply.model_dump(mode="json")})
    await sla.at(T0 + timedelta(hours=1))
    assert sla.kinds() == [("TK-1", "met")]
    assert len(sla.clock_docs()) == 1


async def test_a_decision_that_cannot_be_sent_is_tried_again_and_sent_once(sla):
    await sla.event(EventType.TICKET_CREATED, ticket())
    sla.sent.fail = ConnectionError("the broker is away")
    with pytest.raises(ConnectionError):
        await sla.at(T0 + timedelta(minutes=10))
    sla.sent.fail = None
    assert sla.kinds() == []
    await sla.at(T0 + timedelta(minutes=10, seconds=2))
    assert sla.kinds() == [("TK-1", "breached")]


async def test_a_paused_clock_shows_no_stale_due_time_but_what_is_left_and_since_when():
    sla = Sla(policies={"std": Policy(name="std", first_response_s=4 * 3600, warn_before_s=600, calendar_id="riyadh")})
    sla.storage.mongo.collection("sla_calendars").docs["riyadh"] = {
        "_id": "riyadh", **RIYADH_WEEK.model_dump(mode="json"),
        "hours": {d: ["09:00-17:00"] for d in ("sun", "mon", "tue", "wed", "thu")}}
    await sla.own()
    await sla.event(EventType.TICKET_CREATED, ticket())  # Monday 12:00 in Riyadh: 4 business hours → due 16:00
    answered = T0 + timedelta(hours=1)
    sla.now = answered
    await sla.event(EventType.TICKET_STATUS_CHANGED, ticket(status="postponed"))
    [view] = await sla.service.view(await sla.service.ticket_clocks("TK-1"))
    assert view["state"] == "paused" and view["due"] is None and view["warn_at"] is None
    assert view["paused_at"] == answered and view["used_s"] == 3600 and view["remaining_s"] == 3 * 3600
    assert await sla.at(T0 + timedelta(days=3)) == 0 and sla.kinds() == []  # paused: no warning, no breach
    back = datetime(2026, 11, 26, 13, 30, tzinfo=UTC)  # Thursday 16:30 in Riyadh: 3 business hours left
    sla.now = back
    await sla.event(EventType.TICKET_STATUS_CHANGED, ticket(status="open"))
    [view] = await sla.service.view(await sla.service.ticket_clocks("TK-1"))
    assert view["state"] == "running" and view["paused_at"] is None
    assert view["due"] == add_business_seconds(RIYADH_WEEK, back, 3 * 3600) == datetime(2026, 11, 29, 8, 30, tzinfo=UTC)


async def test_a_ticket_put_on_hold_after_its_due_time_has_breached_not_paused(sla):
    await sla.event(EventType.TICKET_CREATED, ticket())
    sla.now = T0 + timedelta(minutes=12)  # due at 10 minutes; the scheduler has not looked yet
    await sla.event(EventType.TICKET_STATUS_CHANGED, ticket(status="postponed"))
    [view] = await sla.service.view(await sla.service.ticket_clocks("TK-1"))
    assert view["state"] == "breached" and view["breached_at"] == T0 + timedelta(minutes=10)
    assert sla.kinds() == [("TK-1", "breached")]


async def test_a_ticket_another_process_holds_is_read_from_the_store(sla):
    await sla.event(EventType.TICKET_CREATED, ticket())
    await sla.at(T0 + timedelta(minutes=11))
    other = Sla(storage=sla.storage)  # another process, owning no partition
    [view] = await other.service.view(await other.service.ticket_clocks("TK-1"))
    assert view["state"] == "breached"


async def test_after_a_takeover_nothing_decided_is_raised_again_and_what_was_not_sent_is(sla):
    await sla.event(EventType.TICKET_CREATED, ticket("TK-1"))
    await sla.event(EventType.TICKET_CREATED, ticket("TK-2"))
    await sla.at(T0 + timedelta(minutes=11))  # both breached; TK-2's event then went missing:
    sent_marks = sla.storage.mongo.collection(f"sla_sent_p{partition_of('TK-2', 6)}").docs
    sent_marks.pop("TK-2:first_response:outcome")
    sla.now = T0 + timedelta(minutes=12)
    successor = Sla(storage=sla.storage)
    successor.now = sla.now
    await successor.own()
    await successor.at(T0 + timedelta(minutes=13))
    assert successor.kinds() == [("TK-2", "breached")]  # sent again under its id; TK-1's is not


async def test_each_process_fires_only_the_clocks_of_the_partitions_it_owns():
    storage, sent = memory_storage(), SentRecords()
    a, b = Sla(storage=storage, sent=sent), Sla(storage=storage, sent=sent)
    await a.own({partition_of("TK-1", 6)})
    await b.own(set(range(6)) - {partition_of("TK-1", 6)})
    for svc in (a, b):
        await svc.event(EventType.TICKET_CREATED, ticket("TK-1"))
    await a.at(T0 + timedelta(minutes=11))
    await b.at(T0 + timedelta(minutes=11))
    assert sent.types(topics.SLA_EVENTS).count(EventType.SLA_BREACHED) == 1


# ------------------------------------------------------------------ policies by tier and team

async def test_a_vip_customers_ticket_of_the_billing_team_gets_the_policy_made_for_it():
    policies = {
        "vip-billing": Policy(name="v", match=PolicyMatch(tier="vip", team="billing"), first_response_s=300, order=1),
        "vip": Policy(name="v", match=PolicyMatch(tier="vip"), first_response_s=900, order=2),
        "all": Policy(name="a", first_response_s=3600, order=10),
    }
    svc = Sla(policies=policies)
    for tid, extra in (("TK-1", {"customer_tier": "vip", "team": "billing"}), ("TK-2", {"customer_tier": "vip"}),
                       ("TK-3", {"team": "billing"}), ("TK-4", {})):
        await svc.event(EventType.TICKET_CREATED, ticket(tid, **extra))
    assert {tid: svc.service.book.of_ticket(tid)[0].policy_id for tid in ("TK-1", "TK-2", "TK-3", "TK-4")} == \
        {"TK-1": "vip-billing", "TK-2": "vip", "TK-3": "all", "TK-4": "all"}


# ------------------------------------------------------------------ the due heap

def test_the_due_heap_gives_keys_in_due_order_and_only_their_latest_time():
    heap = DueHeap()
    heap.set("a", T0 + timedelta(seconds=30))
    heap.set("b", T0 + timedelta(seconds=10))
    heap.set("c", T0 + timedelta(seconds=20))
    heap.set("b", T0 + timedelta(seconds=40))  # rescheduled later
    heap.set("c", None)  # paused
    assert heap.next_at() == T0 + timedelta(seconds=30) and len(heap) == 2
    assert heap.pop_due(T0 + timedelta(seconds=35), limit=10) == ["a"]
    assert heap.pop_due(T0 + timedelta(minutes=5), limit=10) == ["b"]
    assert heap.next_at() is None and heap.pop_due(T0 + timedelta(days=1), limit=10) == []


def test_the_due_heap_stays_small_when_keys_are_rescheduled_over_and_over():
    heap = DueHeap()
    for i in range(10_000):
        heap.set("k", T0 + timedelta(seconds=i))
    assert len(heap._heap) < 1100 and heap.pop_due(T0 + timedelta(days=1), limit=5) == ["k"]


async def test_beyond_the_hot_clocks_the_others_are_held_encoded_and_still_warn_breach_and_stop_once():
    sla = Sla(hot=3)
    await sla.own()
    for n in range(12):
        await sla.event(EventType.TICKET_CREATED, ticket(f"TK-{n}"))
    assert len(sla.service.book) == 12 and sla.service.book.decoded() <= 3
    await sla.event(EventType.TICKET_STATUS_CHANGED, ticket("TK-0", status="resolved"))  # met, from encoded
    for minutes in (9.5, 11):
        await sla.at(T0 + timedelta(minutes=minutes))
    kinds = sla.kinds()
    assert sorted(k for t, k in kinds if t == "TK-0") == ["met"]
    for n in range(1, 12):
        assert [k for t, k in kinds if t == f"TK-{n}"] == ["warning", "breached"]
    assert sla.service.book.decoded() <= 3
    restarted = Sla(storage=sla.storage, sent=sla.sent, hot=3)
    restarted.now = sla.now
    await restarted.own()
    assert restarted.service.book.decoded() <= 3
    assert await restarted.at(T0 + timedelta(minutes=30)) == 0  # nothing fires twice after a restart
