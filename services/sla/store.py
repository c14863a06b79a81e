"""The collections SLA owns: policies and clocks (durable timers, each with its outbox)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.sla.domain import Clock, ClockState, Policy
from shared.events import CloudEvent
from shared.mongo import ASCENDING, Mongo, ReturnDocument
from shared.outbox import FIELD as OUTBOX_FIELD, entry

NEVER = datetime(1970, 1, 1, tzinfo=UTC)


class SlaStore:
    def __init__(self, mongo: Mongo) -> None:
        self.policies = mongo.collection("sla_policies")
        self.clocks = mongo.collection("sla_clocks")

    async def ensure_indexes(self) -> None:
        await self.clocks.create_index([("state", ASCENDING), ("next_fire_at", ASCENDING)])
        await self.clocks.create_index([("ticket_id", ASCENDING)])

    # ------------------------------------------------------------ policies
    async def put_policy(self, policy_id: str, policy: Policy) -> None:
        await self.policies.update_one({"_id": policy_id}, {"$set": policy.model_dump()}, upsert=True)

    async def ensure_policy(self, policy_id: str, policy: Policy) -> None:
        await self.policies.update_one({"_id": policy_id}, {"$setOnInsert": policy.model_dump()}, upsert=True)

    async def all_policies(self) -> dict[str, Policy]:
        return {d["_id"]: Policy.model_validate(d) async for d in self.policies.find({})}

    # ------------------------------------------------------------ clocks
    async def start_clock(self, clock: Clock) -> bool:
        """Create the clock unless it exists (a redelivered event changes nothing)."""
        result = await self.clocks.update_one({"_id": clock.key}, {"$setOnInsert": {
            **clock.model_dump(), "next_fire_at": clock.next_fire_at(), "lease_until": NEVER,
            "version": 1, OUTBOX_FIELD: []}}, upsert=True)
        return result.upserted_id is not None

    async def load(self, key: str) -> tuple[Clock, int] | None:
        doc = await self.clocks.find_one({"_id": key}, {OUTBOX_FIELD: 0})
        return (Clock.model_validate(doc), doc["version"]) if doc else None

    async def clocks_of(self, ticket_id: str) -> list[Clock]:
        return [Clock.model_validate(d) async for d in
                self.clocks.find({"ticket_id": ticket_id}, {OUTBOX_FIELD: 0}).sort([("due_at", ASCENDING)])]

    async def claim_due(self, now: datetime, lease_s: float) -> tuple[Clock, int] | None:
        """Lease one running clock that is due; a crashed owner's lease runs out."""
        doc = await self.clocks.find_one_and_update(
            {"state": ClockState.running.value, "next_fire_at": {"$lte": now}, "lease_until": {"$lte": now}},
            {"$set": {"lease_until": now + timedelta(seconds=lease_s)}, "$inc": {"version": 1}},
            sort=[("next_fire_at", ASCENDING)],
            return_document=ReturnDocument.AFTER)
        return (Clock.model_validate(doc), doc["version"]) if doc else None

    async def next_due(self) -> datetime | None:
        doc = await self.clocks.find_one({"state": ClockState.running.value}, {"next_fire_at": 1},
                                         sort=[("next_fire_at", ASCENDING)])
        return doc["next_fire_at"] if doc else None

    async def save(self, clock: Clock, version: int, events: list[tuple[str, CloudEvent]]) -> dict[str, Any] | None:
        """Write the clock and its events at once, if nobody changed it since `version`."""
        update: dict[str, Any] = {
            "$set": {**clock.model_dump(), "next_fire_at": clock.next_fire_at(), "lease_until": NEVER},
            "$inc": {"version": 1}}
        if events:
            update["$push"] = {OUTBOX_FIELD: {"$each": [entry(t, clock.ticket_id, e) for t, e in events]}}
        return await self.clocks.find_one_and_update({"_id": clock.key, "version": version}, update,
                                                     return_document=ReturnDocument.AFTER)
