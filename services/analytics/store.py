"""What analytics keeps in MongoDB: snapshots of its numbers, each with the offsets of
`tickets.events` and `sla.events` it holds, so a restart reads one snapshot and replays only what
came after it. Nothing is written per event.

A snapshot is the tally as JSON, compressed, in chunks of at most 4 MB (a document may not exceed
16 MB), written chunks first and then the header that names them: a reader never sees half of one.
Every instance writes its own (`snapshot:<instance>`); every instance's numbers are the same
function of the same events, so a starting instance takes the newest there is."""

from __future__ import annotations

import uuid
import zlib
from datetime import datetime
from typing import Any

import orjson

from shared.storage import Storage

CHUNK = 4 * 1024 * 1024
PREFIX = "snapshot:"


class AnalyticsStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.snapshots = storage.collection("analytics_snapshots")

    async def save(
        self, instance: str, data: dict[str, Any], positions: dict[tuple[str, int], int], at: datetime
    ) -> int:
        blob = zlib.compress(orjson.dumps(data), 6)
        generation = uuid.uuid4().hex[:12]
        chunks = [blob[i : i + CHUNK] for i in range(0, len(blob), CHUNK)] or [b""]
        await self.storage.insert_batch(
            self.snapshots,
            [{"_id": f"chunk:{instance}:{generation}:{i}", "data": chunk} for i, chunk in enumerate(chunks)],
        )
        old = await self.snapshots.find_one({"_id": PREFIX + instance}, {"generation": 1, "chunks": 1})
        await self.snapshots.replace_one(
            {"_id": PREFIX + instance},
            {
                "_id": PREFIX + instance,
                "generation": generation,
                "chunks": len(chunks),
                "bytes": len(blob),
                "positions": [{"topic": t, "partition": p, "offset": o} for (t, p), o in sorted(positions.items())],
                "at": at,
            },
            upsert=True,
        )
        if old:
            for i in range(old.get("chunks", 0)):
                await self.snapshots.delete_one({"_id": f"chunk:{instance}:{old['generation']}:{i}"})
        return len(blob)

    async def newest(self) -> tuple[dict[str, Any], dict[tuple[str, int], int]] | None:
        """The newest complete snapshot of any instance, with its offsets."""
        headers = [d async for d in self.snapshots.find({"_id": {"$regex": f"^{PREFIX}"}})]
        for header in sorted(headers, key=lambda d: d["at"], reverse=True):
            parts = await self.storage.read_many(
                self.snapshots,
                [f"chunk:{header['_id'][len(PREFIX) :]}:{header['generation']}:{i}" for i in range(header["chunks"])],
            )
            if len(parts) != header["chunks"]:
                continue  # being replaced at this very moment: take the next newest
            data = orjson.loads(zlib.decompress(b"".join(bytes(p["data"]) for p in parts)))
            return data, dict(_position(x) for x in header["positions"])
        return None

    async def drop(self) -> None:
        await self.snapshots.drop()


def _position(stored: dict[str, Any] | list[Any]) -> tuple[tuple[str, int], int]:
    """One held offset. Stored as a document: FerretDB keeps no arrays inside arrays (snapshots
    written as `[topic, partition, offset]` triples, which MongoDB took, are still read)."""
    if isinstance(stored, dict):
        return (stored["topic"], stored["partition"]), stored["offset"]
    topic, partition, offset = stored
    return (topic, partition), offset
