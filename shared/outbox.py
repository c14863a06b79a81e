"""Outbox in the document: events are stored on the document they describe, in the same
atomic write as the change, and published afterwards. A crash in between re-sends them
later (the sweeper); consumers de-duplicate on the CloudEvents `id`."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from shared.events import CloudEvent, utcnow
from shared.mongo import Collection

log = logging.getLogger(__name__)

Publish = Callable[[str, dict[str, Any], str], Awaitable[None]]  # (topic, event, key)
FIELD = "pending_events"


def entry(topic: str, key: str, event: CloudEvent) -> dict[str, Any]:
    """One pending event, stored as JSON-ready data so it can be removed by exact value."""
    return {"topic": topic, "key": key, "at": utcnow().isoformat(), "event": event.model_dump(mode="json")}


class Outbox:
    def __init__(self, collection: Collection, publish: Publish) -> None:
        self.collection = collection
        self.publish = publish

    async def relay(self, doc: dict[str, Any]) -> int:
        """Publish every pending event of `doc` in order, then remove exactly those."""
        pending = doc.get(FIELD) or []
        for item in pending:
            await self.publish(item["topic"], item["event"], item["key"])
        if pending:
            await self.collection.update_one({"_id": doc["_id"]}, {"$pullAll": {FIELD: pending}})
        return len(pending)

    async def sweep_once(self, older_than: timedelta = timedelta(seconds=3), limit: int = 200) -> int:
        """Relay events left behind by a crash between a write and its publish."""
        cutoff = (utcnow() - older_than).isoformat()
        sent = 0
        async for doc in self.collection.find({FIELD: {"$ne": []}, f"{FIELD}.at": {"$lt": cutoff}},
                                              {FIELD: 1}).limit(limit):
            sent += await self.relay(doc)
        return sent

    async def sweep_forever(self, interval_s: float = 2.0) -> None:
        while True:
            try:
                sent = await self.sweep_once()
                if sent:
                    log.info("outbox sweeper re-sent %d event(s) left by an earlier crash", sent)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox sweep failed; retrying")
            await asyncio.sleep(interval_s)
