"""The collections SLA owns: policies, business-hours calendars, clocks (durable timers),
decisions (one per warning and one per outcome of each clock, claimed by a unique key) and the
markers of decisions sent.

Clocks are written when a ticket event changes them (insert when started, update otherwise) and
read back whole when this process takes over a partition; the scheduler works from memory
(services/sla/timers.py). A warning or breach raised by the scheduler is recorded as its
decision only — the clock document catches up with the next change of its ticket — because on
FerretDB 1.24 an update reads the whole collection and holds up other writes while it does."""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from services.sla.calendar import Calendar
from services.sla.domain import Clock, Policy
from shared.locks import KeyedLock
from shared.mongo import ASCENDING, DuplicateKeyError, Mongo, upsert, without_id


def clock_document(clock: Clock) -> dict[str, Any]:
    """A clock as stored: its fields, its key as `_id`, and when the scheduler must look at it next."""
    return {"_id": clock.key, **clock.model_dump(), "next_fire_at": clock.next_fire_at()}


class SlaStore:
    def __init__(self, mongo: Mongo) -> None:
        self.policies = mongo.collection("sla_policies")
        self.calendars = mongo.collection("sla_calendars")
        self.clocks = mongo.collection("sla_clocks")
        self.decisions = mongo.collection("sla_decisions")
        self.sent = mongo.collection("sla_decisions_sent")
        self.locks = KeyedLock()  # one writer per clock in this process

    async def ensure_indexes(self) -> None:
        # the per-ticket view of a ticket this process does not hold reads by ticket
        await self.clocks.create_index([("ticket_id", ASCENDING)])

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
        """Create the clock unless it exists (a redelivered event changes nothing). An insert:
        an upsert would read the collection first."""
        try:
            await self.clocks.insert_one(clock_document(clock))
            return True
        except DuplicateKeyError:
            return False

    async def load(self, key: str) -> Clock | None:
        doc = await self.clocks.find_one({"_id": key})
        return Clock.model_validate(doc) if doc else None

    async def save(self, clock: Clock) -> None:
        doc = clock_document(clock)
        del doc["_id"]
        await self.clocks.update_one({"_id": clock.key}, {"$set": doc})

    async def all_clocks(self) -> AsyncIterator[Clock]:
        """Every clock, in no particular order (one pass over the collection)."""
        async for doc in self.clocks.find({}):
            yield Clock.model_validate(doc)

    async def clocks_of(self, ticket_id: str) -> list[Clock]:
        return [Clock.model_validate(d) async for d in
                self.clocks.find({"ticket_id": ticket_id}).sort([("started_at", ASCENDING)])]

    async def claims_of(self, clocks: list[Clock]) -> list[dict[str, Any]]:
        """The decisions taken on these clocks (for a ticket this process does not hold)."""
        ids = [f"{c.key}:{slot}" for c in clocks for slot in ("warning", "outcome")]
        if not ids:
            return []
        return [d async for d in self.decisions.find({"_id": {"$in": ids}},
                                                      {"kind": 1, "at": 1, "event.data.at": 1})]
