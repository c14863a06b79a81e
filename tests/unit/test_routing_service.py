"""Routing's use cases on the real RoutingStore over an in-memory stand-in for the few MongoDB
operations it uses: automatic knowledge-base answers, the previous agent preferred, working
hours, and the queue. (The same paths on the real stack: tests/e2e/test_routing*.py.)"""
from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.routing.domain import AgentProfile, Presence
from services.routing.kb import Article
from services.routing.rules import Actions, Conditions, KbAnswer, Rule
from services.routing.service import RoutingService
from services.routing.store import RoutingStore
from shared.events import Channel, TicketSnapshot
from shared.mongo import DuplicateKeyError

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday


# ---------------------------------------------------------------- an in-memory collection

def _get(doc: dict, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def _set(doc: dict, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        doc = doc.setdefault(part, {})
    doc[last] = value


def _matches(doc: dict, query: dict) -> bool:
    for path, want in query.items():
        have = _get(doc, path)
        if isinstance(want, dict) and any(k.startswith("$") for k in want):
            for op, arg in want.items():
                ok = {"$ne": lambda: have != arg, "$lt": lambda: have is not None and have < arg,
                      "$lte": lambda: have is not None and have <= arg, "$in": lambda: have in arg}[op]()
                if not ok:
                    return False
        elif have != want:
            return False
    return True


class Result:
    def __init__(self, matched: int = 0, deleted: int = 0, upserted_id: Any = None) -> None:
        self.matched_count, self.deleted_count, self.upserted_id = matched, deleted, upserted_id


class Cursor:
    def __init__(self, docs: list[dict]) -> None:
        self.docs = docs

    def sort(self, keys: list[tuple[str, int]]) -> Cursor:
        for path, direction in reversed(keys):
            self.docs.sort(key=lambda d: _get(d, path), reverse=direction < 0)
        return self

    def limit(self, n: int) -> Cursor:
        self.docs = self.docs[:n]
        return self

    def __aiter__(self):
        async def gen():
            for d in self.docs:
                yield d
        return gen()


class MemoryCollection:
    def __init__(self) -> None:
        self.docs: dict[Any, dict] = {}

    async def create_index(self, *_: Any, **__: Any) -> None:
        return None

    def find(self, query: dict | None = None, _projection: Any = None) -> Cursor:
        return Cursor([copy.deepcopy(d) for d in self.docs.values() if _matches(d, query or {})])

    async def find_one(self, query: dict, _projection: Any = None) -> dict | None:
        return next((copy.deepcopy(d) for d in self.docs.values() if _matches(d, query)), None)

    async def insert_one(self, doc: dict) -> None:
        if doc["_id"] in self.docs:
            raise DuplicateKeyError("duplicate _id")
        self.docs[doc["_id"]] = copy.deepcopy(doc)

    async def update_one(self, query: dict, update: dict, upsert: bool = False) -> Result:
        doc, inserted = next((d for d in self.docs.values() if _matches(d, query)), None), None
        if doc is None:
            if not upsert:
                return Result()
            doc = {k: v for k, v in query.items() if not isinstance(v, dict)}
            for path, value in update.get("$setOnInsert", {}).items():
                _set(doc, path, copy.deepcopy(value))
            self.docs[doc["_id"]] = inserted = doc
        for path, value in update.get("$set", {}).items():
            _set(doc, path, copy.deepcopy(value))
        for path, value in update.get("$addToSet", {}).items():
            items = _get(doc, path) or []
            _set(doc, path, items if value in items else [*items, value])
        for path, values in update.get("$pullAll", {}).items():
            _set(doc, path, [v for v in _get(doc, path) or [] if v not in values])
        unknown = set(update) - {"$set", "$setOnInsert", "$addToSet", "$pullAll"}
        assert not unknown, f"the in-memory collection does not do {unknown}"
        return Result(matched=1, upserted_id=inserted and inserted["_id"])

    async def delete_one(self, query: dict) -> Result:
        for key, d in list(self.docs.items()):
            if _matches(d, query):
                del self.docs[key]
                return Result(deleted=1)
        return Result()

    async def delete_many(self, query: dict) -> Result:
        gone = [k for k, d in self.docs.items() if _matches(d, query)]
        for key in gone:
            del self.docs[key]
        return Result(deleted=len(gone))

    async def count_documents(self, query: dict) -> int:
        return sum(1 for d in self.docs.values() if _matches(d, query))


class MemoryMongo:
    def __init__(self) -> None:
        self.collections: dict[str, MemoryCollection] = {}

    def collection(self, name: str) -> MemoryCollection:
        return self.collections.setdefault(name, MemoryCollection())


class Commands(list):
    """What routing sent to tickets."""

    async def __call__(self, topic: str, event: dict, key: str) -> None:
        self.append(event)

    def of(self, kind: str) -> list[dict]:
        return [e["data"] for e in self if e["type"].endswith(kind)]


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def routing():
    store, sent, clock = RoutingStore(MemoryMongo()), Commands(), Clock()
    return RoutingService(store=store, publish=sent, source="test", clock=clock), store, sent, clock


def ticket(tid: str, *, customer: str = "c1", language: str | None = "en", channel: str = "chat",
           priority: str = "normal") -> TicketSnapshot:
    return TicketSnapshot(id=tid, status="new", priority=priority, channel=Channel(channel), customer_id=customer,
                          language=language, created_at=NOW, version=1)


async def online(service: RoutingService, agent_id: str, **profile: Any) -> None:
    body = {"name": agent_id, "skills": [], "languages": ["en"], "channels": ["chat"], "capacity": 2, **profile}
    await service.put_agent(agent_id, AgentProfile.model_validate(body))
    await service.set_presence(agent_id, Presence.online)


RETURNS = Article(title="Returning an item", language="en", keywords=["return", "refund"],
                  body="Print the return label from your account and drop the parcel at any post office.",
                  questions=["How do I return an item?", "Can I send something back?"])
RETURNS_AR = Article(title="إرجاع المنتجات", language="ar", body="يمكنك إرجاع أي منتج خلال ٣٠ يومًا.",
                     questions=["كيف يمكنني إرجاع المنتج؟"])
KB_RULE = Rule(name="Answer frequent questions", when=Conditions(channel=["chat"]),
               then=Actions(answer_from_kb=KbAnswer(min_score=0.6)))


# ---------------------------------------------------------------- knowledge-base answers

async def test_a_frequent_question_is_answered_with_the_matching_article(routing):
    service, store, sent, _ = routing
    await store.put_article("returns-policy", RETURNS, NOW)
    await store.put_rule("faq", KB_RULE)
    await online(service, "ana")
    await service.ticket_created(ticket("t1"), "Hi! How do I return an item?")
    [automation] = sent.of("apply_automation")
    assert automation["reply"] == RETURNS.body and automation["reply_source"] == "kb:returns-policy"
    assert automation["rules"] == ["Answer frequent questions"]
    assert sent.of("assign_ticket")[0]["agent_id"] == "ana"  # a person still follows up if the customer writes back


async def test_no_answer_when_nothing_scores_high_enough_or_only_another_language_has_one(routing):
    service, store, sent, _ = routing
    await store.put_article("returns-ar", RETURNS_AR, NOW)
    await store.put_article("returns-policy", RETURNS, NOW)
    await store.put_rule("faq", KB_RULE)
    await service.ticket_created(ticket("t1"), "My screen flickers after the update")
    await service.ticket_created(ticket("t2", language="fr"), "How do I return an item?")
    await service.ticket_created(ticket("t3", language="ar"), "كيف يمكنني إرجاع المنتج؟")
    replies = {c["ticket_id"]: c["reply_source"] for c in sent.of("apply_automation")}
    assert replies == {"t1": None, "t2": None, "t3": "kb:returns-ar"}


async def test_spam_is_never_answered(routing):
    service, store, sent, _ = routing
    await store.put_article("returns-policy", RETURNS, NOW)
    await store.put_rule("faq", KB_RULE)
    await store.put_rule("spam", Rule(name="spam", order=1, when=Conditions(text_any=["casino"]),
                                      then=Actions(mark_spam=True)))
    await service.ticket_created(ticket("t1"), "casino bonus! how do I return an item?")
    [automation] = sent.of("apply_automation")
    assert automation["mark_spam"] and automation["reply"] is None and not sent.of("assign_ticket")


# ---------------------------------------------------------------- who gets the ticket

async def test_the_agent_who_served_the_customer_before_gets_their_next_ticket_when_free(routing):
    service, store, sent, _ = routing
    await online(service, "ana", capacity=3)
    await online(service, "ben", capacity=3)
    await service.ticket_created(ticket("t0", customer="other"), "hello")  # ana (by id) now has one
    await service.assigned_elsewhere(ticket("t0", customer="other"), "ana")
    await store.note_served("c1", "ana", NOW)
    await service.ticket_created(ticket("t1", customer="c1"), "me again")
    assignment = sent.of("assign_ticket")[-1]
    assert assignment["agent_id"] == "ana"  # busier than ben, but she knows this customer
    assert "served this customer before" in assignment["reason"]
    await online(service, "ana", capacity=2)  # full now: the customer's next ticket goes to ben
    await service.ticket_created(ticket("t2", customer="c1"), "and again")
    assert sent.of("assign_ticket")[-1]["agent_id"] == "ben"


async def test_an_online_agent_outside_their_working_hours_gets_no_tickets_until_their_shift(routing):
    service, store, sent, clock = routing
    clock.now = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # Monday 08:00 in Riyadh
    await online(service, "layla", working_hours={"timezone": "Asia/Riyadh", "hours": {"mon": [["09:00", "17:00"]]}})
    assert await service.ticket_created(ticket("t1"), "hello") is None
    assert await store.queue_length() == 1
    clock.now += timedelta(hours=1)  # 09:00 in Riyadh
    assert await service.drain_if_waiting() == 1
    assert sent.of("assign_ticket")[0]["agent_id"] == "layla" and await store.queue_length() == 0


async def test_a_ticket_needing_a_skill_level_waits_for_an_agent_who_has_it(routing):
    service, store, sent, _ = routing
    await store.put_rule("legal", Rule(name="legal", when=Conditions(text_any=["lawyer"]),
                                       then=Actions(require_skills=["legal:4"])))
    await online(service, "junior", skills=["legal:2"])
    assert await service.ticket_created(ticket("t1"), "my lawyer will call") is None
    await online(service, "senior", skills=["legal:5", "general"])
    assert [c["agent_id"] for c in sent.of("assign_ticket")] == ["senior"]
    assert "legal (level 5)" in sent.of("assign_ticket")[0]["reason"]


async def test_queued_tickets_go_urgent_first_and_a_ticket_nobody_can_take_does_not_block_the_rest(routing):
    service, store, sent, _ = routing
    await online(service, "ana", capacity=1, languages=["en"])
    await online(service, "sami", capacity=1, languages=["ar"])
    await service.ticket_created(ticket("busy-en"), "first")
    await service.ticket_created(ticket("busy-ar", language="ar"), "اول")
    await service.ticket_created(ticket("ar-waiting", language="ar"), "ثاني")  # waits for sami
    await service.ticket_created(ticket("normal"), "second")
    await service.ticket_created(ticket("urgent", priority="urgent"), "third")
    assert await store.queue_length() == 3
    await service.ticket_finished(ticket("busy-en").model_copy(update={"status": "resolved"}))
    assert sent.of("assign_ticket")[-1] == {**sent.of("assign_ticket")[-1], "ticket_id": "urgent", "agent_id": "ana"}
    await service.ticket_finished(ticket("urgent").model_copy(update={"status": "resolved"}))
    assert sent.of("assign_ticket")[-1]["ticket_id"] == "normal"  # the Arabic one was not offered to ana
    assert [t.id for t, _ in await store.waiting()] == ["ar-waiting"]


async def test_a_slot_left_by_a_crash_is_freed_and_loads_are_healed(routing):
    service, store, sent, clock = routing
    await online(service, "ana", capacity=2)
    agent = await store.get_agent("ana")
    assert await store.reserve(agent, "lost", clock.now)  # the process died before claiming it
    await service.ticket_created(ticket("t1"), "hello")
    await store.agents.update_one({"_id": "ana"}, {"$pullAll": {"tickets": ["t1"]}})  # a mirror update lost
    assert await service.reconcile() == 0  # a first sighting may be a write in flight
    assert await service.reconcile() == 1  # still there: the mirror is healed; the young orphan is left
    assert (await store.get_agent("ana")).tickets == ["lost", "t1"]
    clock.now += timedelta(minutes=2)
    assert await service.reconcile() == 1  # now the orphan is old enough to free
    assert (await store.get_agent("ana")).tickets == ["t1"] and await store.holder_of("t1") == "ana"
    assert await service.reconcile() == 0 and await service.reconcile() == 0


async def test_with_the_background_drainer_a_new_ticket_does_not_jump_the_queue(routing):
    import asyncio

    service, store, sent, _ = routing
    drainer = asyncio.create_task(service.run_drainer())
    await asyncio.sleep(0)
    try:
        await online(service, "ana", capacity=1)
        await service.ticket_created(ticket("t0"), "first")
        await service.ticket_created(ticket("t1"), "waits")
        await service.ticket_finished(ticket("t0").model_copy(update={"status": "resolved"}))  # a slot frees
        await service.ticket_created(ticket("t2"), "arrives just then")
        assert [c["ticket_id"] for c in sent.of("assign_ticket")] == ["t0", "t1"]
        assert [t.id for t, _ in await store.waiting()] == ["t2"]
    finally:
        drainer.cancel()
