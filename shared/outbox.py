"""Outbox in the document: events are stored on the document they describe, in the same
atomic write as the change, and published afterwards. A crash in between re-sends them
later (the sweeper); consumers de-duplicate on the CloudEvents `id`.

So that the sweeper never has to search the whole collection for pending events, a small
marker (`<collection>_outbox`, keyed by document id) is written before any write that
carries events and removed once they are published: the sweeper reads only markers."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from shared.events import CloudEvent, utcnow
from shared.locks import KeyedLock
from shared.mongo import Collection, DuplicateKeyError


Publish = Callable[[str, dict[str, Any], str], Awaitable[None]]  # (topic, event, key)
FIELD = "pending_events"


def entry(topic: str, key: str, event: CloudEvent) -> dict[str, Any]:
    """One pending event, stored as JSON-ready data so it can be removed by exact value."""
    return {"topic": topic, "key": key, "at": utcnow().isoformat(), "event": event.model_dump(mode="json")}


class Outbox:
    def __init__(self, collection: Collection, publish: Publish, locks: KeyedLock | None = None) -> None:
        self.collection = collection
        self.marks = collection.database[f"{collection.name}_outbox"]
        self.publish = publish
        # the same locks the owning service holds while it changes a document
        self.locks = locks or KeyedLock()

    async def relay(self, doc: dict[str, Any]) -> int:
        """Publish every pending event of `doc` in order, then remove exactly those.
        The caller holds `self.locks` for the document."""
        pending = doc.get(FIELD) or []
        for item in pending:
            await self.publish(item["topic"], item["event"], item["key"])
        if pending:
            await self.collection.update_one({"_id": doc["_id"]}, {"$pullAll": {FIELD: pending}})
        await self.marks.delete_one({"_id": doc["_id"]})
        return len(pending)

    async def mark(self, doc_id: str) -> None:
        """Before a write that carries events: remember the document may have some pending."""
        await self.marks.update_one({"_id": doc_id}, {"$set": {"at": utcnow().isoformat()}}, upsert=True)

    async def sweep_once(self, older_than: timedelta = timedelta(seconds=3), limit: int = 200) -> int:
        """Relay events left behind by a crash between a write and its publish."""
        cutoff = (utcnow() - older_than).isoformat()
        sent = 0
        stale = [d["_id"] async for d in self.marks.find({"at": {"$lt": cutoff}}, {"_id": 1}).limit(limit)]
        for doc_id in stale:
            async with self.locks.hold(doc_id):
                doc = await self.collection.find_one({"_id": doc_id}, {FIELD: 1})
                if doc:
                    sent += await self.relay(doc)
                else:
                    await self.marks.delete_one({"_id": doc_id})
        return sent


class EventClaims:
    """An insert-only outbox for events that are decisions in themselves ("this target was
    breached"). The event is stored under a claim key (`_id`); the insert is atomic on
    FerretDB and MongoDB alike, so among racing processes exactly one makes the decision,
    and the stored event is published until it is marked sent."""

    def __init__(self, collection: Collection, publish: Publish) -> None:
        self.collection = collection
        self.publish = publish

    async def claim(self, claim_id: str, *, topic: str, key: str, event: CloudEvent,
                    **facts: Any) -> tuple[dict[str, Any], bool]:
        """Store the decision unless one exists. Returns the stored decision and whether it
        is ours; only the winner publishes at once (the sweeper covers a winner that died)."""
        doc = {"_id": claim_id, "topic": topic, "key": key, "event": event.model_dump(mode="json"),
               "sent": False, "at": utcnow().isoformat(), **facts}
        try:
            await self.collection.insert_one(doc)
            return doc, True
        except DuplicateKeyError:
            return await self.collection.find_one({"_id": claim_id}), False

    async def relay(self, doc: dict[str, Any]) -> None:
        if doc.get("sent"):
            return
        await self.publish(doc["topic"], doc["event"], doc["key"])
        await self.collection.update_one({"_id": doc["_id"]}, {"$set": {"sent": True}})

    async def sweep_once(self, older_than: timedelta = timedelta(seconds=3), limit: int = 200) -> int:
        cutoff = (utcnow() - older_than).isoformat()
        docs = [d async for d in self.collection.find({"sent": False, "at": {"$lt": cutoff}}).limit(limit)]
        for doc in docs:
            await self.relay(doc)
        return len(docs)
