"""The rate limits at the doors, in memory: a token bucket for each sender identity on each channel,
and one for each client address across the doors."""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from typing import Any

from services.ingest.settings import SIGNED_DOORS, IngestSettings

DOORS = "/v1/inbound/"


class RateLimited(Exception):
    """A source sent more than its limit; answered 429 with `Retry-After`."""

    def __init__(self, wait_s: float, who: str = "this sender on this channel") -> None:
        super().__init__(f"too many messages from {who}: retry in {retry_after(wait_s)} s")
        self.wait_s = wait_s


class RateLimiter:
    """`per_minute` messages a minute for each source, after a burst of up to `burst` at once.

    Buckets live in this process (each ingest instance limits what it sees). Only the most
    recently active `max_sources` are remembered: the one forgotten is the one idle longest,
    whose bucket has usually refilled anyway, so memory stays bounded whatever senders claim."""

    def __init__(
        self, per_minute: float, burst: int, *, clock: Callable[[], float] = time.monotonic, max_sources: int = 100_000
    ) -> None:
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


class AddressLimit:
    """The per-address limit: every request to a door (`/v1/inbound/…`) costs its client address
    one token, before its body is read, so a host that floods the doors — rotating sender
    identities to slip past the per-sender limit — is refused at the cost of a header lookup.

    Left out: addresses in `exempt` (loopback by default: the machine's own demo, tests and
    benchmarks, or a proxy in front that does not say who its client is) and `signed_paths`,
    the doors whose every post is signature-checked: a provider carries many customers' messages
    from a few addresses, and anything else posting there is refused (403) anyway. Behind a
    reverse proxy the client address is the proxy's, unless it sends `X-Forwarded-For` and the
    proxy's address is in FORWARDED_ALLOW_IPS (uvicorn; 127.0.0.1 by default)."""

    def __init__(
        self,
        limiter: RateLimiter,
        *,
        exempt: Collection[str] = ("127.0.0.0/8", "::1"),
        signed_paths: Collection[str] = (),
    ) -> None:
        self.limiter = limiter
        self.networks = [ipaddress.ip_network(n.strip(), strict=False) for n in exempt if n.strip()]
        self.signed_paths = frozenset(signed_paths)
        # a host sends many requests: its address is parsed and looked up once
        self.exempt = functools.lru_cache(maxsize=4096)(self._exempt)

    def _exempt(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:  # not an IP address (a unix socket, a test client's name): nothing to count
            return True
        address = getattr(address, "ipv4_mapped", None) or address  # ::ffff:127.0.0.1 is 127.0.0.1
        return any(address in network for network in self.networks)

    def __call__(self, scope: Mapping[str, Any]) -> None:
        """Raises RateLimited for a door request from an address over its limit."""
        path = scope["path"].removeprefix(scope.get("root_path") or "")
        client = scope.get("client")
        if not path.startswith(DOORS) or path in self.signed_paths or not client or self.exempt(client[0]):
            return
        if wait := self.limiter.take({client[0]: 1}):
            raise RateLimited(wait, "this address")


def address_limit(settings: IngestSettings) -> AddressLimit | None:
    """The per-address limit IngestSettings ask for, or None when INGEST_IP_RATE_LIMIT_PER_MIN is 0."""
    if settings.ip_rate_limit_per_min <= 0:
        return None
    unsigned = settings.unsigned_doors()
    signed = [path for door in SIGNED_DOORS if door not in unsigned for path in door.paths]
    return AddressLimit(
        RateLimiter(settings.ip_rate_limit_per_min, settings.ip_rate_limit_burst),
        exempt=settings.ip_rate_limit_exempt.split(","),
        signed_paths=signed,
    )
