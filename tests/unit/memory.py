"""In-memory stand-ins for the unit tests: the few MongoDB operations the stores use, a Kafka
producer that keeps what it was given, and records as a stream processor receives them.
(The same paths on the real broker and database: tests/integration and tests/e2e.)"""
from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared.kafka import Outgoing, encode_event
from shared.storage import Storage
from shared.stream import Batch, Record


def _get(doc: dict, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def _set(doc: dict, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        doc = doc.setdefault(part, {})
    doc[last] = value


def _has(have: Any, want: Any) -> bool:
    return want in have if isinstance(have, list) else have == want


def matches(doc: dict, query: dict) -> bool:
    for path, want in query.items():
        have = _get(doc, path)
        if isinstance(want, dict) and any(k.startswith("$") for k in want):
            for op, arg in want.items():
                ok = {"$ne": lambda: have != arg, "$lt": lambda: have is not None and have < arg,
                      "$lte": lambda: have is not None and have <= arg, "$gt": lambda: have is not None and have > arg,
                      "$in": lambda: any(_has(have, a) for a in arg),
                      "$all": lambda: all(_has(have, a) for a in arg),
                      "$regex": lambda: isinstance(have, str) and re.search(arg, have) is not None}[op]()
                if not ok:
                    return False
        elif not _has(have, want):
            return False
    return True


class Result:
    def __init__(self, matched: int = 0, deleted: int = 0, upserted_id: Any = None) -> None:
        self.matched_count, self.deleted_count, self.upserted_id = matched, deleted, upserted_id


class Cursor:
    def __init__(self, docs: list[dict]) -> None:
        self.docs = docs

    def sort(self, keys: list[tuple[str, int]]) -> Cursor:
        for path, direction in reversed(keys):
            self.docs.sort(key=lambda d: (_get(d, path) is None, _get(d, path)), reverse=direction < 0)
        return self

    def limit(self, n: int) -> Cursor:
        self.docs = self.docs[:n] if n else self.docs
        return self

    def __aiter__(self):
        async def gen():
            for d in self.docs:
                yield d
        return gen()


class MemoryCollection:
    def __init__(self, name: str = "c") -> None:
        self.name = name
        self.docs: dict[Any, dict] = {}

    async def create_index(self, *_: Any, **__: Any) -> None:
        return None

    def find(self, query: dict | None = None, _projection: Any = None, **_: Any) -> Cursor:
        return Cursor([copy.deepcopy(d) for d in self.docs.values() if matches(d, query or {})])

    async def find_one(self, query: dict, _projection: Any = None) -> dict | None:
        return next((copy.deepcopy(d) for d in self.docs.values() if matches(d, query)), None)

    async def insert_one(self, doc: dict) -> None:
        if doc["_id"] in self.docs:
            raise DuplicateKeyError("duplicate _id")
        self.docs[doc["_id"]] = copy.deepcopy(doc)

    async def insert_many(self, docs: list[dict], ordered: bool = True) -> None:
        errors = []
        for i, doc in enumerate(docs):
            if doc["_id"] in self.docs:
                errors.append({"index": i, "code": 11000})
            else:
                self.docs[doc["_id"]] = copy.deepcopy(doc)
        if errors:
            raise BulkWriteError({"writeErrors": errors, "nInserted": len(docs) - len(errors)})

    async def replace_one(self, query: dict, doc: dict, upsert: bool = False) -> Result:
        current = next((d for d in self.docs.values() if matches(d, query)), None)
        if current is None and not upsert:
            return Result()
        self.docs[doc.get("_id", query.get("_id"))] = copy.deepcopy({**doc, "_id": doc.get("_id", query.get("_id"))})
        return Result(matched=1)

    async def update_one(self, query: dict, update: dict, upsert: bool = False) -> Result:
        doc, inserted = next((d for d in self.docs.values() if matches(d, query)), None), None
        if doc is None:
            if not upsert:
                return Result()
            doc = {k: v for k, v in query.items() if not isinstance(v, dict)}
            for path, value in update.get("$setOnInsert", {}).items():
                _set(doc, path, copy.deepcopy(value))
            self.docs[doc["_id"]] = inserted = doc
        for path, value in update.get("$set", {}).items():
            _set(doc, path, copy.deepcopy(value))
        for path, value in update.get("$addToSet", {}).items():
            items = _get(doc, path) or []
            values = value["$each"] if isinstance(value, dict) and "$each" in value else [value]
            _set(doc, path, [*items, *(v for v in values if v not in items)])
        for path, values in update.get("$pullAll", {}).items():
            _set(doc, path, [v for v in _get(doc, path) or [] if v not in values])
        unknown = set(update) - {"$set", "$setOnInsert", "$addToSet", "$pullAll"}
        assert not unknown, f"the in-memory collection does not do {unknown}"
        return Result(matched=1, upserted_id=inserted and inserted["_id"])

    async def bulk_write(self, ops: list[UpdateOne], ordered: bool = True) -> None:
        for op in ops:
            doc = op._doc  # noqa: SLF001 - pymongo keeps the update there
            await self.update_one(op._filter, doc, upsert=bool(op._upsert))  # noqa: SLF001

    async def delete_one(self, query: dict) -> Result:
        for key, d in list(self.docs.items()):
            if matches(d, query):
                del self.docs[key]
                return Result(deleted=1)
        return Result()

    async def delete_many(self, query: dict) -> Result:
        doomed = [key for key, d in self.docs.items() if matches(d, query)]
        for key in doomed:
            del self.docs[key]
        return Result(deleted=len(doomed))

    async def count_documents(self, query: dict) -> int:
        return sum(1 for d in self.docs.values() if matches(d, query))

    async def drop(self) -> None:
        self.docs.clear()


class MemoryMongo:
    """What shared.storage.Storage asks of shared.mongo.Mongo, in memory (a MongoDB, not FerretDB)."""

    def __init__(self) -> None:
        self.collections: dict[str, MemoryCollection] = {}
        self.ferretdb = False

    def collection(self, name: str) -> MemoryCollection:
        return self.collections.setdefault(name, MemoryCollection(name))

    async def index(self, *_: Any) -> None:
        return None

    def sqlite_file(self) -> None:
        return None

    async def create_collections(self, _: list[str]) -> None:
        return None


def memory_storage() -> Storage:
    storage = Storage(MemoryMongo())  # type: ignore[arg-type]
    storage.learn()
    return storage


class SentRecords:
    """A producer that keeps what it is given (and can be told to fail, like a broker that is away)."""

    def __init__(self) -> None:
        self.records: list[Outgoing] = []
        self.fail: Exception | None = None
        self.fail_topics: set[str] | None = None  # fail only sends that carry a record for one of these

    async def send_many(self, records, headers=None) -> int:
        records = list(records)
        if self.fail is not None and (self.fail_topics is None or any(r.topic in self.fail_topics for r in records)):
            raise self.fail
        self.records += records
        return len(records)

    async def send(self, topic, value, *, key=None, partition=None, headers=None) -> None:
        await self.send_many([Outgoing(topic, key, value, partition)])

    def events(self, topic: str | None = None) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in self.records if r.value is not None and (topic is None or r.topic == topic)]

    def types(self, topic: str | None = None) -> list[str]:
        return [e["type"] for e in self.events(topic)]

    def clear(self) -> None:
        self.records = []


class Records:
    """Records of one input as the stream runner hands them over, with offsets counting up."""

    def __init__(self) -> None:
        self.offsets: dict[tuple[str, int], int] = {}

    def record(self, topic: str, type_: str, data: BaseModel | dict, *, partition: int = 0, key: str | None = None,
               id_: str | None = None, at: datetime | None = None) -> Record:
        at = at or datetime.now(UTC)
        offset = self.offsets.get((topic, partition), 0)
        self.offsets[(topic, partition)] = offset + 1
        event = orjson.loads(encode_event(type_, data, source="test", subject=key, id_=id_ or f"{topic}-{offset}",
                                          time=at))
        return Record(topic, partition, offset, key, at, event, raw=_Raw(topic, partition, offset, key, event))


class _Raw:
    """The consumer record a dead letter is made from."""

    def __init__(self, topic: str, partition: int, offset: int, key: str | None, event: dict) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.key = key.encode() if key else None
        self.value = orjson.dumps(event)


async def run(processor: Any, *records: Record) -> Batch:
    batch = Batch(list(records))
    await processor.process(batch)
    return batch
