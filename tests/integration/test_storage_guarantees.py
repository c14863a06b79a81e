"""Storage guarantees on the real MongoDB-wire server: no double booking, exactly one
ticket per conversation, events kept until published, SLA clocks fired once."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from services.routing.domain import AgentProfile, Presence
from services.routing.store import RoutingStore
from services.sla.domain import Policy
from services.sla.service import SlaService
from services.sla.store import SlaStore
from services.tickets.service import TicketService
from services.tickets.store import TicketStore
from shared.events import Channel, TicketSnapshot, utcnow
from shared.outbox import EventClaims, Outbox
from tests.unit.test_ticket_lifecycle import chat

pytestmark = pytest.mark.integration


class Published(list):
    async def __call__(self, topic, event, key):
        self.append((topic, event["type"], key, event["id"]))


async def online_agent(store: RoutingStore, agent_id: str, capacity: int):
    now = utcnow()
    await store.upsert_agent(agent_id, AgentProfile(name=agent_id, capacity=capacity), now)
    return await store.set_presence(agent_id, Presence.online, now)


async def test_two_racing_routers_cannot_book_the_last_slot_twice(mongo):
    # two stores = two routing processes: they share nothing but the database
    first, second = RoutingStore(mongo), RoutingStore(mongo)
    await first.ensure_indexes()
    agent = await online_agent(first, "a1", capacity=1)
    results = await asyncio.gather(*(store.reserve(agent, f"t{i}", utcnow())
                                     for i, store in enumerate([first, second] * 5)))
    assert results.count(True) == 1
    assert (await first.get_agent("a1")).load == 1


async def test_a_ticket_claimed_by_two_routers_ends_with_one_agent(mongo):
    first, second = RoutingStore(mongo), RoutingStore(mongo)
    a1, a2 = await online_agent(first, "a1", 2), await online_agent(first, "a2", 2)
    assert await first.reserve(a1, "t1", utcnow()) and await second.reserve(a2, "t1", utcnow())
    winners = await asyncio.gather(first.claim("t1", "a1"), second.claim("t1", "a2"))
    assert winners[0] == winners[1]
    loads = {a.id: a.load for a in await first.all_agents()}
    assert sorted(loads.values()) == [0, 1] and loads[winners[0]] == 1


async def test_a_repeated_release_changes_nothing_and_frees_the_slot(mongo):
    store = RoutingStore(mongo)
    agent = await online_agent(store, "a1", capacity=1)
    assert await store.reserve(agent, "t1", utcnow())
    assert await store.holder_of("t1") == "a1"
    assert not await store.reserve(await store.get_agent("a1"), "t2", utcnow())
    assert await store.release("t1") == ["a1"]
    assert await store.release("t1") == []
    assert await store.reserve(await store.get_agent("a1"), "t2", utcnow())


async def test_messages_of_one_chat_session_filed_concurrently_land_in_one_ticket(mongo):
    store = TicketStore(mongo)
    await store.ensure_indexes()
    published = Published()
    service = TicketService(store=store, outbox=Outbox(store.tickets, published), source="test")
    messages = [chat(f"m{i}") for i in range(8)] + [chat("m0")]  # the last is a redelivery
    ticket_ids = await asyncio.gather(*(service.file_message(m) for m in messages))
    assert len(set(ticket_ids)) == 1
    ticket = await store.load(ticket_ids[0])
    assert sorted(m.message_id for m in ticket.messages) == sorted(f"m{i}" for i in range(8))
    created = [p for p in published if p[1] == "deskstream.ticket.created"]
    assert len(created) == 1 and created[0][2] == ticket.id
    assert (await store.pending_of(ticket.id))["pending_events"] == []


async def test_events_stay_in_the_outbox_until_published_and_the_sweeper_resends_them(mongo):
    store = TicketStore(mongo)

    async def broker_down(topic, event, key):
        raise ConnectionError("kafka is down")

    failing = TicketService(store=store, outbox=Outbox(store.tickets, broker_down), source="test")
    with pytest.raises(ConnectionError):
        await failing.file_message(chat("m1"))
    ticket_id = await store.thread_ticket("chat:s1")
    assert len((await store.pending_of(ticket_id))["pending_events"]) == 1

    published = Published()
    outbox = Outbox(store.tickets, published)
    assert await outbox.sweep_once(older_than=timedelta(0)) == 1
    assert [p[1] for p in published] == ["deskstream.ticket.created"]
    assert await outbox.sweep_once(older_than=timedelta(0)) == 0
    # the redelivered message finds its ticket and files nothing twice
    recovered = TicketService(store=store, outbox=outbox, source="test")
    assert await recovered.file_message(chat("m1")) == ticket_id
    assert len((await store.load(ticket_id)).messages) == 1


async def test_a_due_sla_clock_fires_once_even_with_two_schedulers(mongo):
    store = SlaStore(mongo)
    await store.ensure_indexes()
    published = Published()
    policy = Policy(name="fast", first_response_s=1, warn_before_s=0)
    # two SLA processes: separate stores (separate in-process locks), one database
    a, b = (SlaService(store=SlaStore(mongo), claims=EventClaims(store.decisions, published), source="test",
                       default_policy=policy) for _ in range(2))
    ticket = TicketSnapshot(id="TK-1", status="new", priority="normal", channel=Channel.chat, customer_id="c",
                            created_at=utcnow() - timedelta(seconds=5), version=1)
    await a.ticket_created(ticket)
    await a.ticket_created(ticket)  # redelivered: still one clock
    await asyncio.gather(a.fire_due(), b.fire_due(), a.fire_due(), b.agent_replied("TK-1", utcnow()))
    outcomes = [p for p in published if p[1] in ("deskstream.sla.breached", "deskstream.sla.met")]
    assert len(outcomes) == 1 and outcomes[0][3] == "sla-TK-1-first_response-breached"
    assert (await b.ticket_clocks("TK-1"))[0].state == "breached"  # what any instance shows
    assert await a.fire_due() == 0 and len(published) == 1
