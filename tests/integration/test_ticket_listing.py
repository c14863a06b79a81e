"""Lists on FerretDB served from its SQLite table (shared/storage.py `SqlIndexes`) show exactly what
the MongoDB query shows: same tickets, same order, same pages, for every filter and sort; and the
journal's lookups by ticket and by conversation find what a scan finds."""
from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from services.tickets.store import SORTS, TicketStore

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def ticket(rng: random.Random, n: int) -> dict:
    created = T0 + timedelta(minutes=rng.randrange(0, 500))  # many ties: the order falls back on _id
    status = rng.choice(["new", "open", "answered", "resolved", "closed", "postponed"])
    return {
        "_id": f"TK-{n:05d}", "status": status, "substatus": rng.choice([None, None, "waiting_on_supplier"]),
        "assignee": rng.choice([None, "layla", "omar", "sara"]), "team": rng.choice([None, "billing", "returns"]),
        "channel": rng.choice(["chat", "email", "sms"]), "priority": "normal",
        "priority_rank": rng.randrange(0, 4), "tags": rng.sample(["vip", "refund", "late", "damaged"], rng.randrange(0, 3)),
        "sla_states": rng.sample(["warning", "breached", "met"], rng.randrange(0, 2)),
        "search": rng.sample(["where", "order", "refund", "طلبي", "late"], 2),
        "customer": {"id": f"C-{rng.randrange(0, 30)}", "name": "x"},
        "created_at": created, "updated_at": created + timedelta(seconds=rng.randrange(0, 4) * 30),
        "postponed_until": T0 + timedelta(hours=rng.randrange(-5, 5)) if status == "postponed" else None,
        "resolved_at": T0 + timedelta(hours=rng.randrange(-5, 5)) if status == "resolved" else None,
        "messages": [{"text": "hello"}], "version": 1,
    }


FILTERS = [
    {}, {"status": "open"}, {"assignee": "layla"}, {"assignee": "omar", "status": "answered"},
    {"team": "billing", "channel": "email"}, {"tags": "vip"}, {"sla_states": "breached"},
    {"substatus": "waiting_on_supplier"}, {"search": {"$all": ["refund", "طلبي"]}},
    {"customer.id": {"$in": ["C-3", "C-7", "C-11"]}}, {"customer.id": {"$in": []}}, {"status": "nosuch"},
]


async def every_page(store: TicketStore, filters: dict, sort: str, size: int) -> list[str]:
    ids, cursor = [], None
    while True:
        docs, cursor = await store.list_view(filters=dict(filters), limit=size, cursor=cursor, sort=sort)
        ids += [d["_id"] for d in docs]
        if cursor is None:
            return ids


async def test_lists_from_the_sqlite_table_match_the_mongodb_query(storage, infra):
    if infra.kind != "local":
        pytest.skip("needs the FerretDB SQLite files of the local test stack")
    rng = random.Random(7)
    store = TicketStore(storage)
    await store.tickets.insert_many([ticket(rng, n) for n in range(260)])
    await store.tickets.insert_many([{"_id": f"TK-9{n:04d}", "purged": True, "version": 2} for n in range(5)])
    await store.ensure_indexes()
    side = storage.sql("tickets")
    assert side is not None and side.ready
    try:
        for filters in FILTERS:
            for sort in SORTS:
                storage._sql.pop("tickets")  # noqa: SLF001 - the plain query, as on MongoDB
                expected = await every_page(store, filters, sort, size=23)
                storage._sql["tickets"] = side  # noqa: SLF001
                assert await every_page(store, filters, sort, size=23) == expected, (filters, sort)
    finally:
        side.close()


async def test_the_journal_is_found_by_ticket_and_by_conversation_without_a_scan(storage, infra):
    store = TicketStore(storage)
    await store.ensure_indexes()
    entries = [{"_id": f"m{n}", "ticket_id": f"TK-{n % 3}", "seq": n, "at": T0 + timedelta(seconds=n),
                "thread_key": f"chat:s{n % 2}", "messages": [{"text": f"hello {n}"}]} for n in range(12)]
    assert await store.append(entries) == set()
    assert await store.append(entries[:3]) == {"m0", "m1", "m2"}  # a replay: stored once
    got = await store.entries_of(["TK-1", "TK-2"])
    assert [(e["ticket_id"], e["seq"]) for e in got] == [("TK-1", n) for n in (1, 4, 7, 10)] + [
        ("TK-2", n) for n in (2, 5, 8, 11)]
    assert got[0]["messages"] == [{"text": "hello 1"}]  # packed on FerretDB, whole again here
    assert await store.thread_ticket("chat:s1") == "TK-2"  # the conversation's newest message: m11
    if infra.kind == "local":
        assert storage.sql("ticket_journal") is not None
