"""The collections SLA owns: policies, business-hours calendars, and per tickets.events partition
the clocks (durable timers), the decisions taken on them (a warning, and the one outcome: met or
breached) and the markers of decisions whose event was sent.

Clocks and decisions are kept per partition (`sla_clocks_p<n>`, `sla_decisions_p<n>`,
`sla_sent_p<n>`): the process owning a partition reads back exactly its own when it takes the
partition over, and FerretDB 1.24 — which reads a whole collection for any query but `_id` —
reads only those. Written in batches: new clocks inserted together, a batch's changed clocks
updated once each, decisions inserted (a fired timer never rewrites its clock: its decision is
read back with it)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from services.sla.calendar import Calendar
from services.sla.domain import Clock, Policy
from shared.cache import Cached
from shared.mongo import Collection, loaded_week, stored_week, without_id
from shared.storage import Storage

log = logging.getLogger(__name__)


def clock_document(clock: Clock) -> dict[str, Any]:
    """A clock as stored: its fields, its key as `_id`, and when the scheduler must look at it next."""
    return {"_id": clock.key, **clock.model_dump(), "next_fire_at": clock.next_fire_at()}


class SlaStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.policies = storage.collection("sla_policies")
        self.calendars = storage.collection("sla_calendars")
        self._policies = Cached(self._load_policies)
        self._calendars: dict[str, Cached[Calendar | None]] = {}

    def clocks(self, partition: int) -> Collection:
        return self.storage.collection(f"sla_clocks_p{partition}")

    def decisions(self, partition: int) -> Collection:
        return self.storage.collection(f"sla_decisions_p{partition}")

    def sent(self, partition: int) -> Collection:
        return self.storage.collection(f"sla_sent_p{partition}")

    # ------------------------------------------------------------ policies
    SETTINGS = ("policies", "calendars")

    def drop(self, what: str) -> None:
        """Forget the cached `what` (changed through another SLA process)."""
        if what == "policies":
            self._policies.invalidate()
        elif what == "calendars":
            self._calendars.clear()

    async def put_policy(self, policy_id: str, policy: Policy) -> None:
        await self.policies.replace_one({"_id": policy_id}, {"_id": policy_id, **policy.model_dump()}, upsert=True)
        self._policies.invalidate()

    async def ensure_policy(self, policy_id: str, policy: Policy) -> None:
        await self.policies.update_one({"_id": policy_id}, {"$setOnInsert": policy.model_dump()}, upsert=True)
        self._policies.invalidate()

    async def all_policies(self) -> dict[str, Policy]:
        """Every policy; read on every new ticket, so kept a few seconds (shared/cache.py)."""
        return dict(await self._policies.get())

    async def _load_policies(self) -> dict[str, Policy]:
        return {d["_id"]: Policy.model_validate(d) async for d in self.policies.find({})}

    # ------------------------------------------------------------ calendars
    async def put_calendar(self, calendar_id: str, calendar: Calendar) -> None:
        # JSON mode: holidays are stored as "YYYY-MM-DD" strings (BSON has no date-only type)
        doc = calendar.model_dump(mode="json")
        await self.calendars.replace_one(
            {"_id": calendar_id}, {"_id": calendar_id, **doc, "hours": stored_week(doc["hours"])}, upsert=True
        )
        self._calendars.pop(calendar_id, None)

    async def get_calendar(self, calendar_id: str) -> Calendar | None:
        """A calendar (kept a few seconds: clocks on it ask for it on every change)."""
        cached = self._calendars.get(calendar_id)
        if cached is None:
            cached = self._calendars[calendar_id] = Cached(lambda: self._load_calendar(calendar_id))
        return await cached.get()

    async def _load_calendar(self, calendar_id: str) -> Calendar | None:
        doc = await self.calendars.find_one({"_id": calendar_id})
        return Calendar.model_validate({**without_id(doc), "hours": loaded_week(doc["hours"])}) if doc else None

    # ------------------------------------------------------------ clocks and decisions
    async def add_clocks(self, partition: int, clocks: list[Clock]) -> int:
        """Create clocks (those that exist stay as they are); returns how many were new."""
        if not clocks:
            return 0
        duplicates = await self.storage.insert_batch(self.clocks(partition), [clock_document(c) for c in clocks])
        return len(clocks) - len(duplicates)

    async def save_clocks(self, partition: int, clocks: Iterable[Clock]) -> None:
        updates = []
        for clock in clocks:
            doc = clock_document(clock)
            del doc["_id"]
            updates.append(({"_id": clock.key}, {"$set": doc}))
        if updates:
            await self.storage.update_batch(self.clocks(partition), updates, upsert=True)

    async def add_decisions(self, partition: int, decisions: list[dict[str, Any]]) -> set[str]:
        """Store decisions once (a replayed one is a duplicate); returns the ids stored before."""
        if not decisions:
            return set()
        return await self.storage.insert_batch(self.decisions(partition), decisions)

    async def mark_sent(self, partition: int, decision_ids: list[str], at: str) -> None:
        if decision_ids:
            await self.storage.insert_batch(self.sent(partition), [{"_id": i, "at": at} for i in decision_ids])

    async def forget_clocks(self, partition: int, clock_keys: list[str]) -> None:
        """A purged or erased ticket's clocks, the decisions taken on them and their sent markers go."""
        decisions = [f"{key}:{slot}" for key in clock_keys for slot in ("warning", "outcome")]
        for key in clock_keys:
            await self.clocks(partition).delete_one({"_id": key})
        for decision_id in decisions:
            await self.decisions(partition).delete_one({"_id": decision_id})
            await self.sent(partition).delete_one({"_id": decision_id})

    async def read_partition(self, partition: int) -> tuple[list[Clock], list[dict[str, Any]], set[str]]:
        """Everything of one partition: its clocks, the decisions taken on them, and which were sent."""
        clocks = [Clock.model_validate(d) async for d in self.clocks(partition).find({}, batch_size=5000)]
        decisions = [d async for d in self.decisions(partition).find({}, batch_size=5000)]
        sent = {d["_id"] async for d in self.sent(partition).find({}, {"_id": 1}, batch_size=5000)}
        return clocks, decisions, sent

    async def clocks_of(self, partition: int, ticket_id: str) -> tuple[list[Clock], list[dict[str, Any]]]:
        """One ticket's clocks and their decisions (for a ticket this process does not hold)."""
        clocks = [Clock.model_validate(d) async for d in self.clocks(partition).find({"ticket_id": ticket_id})]
        ids = [f"{c.key}:{slot}" for c in clocks for slot in ("warning", "outcome")]
        decisions = await self.storage.read_many(
            self.decisions(partition), ids, {"kind": 1, "at": 1, "event.data.at": 1}
        )
        return sorted(clocks, key=lambda c: c.started_at), decisions
