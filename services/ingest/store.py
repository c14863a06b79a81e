"""The collection ingest owns: `ingest_blobs`, the bytes of attachments and original mails, keyed by sha256."""
from __future__ import annotations

from collections.abc import Iterable

from services.ingest.domain import Blob
from shared.events import utcnow
from shared.mongo import Mongo, upsert


class BlobStore:
    def __init__(self, mongo: Mongo) -> None:
        self.blobs = mongo.collection("ingest_blobs")

    async def put_many(self, blobs: Iterable[Blob]) -> None:
        """Content-addressed, so storing the same bytes again (a redelivered mail) changes nothing."""
        for blob in {b.sha256: b for b in blobs}.values():
            await upsert(self.blobs, {"_id": blob.sha256}, {"$setOnInsert": {
                "data": blob.data, "size": len(blob.data), "media_type": blob.media_type,
                "filename": blob.filename, "stored_at": utcnow()}})

    async def get(self, sha256: str) -> bytes | None:
        doc = await self.blobs.find_one({"_id": sha256}, {"data": 1})
        return bytes(doc["data"]) if doc else None
