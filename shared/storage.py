"""The storage seam: how the services write and query MongoDB, and every measure FerretDB 1.24
needs, named, in this one module. The code elsewhere reads as the MongoDB design; where the
server is FerretDB the capabilities below say what changes and the helpers here do it.

What FerretDB 1.24 (SQLite backend) charges, measured on this project's machine (docs/benchmarks.md):
~0.05–0.2 ms of its CPU per inserted document in batches of 100 (more with more fields: a 1.3 KB
document of 15 fields 0.2 ms, the same bytes as one packed field 0.09 ms), ~1 ms per command,
~0.9 ms per `find_one` by `_id`, ~1.8–2.8 ms per `update_one`, ~1.8 ms per `delete_one`; a filter
other than exactly `{_id: x}` (including `$in`) reads every document of the collection; one
`update` command holding more than ~50 matched statements can hang the server."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from shared.mongo import Collection, Mongo

log = logging.getLogger(__name__)
DUPLICATE_KEY = 11000
PACKED = "_packed"


UPDATE_BULK_FERRETDB = 10


@dataclass(frozen=True)
class Capabilities:
    """What the connected server does well, by name (FerretDB 1.24 or MongoDB)."""

    ferretdb: bool
    sql_side_indexes: bool  # FerretDB's SQLite files are ours: lists and lookups by field go through SQL

    @property
    def filters_pushed_down(self) -> bool:
        """Does a filter on a field other than `_id` use an index? (FerretDB: never)."""
        return not self.ferretdb

    @property
    def insert_chunk(self) -> int:
        """Documents per insert command: FerretDB commits inserts in transactions of 100."""
        return 100 if self.ferretdb else 1000

    @property
    def update_bulk_limit(self) -> int:
        """Matched statements per update command. FerretDB 1.24 holds a pooled connection per matched
        statement until the command ends, and its pool (100 per database) is shared by every client;
        four writers (two tickets processes' list documents, two SLA processes' clocks) sent up to 50
        each, and after broker faults in a row (every changed ticket due at once) the database hung
        with all 100 connections held and update commands among those waiting for one (chaos, ninth
        session; docs/reliability.md). Four writers at 10 each leave most of the pool to the rest."""
        return UPDATE_BULK_FERRETDB if self.ferretdb else 1000

    @property
    def packs_documents(self) -> bool:
        """Store append-only documents as their indexed fields plus one JSON text: FerretDB's cost per
        document grows with its number of fields (2.3x for a 1.3 KB message), MongoDB's does not."""
        return self.ferretdb


class Storage:
    """A connected database plus the capabilities of its server."""

    def __init__(self, mongo: Mongo) -> None:
        self.mongo = mongo
        self.caps = Capabilities(ferretdb=False, sql_side_indexes=False)
        self._sql: dict[str, SqlIndexes] = {}

    def collection(self, name: str) -> Collection:
        return self.mongo.collection(name)

    def learn(self) -> None:
        """After `Mongo.detect`: what the server is."""
        self.caps = Capabilities(ferretdb=self.mongo.ferretdb, sql_side_indexes=self.mongo.sqlite_file() is not None)

    # ------------------------------------------------------------ writes
    async def insert_batch(self, collection: Collection, docs: list[dict[str, Any]]) -> set[Any]:
        """Insert the documents in chunks (unordered); a duplicate key means the document is stored
        already (a replay). Returns the `_id`s that were there before."""
        duplicates: set[Any] = set()
        size = self.caps.insert_chunk
        for start in range(0, len(docs), size):
            chunk = docs[start : start + size]
            try:
                await collection.insert_many(chunk, ordered=False)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if exc.details.get("writeConcernErrors") or any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                duplicates.update(chunk[e["index"]]["_id"] for e in errors)
        return duplicates

    async def update_batch(
        self, collection: Collection, updates: list[tuple[dict[str, Any], dict[str, Any]]], *, upsert: bool = False
    ) -> None:
        """Apply (filter, update) pairs, at most `update_bulk_limit` per command, one command at a time."""
        size = self.caps.update_bulk_limit
        for start in range(0, len(updates), size):
            ops = [UpdateOne(f, u, upsert=upsert) for f, u in updates[start : start + size]]
            await collection.bulk_write(ops, ordered=False)

    # ------------------------------------------------------------ packed documents
    def pack(self, doc: dict[str, Any], keep: tuple[str, ...]) -> dict[str, Any]:
        """The document as stored: on FerretDB its `_id` and `keep` fields plus the rest as one JSON text."""
        if not self.caps.packs_documents:
            return doc
        out = {k: doc[k] for k in ("_id", *keep) if k in doc}
        out[PACKED] = orjson.dumps({k: v for k, v in doc.items() if k not in out}, default=_json_default).decode()
        return out

    @staticmethod
    def unpack(doc: dict[str, Any]) -> dict[str, Any]:
        """A stored document as written (packed or not); times in the packed part come back as text."""
        packed = doc.get(PACKED)
        if packed is None:
            return doc
        rest = {k: v for k, v in doc.items() if k != PACKED}
        return {**orjson.loads(packed), **rest}

    # ------------------------------------------------------------ queries by field
    def sql(self, collection: str) -> SqlIndexes | None:
        """FerretDB's SQLite table of `collection`, when its files are ours (see SqlIndexes)."""
        return self._sql.get(collection)

    async def add_sql_indexes(
        self, collection: str, indexes: list[tuple[str, list[str]]], arrays: frozenset[str] = frozenset()
    ) -> SqlIndexes | None:
        """On FerretDB with local files: expression indexes over its table, for `ids_where`."""
        file = self.mongo.sqlite_file()
        if file is None:
            return None
        await self.mongo.create_collections([collection])
        side = SqlIndexes(file, collection, indexes, arrays)
        if not await side.prepare():
            return None
        self._sql[collection] = side
        return side

    async def ids_where(
        self,
        collection: Collection,
        filters: dict[str, Any],
        *,
        limit: int = 1000,
        order: tuple[str, bool] | None = None,
    ) -> list[Any]:
        """The `_id`s of documents matching simple equality filters: through SQL on FerretDB with local
        files, else a `find` (indexed on MongoDB; on a remote FerretDB it reads the collection)."""
        side = self._sql.get(collection.name)
        if side is not None and side.ready:
            if order is None:
                return await side.ids(filters, limit)
            return await side.page(filters, field=order[0], descending=order[1], limit=limit)
        cursor = collection.find(filters, {"_id": 1})
        if order is not None:
            cursor = cursor.sort([(order[0], -1 if order[1] else 1), ("_id", -1 if order[1] else 1)])
        return [d["_id"] async for d in cursor.limit(limit)]

    async def docs_where(
        self,
        collection: Collection,
        filters: dict[str, Any],
        *,
        limit: int = 10_000,
        projection: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Documents matching simple filters (see `ids_where`): one `find` on MongoDB; on FerretDB the
        ids through SQL, then each document by `_id`."""
        side = self._sql.get(collection.name)
        if side is not None and side.ready:
            return await self.read_many(collection, await side.ids(filters, limit), projection)
        return [d async for d in collection.find(filters, projection).limit(limit)]

    async def ids_mentioning(
        self, collection: Collection, texts: list[str], fields: list[str], *, limit: int = 100_000
    ) -> list[Any]:
        """The `_id`s of documents holding one of `texts` as the value of one of `fields` (dotted, through
        arrays) — maybe more: callers check what they read. A scan of the whole collection, for rare admin
        work (which files a purged or erased ticket shares with others): through SQL on FerretDB with
        local files (the stored JSON searched for the texts), a pattern over the packed text on a remote
        FerretDB, the fields themselves on MongoDB."""
        if not texts:
            return []
        side = self._sql.get(collection.name)
        if side is not None and side.ready:
            return await side.ids_containing(texts, limit)
        if self.caps.packs_documents:  # the fields are inside the packed text
            queries: list[dict[str, Any]] = [{PACKED: {"$regex": "|".join(re.escape(t) for t in texts)}}]
        else:
            queries = [{f: {"$in": list(texts)}} for f in fields]
        found: dict[Any, None] = {}
        for query in queries:  # one `find` a field rather than an `$or`, which no server indexes better
            found.update(dict.fromkeys([d["_id"] async for d in collection.find(query, {"_id": 1}).limit(limit)]))
        return list(found)

    async def read_many(
        self, collection: Collection, ids: list[Any], projection: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Documents by `_id`, in the order given (missing ones left out): one `find_one` each, side by
        side — `{_id: {$in: ...}}` is not indexed on FerretDB."""
        if not ids:
            return []
        if self.caps.filters_pushed_down:
            found = {d["_id"]: d async for d in collection.find({"_id": {"$in": ids}}, projection)}
            return [found[i] for i in ids if i in found]
        docs = await asyncio.gather(*(collection.find_one({"_id": i}, projection) for i in ids))
        return [d for d in docs if d is not None]


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    raise TypeError(f"cannot pack {type(value).__name__}")


# ---------------------------------------------------------------- FerretDB's SQLite table

DOC = "_ferretdb_sjson"


def path_of(field: str) -> str:
    if not all(part.replace("_", "").isalnum() for part in field.split(".")):
        raise ValueError(f"not a field name: {field!r}")  # names come from our code, never from clients
    return f"{DOC}->>'$.{field}'"


def sql_value(value: Any) -> Any:
    """FerretDB keeps dates as milliseconds since the epoch and booleans as JSON true/false."""
    if isinstance(value, datetime):
        return round(value.timestamp() * 1000)
    if isinstance(value, bool):
        return int(value)
    return value


class SqlIndexes:
    """Ids out of FerretDB 1.24's SQLite table for one collection, through expression indexes added
    to it. FerretDB pushes nothing but `_id` equality down to its storage: every other filter, sort
    and count is evaluated in Go over every document (~0.5 ms each). When its SQLite files are ours
    (stackctl sets DESKSTREAM_FERRETDB_SQLITE_DIR) the ids are chosen here with one SQL query and the
    documents read by `_id` over the wire as usual. The file is opened read-only (WAL: readers never
    block FerretDB's writer); only the indexes are written, once at start.

    Filters mean what the equivalent MongoDB filter means: equality, an array field containing a
    value (`arrays`), `$all` on an array field, `$in`, `$lte`, `$gt`; purged tombstones left out."""

    def __init__(
        self,
        database_file: Path,
        collection: str,
        indexes: list[tuple[str, list[str]]],
        arrays: frozenset[str] = frozenset(),
    ) -> None:
        self.file, self.collection = database_file, collection
        self.indexes, self.arrays = indexes, arrays
        self.table: str | None = None
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one query at a time on the shared read-only connection

    async def prepare(self) -> bool:
        return await asyncio.to_thread(self._prepare)

    def _prepare(self) -> bool:
        if not self.file.is_file():
            return False
        with sqlite3.connect(self.file, timeout=30) as db:
            row = db.execute(
                "SELECT table_name FROM _ferretdb_collections WHERE name = ?", (self.collection,)
            ).fetchone()
            if row is None:
                return False
            self.table = row[0]
            for name, fields in self.indexes:
                columns = ", ".join(path_of(f) for f in fields)
                db.execute(f'CREATE INDEX IF NOT EXISTS "{self.table}_ds_{name}" ON "{self.table}" ({columns})')
            # statistics, so SQLite picks the most selective index; approximate, so quick at any size
            db.execute("PRAGMA analysis_limit=1000")
            db.execute("ANALYZE")
        self._db = sqlite3.connect(f"file:{self.file}?mode=ro", uri=True, timeout=30, check_same_thread=False)
        return True

    @property
    def ready(self) -> bool:
        return self._db is not None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def where(self, filters: dict[str, Any]) -> tuple[list[str], list[Any]]:
        clauses, args = [f"IFNULL({path_of('purged')}, 0) = 0"], []
        for field, value in filters.items():
            if isinstance(value, dict) and set(value) == {"$all"} and field in self.arrays:
                for item in value["$all"]:
                    clauses.append(f"EXISTS (SELECT 1 FROM json_each({DOC}, '$.{field}') WHERE value = ?)")
                    args.append(sql_value(item))
            elif isinstance(value, dict) and set(value) == {"$in"}:
                marks = ",".join("?" * len(value["$in"]))
                clauses.append(f"{path_of(field)} IN ({marks})" if value["$in"] else "0")
                args.extend(sql_value(v) for v in value["$in"])
            elif isinstance(value, dict) and set(value) <= {"$lte", "$gt"}:
                for op, sql_op in (("$lte", "<="), ("$gt", ">")):
                    if op in value:
                        clauses.append(f"{path_of(field)} {sql_op} ?")
                        args.append(sql_value(value[op]))
            elif isinstance(value, dict):
                raise ValueError(f"no SQL for the filter {field}: {value}")
            elif field in self.arrays:
                clauses.append(f"EXISTS (SELECT 1 FROM json_each({DOC}, '$.{field}') WHERE value = ?)")
                args.append(sql_value(value))
            else:
                clauses.append(f"{path_of(field)} = ?")
                args.append(sql_value(value))
        return clauses, args

    async def page(
        self, filters: dict[str, Any], *, field: str, descending: bool, limit: int, after: tuple[Any, str] | None = None
    ) -> list[str]:
        """Up to `limit` ids matching `filters`, ordered by `field` then `_id`, after the (value, id) of
        the previous page's last document."""
        clauses, args = self.where(filters)
        order = path_of(field)
        if after is not None:  # every document has the sort field, so the value is never null
            value, last_id = sql_value(after[0]), after[1]
            beyond = "<" if descending else ">"
            clauses.append(f"({order} {beyond} ? OR ({order} = ? AND {path_of('_id')} {beyond} ?))")
            args.extend([value, value, last_id])
        direction = "DESC" if descending else "ASC"
        sql = (
            f'SELECT {path_of("_id")} FROM "{self.table}" WHERE {" AND ".join(clauses)} '
            f"ORDER BY {order} {direction}, {path_of('_id')} {direction} LIMIT ?"
        )
        return await asyncio.to_thread(self._ids, sql, [*args, limit])

    async def ids(self, filters: dict[str, Any], limit: int) -> list[str]:
        clauses, args = self.where(filters)
        sql = f'SELECT {path_of("_id")} FROM "{self.table}" WHERE {" AND ".join(clauses)} LIMIT ?'
        return await asyncio.to_thread(self._ids, sql, [*args, limit])

    async def ids_containing(self, texts: list[str], limit: int) -> list[str]:
        """Ids of documents whose stored JSON holds one of `texts` anywhere (a scan of the table)."""
        clauses = " OR ".join(f"instr({DOC}, ?) > 0" for _ in texts)
        sql = f'SELECT {path_of("_id")} FROM "{self.table}" WHERE {clauses} LIMIT ?'
        return await asyncio.to_thread(self._ids, sql, [*texts, limit])

    def _ids(self, sql: str, args: list[Any]) -> list[str]:
        with self._lock:
            assert self._db is not None
            return [row[0] for row in self._db.execute(sql, args)]
