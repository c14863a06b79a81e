"""The read model analytics owns: insert-only ticket states, facts and SLA facts, each under its natural key.

Only inserts, because on FerretDB 1.24 only inserts are both atomic and cheap (updates and
deletes cost time in proportion to the collection's size); a duplicate key means the row
is already stored — a redelivered or replayed event. The rows are read back whole once, when
the service starts (see tally.py); there are no queries, and so no indexes beyond `_id`."""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from shared.mongo import DuplicateKeyError, Mongo

KINDS = ("states", "facts", "sla")


class AnalyticsStore:
    def __init__(self, mongo: Mongo) -> None:
        self.collections = {"states": mongo.collection("analytics_ticket_states"),
                            "facts": mongo.collection("analytics_facts"),
                            "sla": mongo.collection("analytics_sla")}

    async def add(self, kind: str, row: dict[str, Any]) -> bool:
        """Store a row once; False when it was there already."""
        try:
            await self.collections[kind].insert_one(dict(row))  # a copy: the driver adds to what it inserts
            return True
        except DuplicateKeyError:
            return False

    async def rows(self, kind: str) -> AsyncIterator[dict[str, Any]]:
        """Every stored row of `kind`, in no particular order."""
        async for row in self.collections[kind].find({}, batch_size=5000):
            yield row
