"""The read model analytics owns: one row per fact, aggregated on read."""
from __future__ import annotations

from typing import Any

from shared.mongo import DuplicateKeyError, Mongo


class AnalyticsStore:
    def __init__(self, mongo: Mongo) -> None:
        self.tickets = mongo.collection("analytics_tickets")
        self.sla = mongo.collection("analytics_sla")

    async def ensure_indexes(self) -> None:
        await self.tickets.create_index([("channel", 1)])
        await self.sla.create_index([("target", 1), ("kind", 1)])

    async def record(self, collection_name: str, fact: dict[str, Any]) -> None:
        """Insert a fact once: its `_id` is its natural key."""
        collection = self.tickets if collection_name == "tickets" else self.sla
        try:
            await collection.insert_one(fact)
        except DuplicateKeyError:
            pass  # a redelivered or replayed event: the fact is already counted

    async def tickets_by_channel(self) -> dict[str, int]:
        pipeline = [{"$group": {"_id": "$channel", "n": {"$sum": 1}}}]
        return {row["_id"]: row["n"] async for row in self.tickets.aggregate(pipeline)}

    async def sla_counts(self) -> dict[str, dict[str, int]]:
        pipeline = [{"$group": {"_id": {"target": "$target", "kind": "$kind"}, "n": {"$sum": 1}}}]
        out: dict[str, dict[str, int]] = {}
        async for row in self.sla.aggregate(pipeline):
            out.setdefault(row["_id"]["target"], {})[row["_id"]["kind"]] = row["n"]
        return out
