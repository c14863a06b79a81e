"""The one module that talks to the MongoDB driver (motor today; PyMongo's async
client later is a change here only). Storage code elsewhere uses the collection API.

Everything written through it stays inside the subset FerretDB 1.24 and MongoDB 7
share: single-document atomic updates, no transactions, no TTL or partial indexes,
and `$pull` only by exact value (so outbox entries are removed with `$pullAll`)."""
from __future__ import annotations

import asyncio
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorCollection, AsyncIOMotorDatabase
from pymongo import ASCENDING, DESCENDING, ReturnDocument  # noqa: F401  (re-exported)
from pymongo.errors import DuplicateKeyError, PyMongoError  # noqa: F401  (re-exported)

Collection = AsyncIOMotorCollection
Database = AsyncIOMotorDatabase


class Mongo:
    """A connected database handle with a cheap health check."""

    def __init__(self, url: str, database: str, *, app_name: str) -> None:
        self.client: AsyncIOMotorClient = AsyncIOMotorClient(
            url, appname=app_name, serverSelectionTimeoutMS=3000, connectTimeoutMS=3000,
            tz_aware=True,
        )
        self.db: Database = self.client[database]

    def collection(self, name: str) -> Collection:
        return self.db[name]

    async def ping(self, timeout: float = 2.0) -> bool:
        try:
            await asyncio.wait_for(self.db.command("ping"), timeout)
            return True
        except Exception:  # any failure means "not healthy", reported by /healthz
            return False

    async def build_info(self) -> dict[str, Any]:
        return await self.db.command("buildInfo")

    def close(self) -> None:
        self.client.close()


def without_id(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    if doc is None:
        return None
    return {k: v for k, v in doc.items() if k != "_id"}


async def upsert(collection: Collection, query: dict[str, Any], update: dict[str, Any], *,
                 returning: bool = False) -> Any:
    """An upsert that survives a racing upsert of the same key: concurrent upserts may both
    try to insert, and the loser gets a duplicate-key error; retried, it matches the winner."""
    for attempt in range(3):
        try:
            if returning:
                return await collection.find_one_and_update(query, update, upsert=True,
                                                            return_document=ReturnDocument.AFTER)
            return await collection.update_one(query, update, upsert=True)
        except DuplicateKeyError:
            if attempt == 2:
                raise
    return None
