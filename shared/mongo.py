"""The one module that talks to the MongoDB driver (motor today; PyMongo's async
client later is a change here only). Storage code elsewhere uses the collection API.

Everything written through it stays inside the subset FerretDB 1.24 and MongoDB 7
share: single-document atomic updates, no transactions, no TTL or partial indexes,
and `$pull` only by exact value (so outbox entries are removed with `$pullAll`)."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any, overload

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorCollection, AsyncIOMotorDatabase
from prometheus_client import CollectorRegistry, Counter, Histogram
from pymongo import ASCENDING, DESCENDING, ReturnDocument, monitoring  # noqa: F401  (re-exported)
from pymongo.errors import DuplicateKeyError, PyMongoError  # (also re-exported)

Collection = AsyncIOMotorCollection
Database = AsyncIOMotorDatabase
log = logging.getLogger(__name__)
# set by deploy/local/stackctl.py for the services it starts next to its own FerretDB
SQLITE_DIR_ENV = "DESKSTREAM_FERRETDB_SQLITE_DIR"


SOCKET_TIMEOUT_MS = 60_000


class Mongo:
    """A connected database handle with a cheap health check."""

    def __init__(self, url: str, database: str, *, app_name: str, registry: CollectorRegistry | None = None) -> None:
        listeners = [CommandMetrics(registry)] if registry is not None else []
        self.client: AsyncIOMotorClient = AsyncIOMotorClient(
            url,
            appname=app_name,
            serverSelectionTimeoutMS=3000,
            connectTimeoutMS=3000,
            # no command of ours takes a minute; one that does is stuck (FerretDB 1.24 was seen to stop
            # answering every command once all 100 of its SQLite connections were taken): fail it, so
            # the batch is retried and the log says so, instead of waiting silently for ever
            socketTimeoutMS=SOCKET_TIMEOUT_MS,
            tz_aware=True,
            event_listeners=listeners,
        )
        self.db: Database = self.client[database]
        self.database = database
        self.names: set[str] = set()
        self.ferretdb = False  # learnt on connect (`detect`)

    def collection(self, name: str) -> Collection:
        self.names.add(name)
        return self.db[name]

    async def detect(self) -> None:
        """Which server answers: FerretDB says so in `buildInfo`."""
        info = await self.build_info()
        self.ferretdb = "ferretdb" in info or "ferretdbVersion" in info

    async def index(self, collection: Collection, keys: list[tuple[str, int]]) -> None:
        """A secondary index for MongoDB's query planner. FerretDB 1.24 never uses one (it pushes
        only `_id` equality down to storage) yet updates it on every write, so there it is not made
        (the tickets' lists on FerretDB have SQL indexes of their own: shared/storage.py, SqlIndexes)."""
        if not self.ferretdb:
            await collection.create_index(keys)

    def by_id(self, doc_id: Any, **guard: Any) -> dict[str, Any]:
        """The filter of a conditional single-document write. On MongoDB the guard (a version,
        say) makes the write conditional and atomic. FerretDB 1.24 applies updates as a read
        and a separate write, so a guard does not make them atomic there (two racing guarded
        writes both succeed) — and any filter beyond `_id` alone scans the whole collection.
        So on FerretDB the guard is left out; what keeps writes to one document apart there is
        that one process owns each key (its partition) and writes it in order."""
        return {"_id": doc_id} if self.ferretdb else {"_id": doc_id, **guard}

    def sqlite_file(self) -> Path | None:
        """FerretDB's SQLite file for this database, when the server is FerretDB and its files
        are local to this process (stackctl sets DESKSTREAM_FERRETDB_SQLITE_DIR); else None."""
        folder = os.environ.get(SQLITE_DIR_ENV)
        return Path(folder) / f"{self.database}.sqlite" if self.ferretdb and folder else None

    async def create_collections(self, names: list[str]) -> None:
        existing = set(await self.db.list_collection_names())
        for name in names:
            if name not in existing:
                try:
                    await self.db.create_collection(name)
                except PyMongoError:
                    pass  # created meanwhile by another service

    async def index_lookups(self) -> int:
        """FerretDB 1.24's SQLite backend looks documents up by `_id` with an SQL expression
        its own `_id` index does not match, so every lookup reads the whole table (measured:
        3 s per `find_one({_id})` at 100k documents, ~1 ms with a matching index). When the
        database file is ours (stackctl sets DESKSTREAM_FERRETDB_SQLITE_DIR), add that index
        to each collection this service uses; elsewhere (MongoDB, external FerretDB) nothing."""
        folder = os.environ.get(SQLITE_DIR_ENV)
        if not (self.ferretdb and folder):
            return 0
        await self.create_collections(sorted(self.names))
        return await asyncio.to_thread(
            _sqlite_lookup_indexes, Path(folder) / f"{self.database}.sqlite", sorted(self.names)
        )

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


class CommandMetrics(monitoring.CommandListener):
    """Every database command this process sends, by command and collection, with its time:
    `deskstream_db_commands_total` and `deskstream_db_command_seconds` on /metrics; and the documents
    its writes carry (`deskstream_db_documents_total`): FerretDB's cost is per document, not per
    command."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.count = Counter(
            "deskstream_db_commands", "database commands sent", ["command", "collection"], registry=registry
        )
        self.seconds = Histogram(
            "deskstream_db_command_seconds",
            "database command round trip",
            ["command"],
            registry=registry,
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2),
        )
        self.documents = Counter(
            "deskstream_db_documents",
            "documents written (inserted, updated or deleted statements) by database commands sent",
            ["command", "collection"],
            registry=registry,
        )
        self._started: dict[int, tuple[str, str]] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        collection = event.command.get("collection" if name == "getMore" else name)
        collection = collection if isinstance(collection, str) else ""
        self._started[event.request_id] = (name, collection)
        if (field := _WRITTEN.get(name)) is not None:
            self.documents.labels(name, collection).inc(len(event.command.get(field) or ()))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._finish(event.request_id, event.duration_micros)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._finish(event.request_id, event.duration_micros)

    def _finish(self, request_id: int, micros: int) -> None:
        command, collection = self._started.pop(request_id, ("?", ""))
        self.count.labels(command, collection).inc()
        self.seconds.labels(command).observe(micros / 1e6)


_WRITTEN = {"insert": "documents", "update": "updates", "delete": "deletes"}  # the statements of a write command


def _sqlite_lookup_indexes(path: Path, names: list[str]) -> int:
    if not path.is_file():
        return 0
    made = 0
    with sqlite3.connect(path, timeout=30) as db:
        marks = ",".join("?" * len(names))
        tables = db.execute(
            f"SELECT name, table_name FROM _ferretdb_collections WHERE name IN ({marks})", names
        ).fetchall()
        for _, table in tables:
            index = f"{table}_deskstream_id"
            if db.execute("SELECT 1 FROM sqlite_master WHERE type='index' AND name=?", (index,)).fetchone():
                continue
            # exactly the expression FerretDB's `_id` pushdown queries with
            db.execute(f'CREATE UNIQUE INDEX IF NOT EXISTS "{index}" ON "{table}" (_ferretdb_sjson->\'$._id\')')
            made += 1
    return made


@overload
def without_id(doc: dict[str, Any]) -> dict[str, Any]: ...
@overload
def without_id(doc: dict[str, Any] | None) -> dict[str, Any] | None: ...
def without_id(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    if doc is None:
        return None
    return {k: v for k, v in doc.items() if k != "_id"}


def stored_week(hours: dict[str, list[Any]]) -> dict[str, list[str]]:
    """Weekly hours as stored: FerretDB keeps no arrays inside arrays, so a day's ranges
    `[["09:00", "13:00"], ["14:00", "17:00"]]` are kept as `["09:00-13:00", "14:00-17:00"]`."""
    return {day: ["-".join(r) if not isinstance(r, str) else r for r in ranges] for day, ranges in hours.items()}


def loaded_week(hours: dict[str, list[Any]]) -> dict[str, list[list[str]]]:
    """The API's shape again (documents written before, nested, are read as they are)."""
    return {day: [r.split("-", 1) if isinstance(r, str) else list(r) for r in ranges] for day, ranges in hours.items()}


async def upsert(
    collection: Collection, query: dict[str, Any], update: dict[str, Any], *, returning: bool = False
) -> Any:
    """An upsert that survives a racing upsert of the same key: concurrent upserts may both
    try to insert, and the loser gets a duplicate-key error; retried, it matches the winner."""
    for attempt in range(3):
        try:
            if returning:
                return await collection.find_one_and_update(
                    query, update, upsert=True, return_document=ReturnDocument.AFTER
                )
            return await collection.update_one(query, update, upsert=True)
        except DuplicateKeyError:
            if attempt == 2:
                raise
    return None
