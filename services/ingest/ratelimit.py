"""The per-source rate limit: a token bucket for each sender identity on each channel, in memory."""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping


class RateLimited(Exception):
    """A source sent more than its limit; answered 429 with `Retry-After`."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"too many messages from this sender on this channel: retry in {retry_after(wait_s)} s")
        self.wait_s = wait_s


class RateLimiter:
    """`per_minute` messages a minute for each source, after a burst of up to `burst` at once.

    Buckets live in this process (each ingest instance limits what it sees). Only the most
    recently active `max_sources` are remembered: the one forgotten is the one idle longest,
    whose bucket has usually refilled anyway, so memory stays bounded whatever senders claim."""

    def __init__(self, per_minute: float, burst: int, *, clock: Callable[[], float] = time.monotonic,
                 max_sources: int = 100_000) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("a rate limit needs per_minute > 0 and burst >= 1")
        self.rate = per_minute / 60.0  # tokens a second
        self.burst = burst
        self.clock = clock
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # source -> (tokens, at)

    def _tokens(self, source: str, now: float) -> float:
        tokens, at = self._buckets.get(source, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def take(self, costs: Mapping[str, int]) -> float:
        """Takes `costs[source]` tokens from each source's bucket, all or none. Returns 0 when
        taken, else the seconds until every bucket could pay (nothing is taken then). A cost
        above the burst is charged as the burst: it passes once its bucket is full."""
        now = self.clock()
        wait = 0.0
        levels = {}
        for source, cost in costs.items():
            cost = min(cost, self.burst)
            levels[source] = tokens = self._tokens(source, now)
            if tokens < cost:
                wait = max(wait, (cost - tokens) / self.rate)
        if wait:
            return wait
        for source, cost in costs.items():
            self._buckets[source] = (levels[source] - min(cost, self.burst), now)
            self._buckets.move_to_end(source)
        while len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)
        return 0.0


def retry_after(wait_s: float) -> str:
    """`Retry-After` in whole seconds, never 0 (a client would retry at once and be refused again)."""
    return str(max(1, math.ceil(wait_s)))
