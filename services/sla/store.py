"""The collections SLA owns: policies, business-hours calendars, clocks (durable timers),
decisions (one per warning and one per outcome of each clock, claimed by a unique key) and the
markers of decisions sent.

Clocks are written when a ticket event changes them (insert when started, update otherwise) and
read back whole when this process takes over a partition; the scheduler works from memory
(services/sla/timers.py). A warning or breach raised by the scheduler is recorded as its
decision only — the clock document catches up with the next change of its ticket.

Clocks are spread over `CLOCK_SHARDS` collections by ticket. FerretDB 1.24 (SQLite) finds the
document an update or a query names by reading every document of the collection, and holds up
every other write while an update does: with 100,000 clocks in one collection each update took
about half a second, and the decisions the scheduler inserts meanwhile waited for it. In small
collections an update takes milliseconds; on MongoDB the split costs nothing."""
from __future__ import annotations

import logging
import zlib
from collections.abc import AsyncIterator
from typing import Any

from pymongo.errors import BulkWriteError

from services.sla.calendar import Calendar
from services.sla.domain import Clock, Policy
from shared.locks import KeyedLock
from shared.cache import Cached
from shared.mongo import ASCENDING, Collection, DuplicateKeyError, Mongo, loaded_week, stored_week, upsert, without_id

log = logging.getLogger(__name__)
CLOCK_SHARDS = 64  # fixed: a clock is found in the shard of its ticket
DUPLICATE_KEY = 11000


def clock_shard(ticket_id: str) -> int:
    return zlib.crc32(ticket_id.encode()) % CLOCK_SHARDS


def clock_document(clock: Clock) -> dict[str, Any]:
    """A clock as stored: its fields, its key as `_id`, and when the scheduler must look at it next."""
    return {"_id": clock.key, **clock.model_dump(), "next_fire_at": clock.next_fire_at()}


async def insert_new(collection: Collection, docs: list[dict[str, Any]]) -> int:
    """Insert the documents whose `_id` is new (unordered); returns how many were."""
    if not docs:
        return 0
    try:
        return len((await collection.insert_many(docs, ordered=False)).inserted_ids)
    except BulkWriteError as error:
        if any(e.get("code") != DUPLICATE_KEY for e in error.details.get("writeErrors", [])):
            raise
        return error.details.get("nInserted", 0)


class SlaStore:
    def __init__(self, mongo: Mongo) -> None:
        self.mongo = mongo
        self._policies = Cached(self._load_policies)
        self.policies = mongo.collection("sla_policies")
        self.calendars = mongo.collection("sla_calendars")
        self.clock_shards = [mongo.collection(f"sla_clocks_{i:02d}") for i in range(CLOCK_SHARDS)]
        self.unsharded_clocks = mongo.collection("sla_clocks")  # where clocks were kept before the split
        self.decisions = mongo.collection("sla_decisions")
        self.sent = mongo.collection("sla_decisions_sent")
        self.locks = KeyedLock()  # one writer per clock in this process

    async def ensure_indexes(self) -> None:
        # the per-ticket view of a ticket this process does not hold reads by ticket
        for shard in self.clock_shards:
            await self.mongo.index(shard, [("ticket_id", ASCENDING)])

    async def move_unsharded_clocks(self) -> int:
        """Move clocks stored before the split into their shards (idempotent: several processes
        may do it at once, and one that dies halfway is finished by the next start)."""
        moved, batch = 0, []
        async for doc in self.unsharded_clocks.find({}):
            batch.append(doc)
            if len(batch) == 5000:
                moved += await self._insert_by_shard(batch)
                batch = []
        moved += await self._insert_by_shard(batch)
        if moved:
            log.info("moved %d SLA clock(s) into the per-ticket shards", moved)
        await self.unsharded_clocks.drop()
        return moved

    def _clocks_of(self, ticket_id: str) -> Collection:
        return self.clock_shards[clock_shard(ticket_id)]

    async def _insert_by_shard(self, docs: list[dict[str, Any]]) -> int:
        by_shard: dict[int, list[dict[str, Any]]] = {}
        for doc in docs:
            by_shard.setdefault(clock_shard(doc["ticket_id"]), []).append(doc)
        return sum([await insert_new(self.clock_shards[i], part) for i, part in by_shard.items()])

    # ------------------------------------------------------------ policies
    async def put_policy(self, policy_id: str, policy: Policy) -> None:
        await upsert(self.policies, {"_id": policy_id}, {"$set": policy.model_dump()})
        self._policies.invalidate()

    async def ensure_policy(self, policy_id: str, policy: Policy) -> None:
        await upsert(self.policies, {"_id": policy_id}, {"$setOnInsert": policy.model_dump()})
        self._policies.invalidate()

    async def all_policies(self) -> dict[str, Policy]:
        """Every policy; read on every ticket event, so kept a few seconds (shared/cache.py)."""
        return dict(await self._policies.get())

    async def _load_policies(self) -> dict[str, Policy]:
        return {d["_id"]: Policy.model_validate(d) async for d in self.policies.find({})}

    # ------------------------------------------------------------ calendars
    async def put_calendar(self, calendar_id: str, calendar: Calendar) -> None:
        # JSON mode: holidays are stored as "YYYY-MM-DD" strings (BSON has no date-only type)
        doc = calendar.model_dump(mode="json")
        await upsert(self.calendars, {"_id": calendar_id}, {"$set": {**doc, "hours": stored_week(doc["hours"])}})

    async def get_calendar(self, calendar_id: str) -> Calendar | None:
        doc = await self.calendars.find_one({"_id": calendar_id})
        return Calendar.model_validate({**without_id(doc), "hours": loaded_week(doc["hours"])}) if doc else None

    # ------------------------------------------------------------ clocks
    async def start_clock(self, clock: Clock) -> bool:
        """Create the clock unless it exists (a redelivered event changes nothing). An insert:
        an upsert would read the collection first."""
        try:
            await self._clocks_of(clock.ticket_id).insert_one(clock_document(clock))
            return True
        except DuplicateKeyError:
            return False

    async def add_clocks(self, clocks: list[Clock]) -> int:
        """Create many clocks at once (those that exist stay as they are); returns how many were new."""
        return await self._insert_by_shard([clock_document(c) for c in clocks])

    async def save(self, clock: Clock) -> None:
        doc = clock_document(clock)
        del doc["_id"]
        await self._clocks_of(clock.ticket_id).update_one({"_id": clock.key}, {"$set": doc})

    async def all_clocks(self) -> AsyncIterator[Clock]:
        """Every clock, in no particular order (one pass over each shard)."""
        for shard in self.clock_shards:
            async for doc in shard.find({}):
                yield Clock.model_validate(doc)

    async def clocks_of(self, ticket_id: str) -> list[Clock]:
        return [Clock.model_validate(d) async for d in
                self._clocks_of(ticket_id).find({"ticket_id": ticket_id}).sort([("started_at", ASCENDING)])]

    async def claims_of(self, clocks: list[Clock]) -> list[dict[str, Any]]:
        """The decisions taken on these clocks (for a ticket this process does not hold)."""
        ids = [f"{c.key}:{slot}" for c in clocks for slot in ("warning", "outcome")]
        if not ids:
            return []
        return [d async for d in self.decisions.find({"_id": {"$in": ids}},
                                                      {"kind": 1, "at": 1, "event.data.at": 1})]
