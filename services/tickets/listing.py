"""Which tickets a list shows, in what order, when the store is FerretDB on local SQLite files.

On MongoDB a list is one `find` served by the indexes `TicketStore.ensure_indexes` creates.
FerretDB 1.24 pushes nothing but `_id` equality down to its storage: every other filter, every
sort and every count is evaluated in Go over every document (measured ~0.5 ms a document, so
minutes a page at a million tickets). When its SQLite files are ours (stackctl sets
DESKSTREAM_FERRETDB_SQLITE_DIR), the *ids* of a page are chosen here with one SQL query over
FerretDB's own table, served by expression indexes added to it; the documents themselves are then
read by `_id` through the MongoDB wire protocol as usual. The SQLite file is opened read-only
(WAL: readers never block FerretDB's writer); only the indexes are written, once at start.

The query means the same as the MongoDB filter of `TicketStore.list_view`: equality on a field,
an array field containing a value (tags, SLA states, search terms), `customer.id` in a list, no
purged tombstones, sorted by one field then `_id`, resumed after a cursor."""
from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

DOC = "_ferretdb_sjson"
ARRAYS = {"tags", "sla_states", "search"}  # fields holding lists: "contains" rather than "equals"
# (name, fields): each an expression index over FerretDB's table, for the lists agents open most
INDEXES = [
    ("created", ["created_at", "_id"]), ("updated", ["updated_at", "_id"]), ("prio", ["priority_rank", "_id"]),
    ("status_created", ["status", "created_at"]), ("status_updated", ["status", "updated_at"]),
    ("assignee_updated", ["assignee", "updated_at"]), ("team_created", ["team", "created_at"]),
    ("customer", ["customer.id", "created_at"]), ("substatus", ["substatus", "created_at"]),
    ("status_postponed", ["status", "postponed_until"]), ("status_resolved", ["status", "resolved_at"]),
]


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


def where(filters: dict[str, Any]) -> tuple[list[str], list[Any]]:
    """SQL conditions for the list filters (the shapes `api.list_tickets` builds)."""
    clauses, args = [f"IFNULL({path_of('purged')}, 0) = 0"], []
    for field, value in filters.items():
        if isinstance(value, dict) and set(value) == {"$all"} and field in ARRAYS:
            for item in value["$all"]:
                clauses.append(f"EXISTS (SELECT 1 FROM json_each({DOC}, '$.{field}') WHERE value = ?)")
                args.append(sql_value(item))
        elif isinstance(value, dict) and set(value) == {"$in"}:
            marks = ",".join("?" * len(value["$in"]))
            clauses.append(f"{path_of(field)} IN ({marks})" if value["$in"] else "0")
            args.extend(sql_value(v) for v in value["$in"])
        elif isinstance(value, dict) and set(value) == {"$lte"}:
            clauses.append(f"{path_of(field)} <= ?")
            args.append(sql_value(value["$lte"]))
        elif isinstance(value, dict):
            raise ValueError(f"no SQL for the filter {field}: {value}")
        elif field in ARRAYS:
            clauses.append(f"EXISTS (SELECT 1 FROM json_each({DOC}, '$.{field}') WHERE value = ?)")
            args.append(sql_value(value))
        else:
            clauses.append(f"{path_of(field)} = ?")
            args.append(sql_value(value))
    return clauses, args


class SqliteListing:
    """Page ids out of FerretDB's SQLite table for one collection."""

    def __init__(self, database_file: Path, collection: str) -> None:
        self.file, self.collection = database_file, collection
        self.table: str | None = None
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one query at a time on the shared read-only connection

    # ------------------------------------------------------------ setup (once, at start)
    async def prepare(self) -> bool:
        return await asyncio.to_thread(self._prepare)

    def _prepare(self) -> bool:
        if not self.file.is_file():
            return False
        with sqlite3.connect(self.file, timeout=30) as db:
            row = db.execute("SELECT table_name FROM _ferretdb_collections WHERE name = ?", (self.collection,)).fetchone()
            if row is None:
                return False
            self.table = row[0]
            for name, fields in INDEXES:
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

    # ------------------------------------------------------------ queries
    async def page(self, filters: dict[str, Any], *, field: str, descending: bool, limit: int,
                   after: tuple[Any, str] | None = None) -> list[str]:
        """Up to `limit` ticket ids matching `filters`, ordered by `field` then `_id`, after the
        (value, id) of the previous page's last ticket."""
        clauses, args = where(filters)
        order = path_of(field)
        if after is not None:  # every ticket has the sort fields, so the value is never null
            value, last_id = sql_value(after[0]), after[1]
            beyond = "<" if descending else ">"
            clauses.append(f"({order} {beyond} ? OR ({order} = ? AND {path_of('_id')} {beyond} ?))")
            args.extend([value, value, last_id])
        direction = "DESC" if descending else "ASC"
        sql = (f'SELECT {path_of("_id")} FROM "{self.table}" WHERE {" AND ".join(clauses)} '
               f"ORDER BY {order} {direction}, {path_of('_id')} {direction} LIMIT ?")
        return await asyncio.to_thread(self._ids, sql, [*args, limit])

    async def ids(self, filters: dict[str, Any], limit: int) -> list[str]:
        clauses, args = where(filters)
        sql = f'SELECT {path_of("_id")} FROM "{self.table}" WHERE {" AND ".join(clauses)} LIMIT ?'
        return await asyncio.to_thread(self._ids, sql, [*args, limit])

    def _ids(self, sql: str, args: list[Any]) -> list[str]:
        with self._lock:
            assert self._db is not None
            return [row[0] for row in self._db.execute(sql, args)]
