"""The collection ingest owns: `ingest_blobs`, the bytes of attachments and original mails, keyed by sha256."""
from __future__ import annotations

from collections.abc import Iterable

from pymongo.errors import BulkWriteError

from services.ingest.domain import Blob
from shared.events import utcnow
from shared.mongo import Mongo

DUPLICATE_KEY = 11000


class BlobStore:
    def __init__(self, mongo: Mongo) -> None:
        self.blobs = mongo.collection("ingest_blobs")

    async def put_many(self, blobs: Iterable[Blob]) -> None:
        """Content-addressed, so bytes already stored (a redelivered mail) are left as they are.
        One unordered insert for all of a message's blobs, a duplicate key meaning "already
        kept": FerretDB takes inserts several times faster than upserts, whose rate collapses
        when several requests write at once (bench/ingest.py, docs/benchmarks.md)."""
        now = utcnow()
        docs = [{"_id": blob.sha256, "data": blob.data, "size": len(blob.data), "media_type": blob.media_type,
                 "filename": blob.filename, "stored_at": now} for blob in {b.sha256: b for b in blobs}.values()]
        if not docs:
            return
        try:
            await self.blobs.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if exc.details.get("writeConcernErrors") or any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise

    async def get(self, sha256: str) -> bytes | None:
        doc = await self.blobs.find_one({"_id": sha256}, {"data": 1})
        return bytes(doc["data"]) if doc else None
