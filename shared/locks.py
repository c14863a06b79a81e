"""Per-key serialisation inside one process.

FerretDB 1.24 applies an update by reading the document, changing it in Go and writing
it back without a transaction (FerretDB issue #3040), so two concurrent updates of one
document can lose one of them — even `$inc`, even with a version in the filter. Every
read-modify-write of a document therefore runs under this lock for its key. Across
processes, the guarantees that must hold (capacity, SLA events once) are built on
unique-key inserts instead, which FerretDB and MongoDB both make atomic."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class KeyedLock:
    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
