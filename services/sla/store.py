"""The collections SLA owns: policies, business-hours calendars, clocks (durable timers) and
decisions (one per warning and one per outcome of each clock, claimed by a unique key)."""
from __future__ import annotations

from datetime import datetime

from services.sla.calendar import Calendar
from services.sla.domain import Clock, ClockState, Policy
from shared.locks import KeyedLock
from shared.mongo import ASCENDING, Mongo, upsert, without_id


class SlaStore:
    def __init__(self, mongo: Mongo) -> None:
        self.policies = mongo.collection("sla_policies")
        self.calendars = mongo.collection("sla_calendars")
        self.clocks = mongo.collection("sla_clocks")
        self.decisions = mongo.collection("sla_decisions")
        self.locks = KeyedLock()  # one writer per clock document in this process

    async def ensure_indexes(self) -> None:
        await self.clocks.create_index([("state", ASCENDING), ("next_fire_at", ASCENDING)])
        await self.clocks.create_index([("ticket_id", ASCENDING)])
        await self.decisions.create_index([("sent", ASCENDING), ("at", ASCENDING)])

    # ------------------------------------------------------------ policies
    async def put_policy(self, policy_id: str, policy: Policy) -> None:
        await upsert(self.policies, {"_id": policy_id}, {"$set": policy.model_dump()})

    async def ensure_policy(self, policy_id: str, policy: Policy) -> None:
        await upsert(self.policies, {"_id": policy_id}, {"$setOnInsert": policy.model_dump()})

    async def all_policies(self) -> dict[str, Policy]:
        return {d["_id"]: Policy.model_validate(d) async for d in self.policies.find({})}

    # ------------------------------------------------------------ calendars
    async def put_calendar(self, calendar_id: str, calendar: Calendar) -> None:
        # JSON mode: holidays are stored as "YYYY-MM-DD" strings (BSON has no date-only type)
        await upsert(self.calendars, {"_id": calendar_id}, {"$set": calendar.model_dump(mode="json")})

    async def get_calendar(self, calendar_id: str) -> Calendar | None:
        doc = await self.calendars.find_one({"_id": calendar_id})
        return Calendar.model_validate(without_id(doc)) if doc else None

    # ------------------------------------------------------------ clocks
    async def start_clock(self, clock: Clock) -> bool:
        """Create the clock unless it exists (a redelivered event changes nothing)."""
        result = await upsert(self.clocks, {"_id": clock.key}, {"$setOnInsert": {
            **clock.model_dump(), "next_fire_at": clock.next_fire_at()}})
        return result.upserted_id is not None

    async def load(self, key: str) -> Clock | None:
        doc = await self.clocks.find_one({"_id": key})
        return Clock.model_validate(doc) if doc else None

    async def save(self, clock: Clock) -> None:
        await self.clocks.update_one({"_id": clock.key},
                                     {"$set": {**clock.model_dump(), "next_fire_at": clock.next_fire_at()}})

    async def clocks_of(self, ticket_id: str) -> list[Clock]:
        return [Clock.model_validate(d) async for d in
                self.clocks.find({"ticket_id": ticket_id}).sort([("due_at", ASCENDING)])]

    async def due(self, now: datetime, limit: int = 500) -> list[str]:
        return [d["_id"] async for d in self.clocks.find(
            {"state": ClockState.running.value, "next_fire_at": {"$lte": now}}, {"_id": 1})
            .sort([("next_fire_at", ASCENDING)]).limit(limit)]

    async def next_due(self) -> datetime | None:
        doc = await self.clocks.find_one({"state": ClockState.running.value}, {"next_fire_at": 1},
                                         sort=[("next_fire_at", ASCENDING)])
        return doc["next_fire_at"] if doc else None
