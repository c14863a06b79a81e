"""The collections webhooks own.

- `webhooks`: the subscriptions (a few documents; every process holds them in memory).
- `webhook_queue`: one document per (subscription, event) still to deliver, written with
  `insert_many` for a whole consumed batch before its offsets are committed (so nothing is lost),
  keyed `<webhook id>|<event id>[|<replay id>]` (so a replayed batch inserts nothing twice).
  Removed in batches once the delivery is done or has failed.
- `webhook_attempts`: insert-only, one document per attempt (status, latency, error, next
  attempt), written in batches; the delivery log admins read, and the proof a queued delivery is
  finished (`final`) should a crash leave its queue document behind. Pruned by age.

Nothing here is updated per event: FerretDB charges ~0.4 ms per inserted document, 2.5–4 ms per update."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.errors import BulkWriteError

from shared.mongo import DESCENDING, Mongo, upsert

DUPLICATE_KEY = 11000


async def insert_new(collection: Any, docs: list[dict[str, Any]]) -> None:
    """Insert, skipping documents already there (a replayed batch): only duplicate keys are forgiven."""
    if not docs:
        return
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
            raise


class WebhookStore:
    def __init__(self, mongo: Mongo) -> None:
        self.mongo = mongo
        self.subscriptions = mongo.collection("webhooks")
        self.queue = mongo.collection("webhook_queue")
        self.attempts = mongo.collection("webhook_attempts")

    async def ensure_indexes(self) -> None:
        await self.mongo.index(self.attempts, [("webhook_id", 1), ("at", -1)])
        await self.mongo.index(self.queue, [("partition", 1), ("seq", 1)])

    # ------------------------------------------------------------ subscriptions
    async def put(self, webhook_id: str, fields: dict[str, Any], *, created_at: datetime) -> dict[str, Any]:
        await upsert(
            self.subscriptions, {"_id": webhook_id}, {"$set": fields, "$setOnInsert": {"created_at": created_at}}
        )
        return await self.get(webhook_id) or {"_id": webhook_id, **fields, "created_at": created_at}

    async def get(self, webhook_id: str) -> dict[str, Any] | None:
        return await self.subscriptions.find_one({"_id": webhook_id})

    async def all(self) -> list[dict[str, Any]]:
        return [d async for d in self.subscriptions.find({})]

    async def delete(self, webhook_id: str) -> bool:
        return (await self.subscriptions.delete_one({"_id": webhook_id})).deleted_count > 0

    async def disable(self, webhook_id: str, *, reason: str, at: datetime) -> None:
        await self.subscriptions.update_one(
            {"_id": webhook_id}, {"$set": {"active": False, "disabled_reason": reason, "disabled_at": at}}
        )

    # ------------------------------------------------------------ the queue
    async def enqueue(self, docs: list[dict[str, Any]]) -> None:
        await insert_new(self.queue, docs)

    async def pending(self, partitions: set[int]) -> list[dict[str, Any]]:
        """Queued deliveries of these partitions not finished yet, in the order they were queued.
        Read when partitions are assigned (a restart, a rebalance), never per event."""
        return (await self.page(partitions))[0]

    async def page(
        self, partitions: set[int], *, after: str | None = None, limit: int | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Like `pending`, queued after `after` (a `seq`), at most `limit` of them: (the deliveries, the last
        `seq` read when the page was full — more may follow it — else None)."""
        query: dict[str, Any] = {"partition": {"$in": sorted(partitions)}}
        if after is not None:
            query["seq"] = {"$gt": after}
        cursor = self.queue.find(query)
        if limit is not None:
            cursor = cursor.sort([("seq", 1)]).limit(limit)
        queued = [d async for d in cursor]
        last = max(d["seq"] for d in queued) if limit is not None and len(queued) >= limit else None
        return await self._unfinished(queued), last

    async def _unfinished(self, queued: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not queued:
            return []
        ids = [d["_id"] for d in queued]
        finished = {
            d["delivery_id"]
            async for d in self.attempts.find({"final": True, "delivery_id": {"$in": ids}}, {"delivery_id": 1})
        }
        if finished:
            await self.forget(sorted(finished))  # a crash between the final attempt and its removal
        return sorted((d for d in queued if d["_id"] not in finished), key=lambda d: d["seq"])

    async def forget_tickets(self, tickets: set[str]) -> None:
        """An erasure: nothing queued of these tickets stays (their bodies name the customer)."""
        await self.queue.delete_many({"ticket": {"$in": sorted(tickets)}})

    async def forget(self, delivery_ids: list[str]) -> None:
        if delivery_ids:
            await self.queue.delete_many({"_id": {"$in": delivery_ids}})

    # ------------------------------------------------------------ the log
    async def record(self, attempts: list[dict[str, Any]]) -> None:
        await insert_new(self.attempts, attempts)

    async def recent(self, webhook_id: str, limit: int) -> list[dict[str, Any]]:
        cursor = self.attempts.find({"webhook_id": webhook_id}, {"_id": 0, "final": 0, "partition": 0})
        return [d async for d in cursor.sort([("at", DESCENDING)]).limit(limit)]

    async def prune(self, before: datetime) -> int:
        return (await self.attempts.delete_many({"at": {"$lt": before}})).deleted_count
