"""Settings read on nearly every event (SLA policies, routing rules), kept for a few seconds
instead of read from the database each time."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Cached(Generic[T]):
    """The value `load` returns, kept for `ttl_s`. A change made through this process drops it at
    once (`invalidate`); other processes see a change within `ttl_s`."""

    def __init__(
        self, load: Callable[[], Awaitable[T]], *, ttl_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._load, self._ttl_s, self._clock = load, ttl_s, clock
        self._value: T | None = None
        self._until = float("-inf")
        self._generation = 0

    async def get(self) -> T:
        if self._value is None or self._clock() >= self._until:
            generation = self._generation
            value = await self._load()
            if generation == self._generation:  # not invalidated while loading
                self._value, self._until = value, self._clock() + self._ttl_s
            return value
        return self._value

    def invalidate(self) -> None:
        self._value, self._generation = None, self._generation + 1
