"""The SLA service with its clocks in memory: what the scheduler fires, what it reads and writes
on the way, restarts and partitions changing hands — with in-memory stand-ins for the store and
the decisions (no Kafka, no MongoDB)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.sla.calendar import Calendar, add_business_seconds
from services.sla.domain import ClockState, Policy, PolicyMatch, start_clock
from services.sla.service import SlaService
from services.sla.store import clock_document
from services.sla.timers import DueHeap
from shared.events import Channel, EventType, SlaTarget, TicketSnapshot, utcnow
from shared.locks import KeyedLock

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday
RIYADH_WEEK = Calendar(timezone="Asia/Riyadh", hours={d: [("09:00", "17:00")] for d in ("sun", "mon", "tue", "wed", "thu")})


class Store:
    """The SLA store's interface over dicts; counts what the service reads and writes."""

    def __init__(self, policies=None, calendars=None):
        self.policies = policies or {}
        self.calendars = calendars or {}
        self.docs: dict[str, dict] = {}
        self.locks = KeyedLock()
        self.saves = 0
        self.reads_of_clocks = 0

    async def ensure_policy(self, policy_id, policy):
        self.policies.setdefault(policy_id, policy)

    async def all_policies(self):
        return dict(self.policies)

    async def get_calendar(self, calendar_id):
        return self.calendars.get(calendar_id)

    async def start_clock(self, clock):
        if clock.key in self.docs:
            return False
        self.docs[clock.key] = clock_document(clock)
        return True

    async def save(self, clock):
        self.saves += 1
        self.docs[clock.key] = clock_document(clock)

    async def all_clocks(self):
        from services.sla.domain import Clock
        self.reads_of_clocks += 1
        for doc in list(self.docs.values()):
            yield Clock.model_validate(doc)

    async def clocks_of(self, ticket_id):
        from services.sla.domain import Clock
        self.reads_of_clocks += 1
        return [Clock.model_validate(d) for d in self.docs.values() if d["ticket_id"] == ticket_id]

    async def claims_of(self, clocks):
        return []


class Claims:
    """Decisions claimed once by key, as EventClaims does; what was published, in order."""

    def __init__(self):
        self.stored: dict[str, dict] = {}
        self.published: list[dict] = []
        self.unsent: dict[str, dict] = {}

    async def claim(self, claim_id, *, topic, key, event, **facts):
        if claim_id in self.stored:
            return self.stored[claim_id], False
        doc = {"_id": claim_id, "topic": topic, "key": key, "event": event.model_dump(mode="json"),
               "sent": False, "at": utcnow().isoformat(), **facts}
        self.stored[claim_id] = doc
        return doc, True

    async def relay(self, doc):
        self.published.append(doc["event"])
        doc["sent"] = True

    async def all_claims(self):
        return [dict(d) for d in self.stored.values()]

    async def relay_unsent(self, claims, older_than=timedelta(seconds=3)):
        unsent = [self.stored[c["_id"]] for c in claims if not c["sent"]]
        for doc in unsent:
            await self.relay(doc)
        return len(unsent)

    def kinds(self):
        return [(e["subject"], e["type"].rsplit(".", 1)[1]) for e in self.published]


class Now:
    def __init__(self, at):
        self.at = at

    def __call__(self):
        return self.at


def service(store=None, claims=None, now=None, **policies) -> SlaService:
    store = store or Store(policies or {"std": Policy(name="std", first_response_s=600, warn_before_s=60)},
                           {"riyadh": RIYADH_WEEK})
    return SlaService(store=store, claims=claims or Claims(), source="test", clock=now or Now(T0),
                      default_policy=Policy(name="d", first_response_s=3600))


def ticket(tid="TK-1", status="new", created_at=T0, **extra) -> TicketSnapshot:
    return TicketSnapshot(id=tid, status=status, priority="normal", channel=Channel.chat, customer_id="CU-1",
                          created_at=created_at, version=1, **extra)


async def created(svc, tid="TK-1", partition=None, at=T0):
    await svc.on_ticket_event(EventType.TICKET_CREATED, ticket(tid, created_at=at), {}, at, partition=partition)


# ------------------------------------------------------------------ the scheduler works from memory

async def test_the_scheduler_warns_then_breaches_once_without_reading_or_rewriting_clocks():
    now = Now(T0)
    svc = service(now=now)
    await created(svc)
    reads, saves = svc.store.reads_of_clocks, svc.store.saves
    for minutes in (5, 9, 9.5, 10, 11, 30):
        now.at = T0 + timedelta(minutes=minutes)
        await svc.fire_due()
    assert svc.claims.kinds() == [("TK-1", "warning"), ("TK-1", "breached")]
    assert svc.claims.published[-1]["data"]["due_at"] == (T0 + timedelta(minutes=10)).isoformat().replace("+00:00", "Z")
    # the decision is the durable record of the breach: the clocks collection was neither read nor written
    assert (svc.store.reads_of_clocks, svc.store.saves) == (reads, saves)
    assert svc.book.clocks["TK-1:first_response"].state == ClockState.breached
    assert len(svc.book.due) == 0


async def test_the_scheduler_sleeps_until_the_nearest_due_time():
    svc = service()
    await created(svc, "TK-1", at=T0)
    await created(svc, "TK-2", at=T0 - timedelta(minutes=5))
    assert svc.book.due.next_at() == T0 + timedelta(minutes=4)  # TK-2's warning
    assert await svc.fire_due() == 0


async def test_a_clock_whose_decision_cannot_be_stored_is_tried_again():
    class Failing(Claims):
        down = True

        async def claim(self, *a, **k):
            if self.down:
                raise ConnectionError("database away")
            return await super().claim(*a, **k)

    now, claims = Now(T0), Failing()
    svc = service(now=now, claims=claims)
    await created(svc)
    now.at = T0 + timedelta(minutes=11)
    assert await svc.fire_due() == 0
    assert svc.book.clocks["TK-1:first_response"].state == ClockState.running  # nothing decided
    claims.down = False
    now.at += timedelta(seconds=1)
    assert await svc.fire_due() == 1
    assert claims.kinds() == [("TK-1", "breached")]


# ------------------------------------------------------------------ pauses and the per-ticket view

async def test_a_paused_clock_shows_no_stale_due_time_but_what_is_left_and_since_when():
    now = Now(T0)
    svc = service(now=now, std=Policy(name="std", first_response_s=4 * 3600, warn_before_s=600, calendar_id="riyadh"))
    await created(svc)  # Monday 12:00 in Riyadh: 4 business hours → due 16:00
    answered = T0 + timedelta(hours=1)
    now.at = answered
    await svc.on_ticket_event(EventType.TICKET_STATUS_CHANGED, ticket(status="postponed"), {}, answered)
    [view] = await svc.view(await svc.ticket_clocks("TK-1"))
    assert view["state"] == "paused" and view["due"] is None and view["warn_at"] is None
    assert view["paused_at"] == answered and view["used_s"] == 3600 and view["remaining_s"] == 3 * 3600
    # a paused clock neither warns nor breaches, however long it waits
    now.at = T0 + timedelta(days=3)
    assert await svc.fire_due() == 0 and svc.claims.published == []

    # the customer writes on Thursday at 16:30 Riyadh time: 3 business hours left → due Sunday 11:30
    back = datetime(2026, 11, 26, 13, 30, tzinfo=UTC)
    now.at = back
    await svc.on_ticket_event(EventType.TICKET_STATUS_CHANGED, ticket(status="open"), {}, back)
    [view] = await svc.view(await svc.ticket_clocks("TK-1"))
    assert view["state"] == "running" and view["paused_at"] is None
    assert view["due"] == add_business_seconds(RIYADH_WEEK, back, 3 * 3600) == datetime(2026, 11, 29, 8, 30, tzinfo=UTC)
    assert svc.book.due.next_at() == view["warn_at"] == datetime(2026, 11, 29, 8, 20, tzinfo=UTC)


async def test_a_ticket_put_on_hold_after_its_due_time_has_breached_not_paused():
    now = Now(T0)
    svc = service(now=now)
    await created(svc)
    late = T0 + timedelta(minutes=12)  # due at 10 minutes; the scheduler has not looked yet
    now.at = late
    await svc.on_ticket_event(EventType.TICKET_STATUS_CHANGED, ticket(status="postponed"), {}, late)
    [view] = await svc.view(await svc.ticket_clocks("TK-1"))
    assert view["state"] == "breached" and view["breached_at"] == T0 + timedelta(minutes=10)
    assert svc.claims.kinds() == [("TK-1", "breached")]


async def test_a_ticket_not_held_here_is_read_from_the_store():
    svc = service()
    other = start_clock("TK-9", SlaTarget.first_response, "std", Policy(name="s", first_response_s=60), 60, T0, None)
    svc.store.docs[other.key] = clock_document(other)
    [view] = await svc.view(await svc.ticket_clocks("TK-9"))
    assert view["target"] == "first_response" and view["state"] == "running"
    assert await svc.ticket_clocks("TK-404") == []


# ------------------------------------------------------------------ restarts and partitions

async def test_after_a_restart_a_breach_decided_before_is_not_raised_again_and_missed_ones_are():
    store, claims, now = Store({"std": Policy(name="std", first_response_s=600)}), Claims(), Now(T0)
    before = service(store, claims, now)
    await created(before, "TK-1")
    await created(before, "TK-2", at=T0 + timedelta(minutes=5))
    now.at = T0 + timedelta(minutes=10)
    assert await before.fire_due() == 1  # TK-1 breached; its clock document still says running
    assert store.docs["TK-1:first_response"]["state"] == "running"

    now.at = T0 + timedelta(hours=1)  # down meanwhile: TK-2 came due
    after = service(store, claims, now)
    assert await after.load() == 2
    assert after.book.clocks["TK-1:first_response"].state == ClockState.breached
    assert await after.fire_due() == 1
    assert claims.kinds() == [("TK-1", "breached"), ("TK-2", "breached")]


async def test_a_decision_whose_claimer_died_before_publishing_is_published_on_load():
    store, claims = Store({"std": Policy(name="std", first_response_s=600)}), Claims()
    svc = service(store, claims)
    await created(svc)
    clock = svc.book.clocks["TK-1:first_response"].model_copy()
    clock.fire(T0 + timedelta(minutes=10))
    await claims.claim(f"{clock.key}:outcome", topic="sla.events", key="TK-1", event=svc._event(clock, "breached"),
                       kind="breached")  # ...and the process died here
    assert claims.published == []
    restarted = service(store, claims, Now(T0 + timedelta(minutes=20)))
    await restarted.load()
    assert claims.kinds() == [("TK-1", "breached")]
    assert await restarted.fire_due() == 0


async def test_each_process_fires_only_the_clocks_of_the_partitions_it_owns():
    store, claims, now = Store({"std": Policy(name="std", first_response_s=600)}), Claims(), Now(T0)
    first, second = service(store, claims, now), service(store, claims, now)
    await created(first, "TK-A", partition=0)
    await created(second, "TK-B", partition=1)
    first.own({0, 1})  # before the second process joins, the first one holds every partition
    await first._loading
    assert set(first.book.clocks) == {"TK-A:first_response", "TK-B:first_response"}
    await first.release()
    first.own({0})
    second.own({1})
    await second._loading
    assert set(first.book.clocks) == {"TK-A:first_response"}  # TK-B went to the second process
    now.at = T0 + timedelta(minutes=10)
    assert (await first.fire_due(), await second.fire_due()) == (1, 1)
    assert sorted(claims.kinds()) == [("TK-A", "breached"), ("TK-B", "breached")]


async def test_partitions_kept_through_a_rebalance_are_not_loaded_again():
    store = Store({"std": Policy(name="std", first_response_s=600)})
    svc = service(store)
    svc.own({0, 1})
    await svc._loading
    await created(svc, "TK-A", partition=0)
    reads = store.reads_of_clocks
    await svc.release()
    assert svc.suspended and await svc.fire_due() == 0
    assert svc.own({0, 1}) is None and store.reads_of_clocks == reads
    assert not svc.suspended and svc.ready.is_set()


async def test_a_lost_claim_takes_the_decision_another_process_made():
    store, claims, now = Store({"std": Policy(name="std", first_response_s=600)}), Claims(), Now(T0)
    svc = service(store, claims, now)
    await created(svc)
    # another process saw the answer at 9 minutes and decided "met" first
    other = svc.book.clocks["TK-1:first_response"].model_copy()
    other.answer(T0 + timedelta(minutes=9))
    await claims.claim(f"{other.key}:outcome", topic="sla.events", key="TK-1", event=svc._event(other, "met"), kind="met")
    now.at = T0 + timedelta(minutes=10)
    assert await svc.fire_due() == 0
    clock = svc.book.clocks["TK-1:first_response"]
    assert clock.state == ClockState.met and clock.met_at == T0 + timedelta(minutes=9)


# ------------------------------------------------------------------ policies by tier and team

async def test_a_vip_customers_ticket_of_the_billing_team_gets_the_policy_made_for_it():
    policies = {
        "vip-billing": Policy(name="v", match=PolicyMatch(tier="vip", team="billing"), first_response_s=300, order=1),
        "vip": Policy(name="v", match=PolicyMatch(tier="vip"), first_response_s=900, order=2),
        "all": Policy(name="a", first_response_s=3600, order=10),
    }
    svc = service(store=Store(policies))
    for tid, extra in (("TK-1", {"customer_tier": "vip", "team": "billing"}), ("TK-2", {"customer_tier": "vip"}),
                       ("TK-3", {"team": "billing"}), ("TK-4", {})):
        await svc.on_ticket_event(EventType.TICKET_CREATED, ticket(tid, **extra), {}, T0)
    assert {tid: svc.book.of_ticket(tid)[0].policy_id for tid in ("TK-1", "TK-2", "TK-3", "TK-4")} == \
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
