"""The collections delivery owns.

- `delivery_queue`: one document per outbound message still to be delivered, with its
  attempt count and when to try next; removed once the message is sent or given up,
  so the sweeper only ever reads what is pending.
- `delivery_claims`: insert-only, `<message id>#<attempt>`. Inserting is atomic on
  FerretDB and MongoDB alike, so among racing workers exactly one makes each attempt.
- `ticket_deliveries`: the final outcome per message; a redelivered event finds it and
  sends nothing again, also after a restart.
- `ticket_blobs`: the bytes of files agents attach to replies, keyed by sha256."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from shared.mongo import DuplicateKeyError, Mongo, upsert


class DeliveryStore:
    def __init__(self, mongo: Mongo) -> None:
        self.queue = mongo.collection("delivery_queue")
        self.claims = mongo.collection("delivery_claims")
        self.outcomes = mongo.collection("ticket_deliveries")
        self.blobs = mongo.collection("ticket_blobs")

    async def enqueue(self, message_id: str, ticket_id: str, now: datetime) -> None:
        await upsert(
            self.queue,
            {"_id": message_id},
            {"$setOnInsert": {"ticket_id": ticket_id, "attempts": 0, "first_at": now, "next_at": now}},
        )

    async def pending(self, message_id: str) -> dict[str, Any] | None:
        return await self.queue.find_one({"_id": message_id})

    async def due(self, now: datetime, limit: int = 100) -> list[str]:
        return [d["_id"] async for d in self.queue.find({"next_at": {"$lte": now}}, {"_id": 1}).limit(limit)]

    async def claim(self, message_id: str, attempt: int, now: datetime) -> dict[str, Any] | None:
        """The attempt is ours, or None and the existing claim is returned by `claim_of`."""
        try:
            await self.claims.insert_one({"_id": f"{message_id}#{attempt}", "at": now})
            return {"at": now}
        except DuplicateKeyError:
            return None

    async def claim_of(self, message_id: str, attempt: int) -> dict[str, Any] | None:
        return await self.claims.find_one({"_id": f"{message_id}#{attempt}"})

    async def schedule(self, message_id: str, *, attempts: int, next_at: datetime, error: str | None = None) -> None:
        await self.queue.update_one(
            {"_id": message_id},
            {"$set": {"attempts": attempts, "next_at": next_at, **({"last_error": error} if error else {})}},
        )

    async def outcome(self, message_id: str) -> dict[str, Any] | None:
        return await self.outcomes.find_one({"_id": message_id})

    async def record_outcome(
        self,
        message_id: str,
        *,
        ticket_id: str,
        state: str,
        detail: str | None,
        provider_id: str | None,
        attempts: int,
        now: datetime,
    ) -> None:
        """Stored before the queue entry goes: a crash in between leaves an entry whose
        outcome is known, and the next look at it only tidies up."""
        await upsert(
            self.outcomes,
            {"_id": message_id},
            {
                "$set": {
                    "ticket_id": ticket_id,
                    "state": state,
                    "detail": detail,
                    "provider_id": provider_id,
                    "attempts": attempts,
                    "at": now,
                }
            },
        )

    async def forget(self, message_id: str) -> None:
        await self.queue.delete_one({"_id": message_id})

    # ------------------------------------------------------------ purge and erasure
    async def outcomes_of(self, ticket_ids: list[str]) -> list[dict[str, Any]]:
        """Every delivery record of these tickets (an export): outcomes, and entries still pending."""
        query = {"ticket_id": {"$in": list(ticket_ids)}}
        return [
            *[{**d, "pending": False} async for d in self.outcomes.find(query)],
            *[{**d, "pending": True} async for d in self.queue.find(query)],
        ]

    async def forget_tickets(self, ticket_ids: list[str]) -> None:
        """Delivery records of purged or erased tickets go: their outcomes (a provider's answer may name
        the customer's address), pending entries and the claims of their attempts."""
        if not ticket_ids:
            return
        query = {"ticket_id": {"$in": list(ticket_ids)}}
        attempts = {d["_id"]: d.get("attempts", 0) async for d in self.outcomes.find(query, {"attempts": 1})}
        attempts.update({d["_id"]: d.get("attempts", 0) async for d in self.queue.find(query, {"attempts": 1})})
        claims = [f"{message_id}#{n}" for message_id, last in attempts.items() for n in range(1, last + 2)]
        if claims:
            await self.claims.delete_many({"_id": {"$in": claims}})
        await self.queue.delete_many(query)
        await self.outcomes.delete_many(query)

    async def drop_blobs(self, shas: list[str]) -> None:
        """Files of agents' replies no ticket refers to any more."""
        if shas:
            await self.blobs.delete_many({"_id": {"$in": list(shas)}})

    # ------------------------------------------------------------ attachments of replies
    async def put_blob(self, data: bytes, media_type: str, filename: str | None, now: datetime) -> str:
        sha = hashlib.sha256(data).hexdigest()
        await upsert(
            self.blobs,
            {"_id": sha},
            {
                "$setOnInsert": {
                    "data": data,
                    "size": len(data),
                    "media_type": media_type,
                    "filename": filename,
                    "stored_at": now,
                }
            },
        )
        return sha

    async def get_blob(self, ref: str) -> bytes | None:
        doc = await self.blobs.find_one({"_id": ref.removeprefix("blob:")}, {"data": 1})
        return bytes(doc["data"]) if doc else None
