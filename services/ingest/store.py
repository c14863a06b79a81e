"""The collection ingest owns: `ingest_blobs`, the bytes of attachments and original mails, keyed by sha256,
and the claims mails make on their Message-ID (domain.Normalised.claim)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from pymongo.errors import BulkWriteError

from services.ingest.domain import Blob
from shared.events import utcnow
from shared.mongo import Mongo

DUPLICATE_KEY = 11000


class NotStored(Exception):
    """The store refused a blob (not merely because it was kept already)."""


class BlobStore:
    def __init__(self, mongo: Mongo) -> None:
        self.blobs = mongo.collection("ingest_blobs")

    @staticmethod
    def documents(blobs: Iterable[Blob]) -> list[dict[str, Any]]:
        """One document per distinct blob."""
        now = utcnow()
        return [
            {
                "_id": blob.id,
                "data": blob.data,
                "size": len(blob.data),
                "media_type": blob.media_type,
                "filename": blob.filename,
                "stored_at": now,
            }
            for blob in {b.id: b for b in blobs}.values()
        ]

    async def put_many(self, blobs: Iterable[Blob]) -> set[str]:
        """Content-addressed, so bytes already stored (a redelivered mail) are left as they are.
        One unordered insert for all of a message's blobs, a duplicate key meaning "already
        kept": FerretDB takes inserts several times faster than upserts, whose rate collapses
        when several requests write at once (bench/ingest.py, docs/benchmarks.md). Returns the
        ids of those kept already."""
        docs = self.documents(blobs)
        if not docs:
            return set()
        try:
            await self.blobs.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if exc.details.get("writeConcernErrors") or any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            return {docs[e["index"]]["_id"] for e in errors}
        return set()

    async def insert(self, docs: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
        """One unordered insert. Returns the ids of the documents refused for a reason other than
        being kept already, and of those kept already; raises when the write failed as a whole
        (connection, write concern)."""
        try:
            await self.blobs.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if exc.details.get("writeConcernErrors"):
                raise
            errors = exc.details.get("writeErrors", [])
            return (
                {docs[e["index"]]["_id"] for e in errors if e.get("code") != DUPLICATE_KEY},
                {docs[e["index"]]["_id"] for e in errors if e.get("code") == DUPLICATE_KEY},
            )
        return set(), set()

    async def get(self, sha256: str) -> bytes | None:
        """The bytes kept under an id (a sha256, or a claim's key)."""
        doc = await self.blobs.find_one({"_id": sha256}, {"data": 1})
        return bytes(doc["data"]) if doc else None

    async def delete(self, shas: list[str]) -> int:
        """Files no ticket refers to any more (a purge, a customer's erasure): gone for good."""
        if not shas:
            return 0
        return (await self.blobs.delete_many({"_id": {"$in": list(shas)}})).deleted_count


class _Waiter:
    """One `put_many` call: done when every one of its documents is stored."""

    __slots__ = ("future", "remaining", "kept")

    def __init__(self, future: asyncio.Future[set[str]], remaining: int) -> None:
        self.future, self.remaining = future, remaining
        self.kept: set[str] = set()

    def stored(self, doc_id: str, kept: bool) -> None:
        self.remaining -= 1
        if kept:
            self.kept.add(doc_id)
        if self.remaining == 0 and not self.future.done():
            self.future.set_result(self.kept)

    def failed(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class BlobBatcher:
    """Group commit in front of a BlobStore: the blobs of concurrent requests share one
    `insert_many` (at most `max_docs` documents, about `max_bytes`), because FerretDB charges
    per insert far more than per document (INFRA.md: ~0.4 ms a document in batches of 100,
    1.2–2.4 ms for one alone). A batch leaves `linger_s` after its first blob arrived, or at
    once when full; while `max_in_flight` inserts are running, blobs wait and the batch grows,
    so under load batches get larger rather than inserts more numerous. Each caller returns
    only when all of its own blobs are stored, and fails if any of them was not."""

    def __init__(
        self,
        store: BlobStore,
        *,
        linger_s: float = 0.002,
        max_docs: int = 100,
        max_bytes: int = 8 * 1024 * 1024,
        max_in_flight: int = 2,
    ) -> None:
        self.store = store
        self.linger_s, self.max_docs, self.max_bytes, self.max_in_flight = linger_s, max_docs, max_bytes, max_in_flight
        self._pending: dict[str, tuple[dict[str, Any], list[_Waiter]]] = {}  # _id -> document, who waits for it
        self._pending_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    async def get(self, sha256: str) -> bytes | None:
        return await self.store.get(sha256)

    async def put_many(self, blobs: Iterable[Blob]) -> set[str]:
        """The ids of the blobs that were kept already."""
        docs = self.store.documents(blobs)
        if not docs:
            return set()
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), len(docs))
        for doc in docs:
            entry = self._pending.get(doc["_id"])
            if entry is None:  # the same bytes from two requests at once are inserted once
                self._pending[doc["_id"]] = (doc, [waiter])
                self._pending_bytes += doc["size"]
            else:
                entry[1].append(waiter)
                if entry[0]["data"] != doc["data"]:  # another claim on the same name, in this very batch
                    waiter.kept.add(doc["_id"])
        if self._full():
            self._flush(full_only=True)
        if self._pending and self._timer is None and len(self._in_flight) < self.max_in_flight:
            self._timer = loop.call_later(self.linger_s, self._flush)
        # shielded: a caller that goes away (client disconnect) must not cancel what others wait for
        return await asyncio.shield(waiter.future)

    def _take(self) -> list[tuple[dict[str, Any], list[_Waiter]]]:
        batch: list[tuple[dict[str, Any], list[_Waiter]]] = []
        size = 0
        for key in list(self._pending):
            doc = self._pending[key][0]
            if batch and (len(batch) >= self.max_docs or size + doc["size"] > self.max_bytes):
                break
            batch.append(self._pending.pop(key))
            size += doc["size"]
        self._pending_bytes -= size
        return batch

    def _full(self) -> bool:
        return len(self._pending) >= self.max_docs or self._pending_bytes >= self.max_bytes

    def _flush(self, full_only: bool = False) -> None:
        """Start inserts while there are free slots: of everything pending, or (`full_only`)
        only of full batches, the rest waiting out its linger time to fill up."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending and len(self._in_flight) < self.max_in_flight and (self._full() or not full_only):
            task = asyncio.get_running_loop().create_task(self._insert(self._take()))
            self._in_flight.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._pending:  # what queued meanwhile has waited long enough already
            self._flush()

    async def _insert(self, batch: list[tuple[dict[str, Any], list[_Waiter]]]) -> None:
        try:
            refused, kept = await self.store.insert([doc for doc, _ in batch])
        except Exception as exc:
            for _, waiters in batch:
                for waiter in waiters:
                    waiter.failed(exc)
            return
        for doc, waiters in batch:
            for waiter in waiters:
                if doc["_id"] in refused:
                    waiter.failed(NotStored(f"blob {doc['_id']} was not stored"))
                else:
                    waiter.stored(doc["_id"], doc["_id"] in kept)
