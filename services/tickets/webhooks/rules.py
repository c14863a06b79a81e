"""The pure rules of webhook delivery: which events a subscription wants, how a body is signed,
which targets may be called, when to try again, and which queued delivery goes next.

No I/O here (the address check is handed the resolved addresses), so every rule is unit-tested."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import random
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import NamedTuple
from urllib.parse import urlsplit

SECRET_PREFIX = "whsec_"
ALL_EVENTS = ("*",)


def wants(patterns: Iterable[str], event_type: str) -> bool:
    """fnmatch-style patterns over CloudEvents types (`deskstream.ticket.*`); case matters, as in the types."""
    return any(fnmatchcase(event_type, pattern) for pattern in patterns)


def wanted_types(pattern_lists: Iterable[Iterable[str]], known: Iterable[str]) -> frozenset[str]:
    """The known types any subscription wants: the consumer skips the others by their `ce_type`
    header, unparsed, so with no subscription the webhook consumer costs almost nothing."""
    lists = [list(p) for p in pattern_lists]
    return frozenset(t for t in known if any(wants(p, t) for p in lists))


# ------------------------------------------------------------------ secrets and signatures


def new_secret() -> str:
    """24 random bytes, as Standard Webhooks libraries expect them: `whsec_<base64>`."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a `whsec_<base64>` secret stands for; ValueError when it is not one (16 to 64 bytes)."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a secret starts with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a secret is whsec_ followed by base64") from exc
    if not 16 <= len(key) <= 64:
        raise ValueError("a secret's key is 16 to 64 bytes")
    return key


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 over "<id>.<timestamp>.<body>">` (Standard Webhooks, symmetric)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret_key(secret), signed, hashlib.sha256).digest()).decode()


def signed_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt; the timestamp is the attempt's own (receivers refuse stale ones)."""
    return {
        "content-type": "application/cloudevents+json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id, timestamp, body),
    }


# ------------------------------------------------------------------ targets


class Refused(ValueError):
    """A target deskstream will not call."""


def check_url(url: str) -> str:
    """Only http(s) URLs with a host; returns the host to resolve."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise Refused("only http and https URLs are called")
    if not parts.hostname:
        raise Refused("the URL has no host")
    if parts.username or parts.password:
        raise Refused("credentials in the URL are not accepted: sign with the secret instead")
    return parts.hostname


def check_addresses(addresses: Iterable[str], *, allow_private: bool) -> None:
    """Refuse targets inside our own network (loopback, private, link-local — cloud metadata lives
    there — and other reserved ranges): a webhook must not become a way to reach internal services."""
    if allow_private:
        return
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if (
            address.is_private
            or address.is_loopback
            or address.is_link_local
            or address.is_multicast
            or address.is_reserved
            or address.is_unspecified
        ):
            raise Refused(f"{text} is a private, loopback or link-local address")


# ------------------------------------------------------------------ retries


class RetryPolicy(NamedTuple):
    """Exponential back-off with full jitter, capped, for up to `give_up_after_s` after the first try.

    Jitter spreads the retries of many tickets queued for one subscriber, so a subscriber coming
    back is not hit by all of them in the same second."""

    base_s: float = 5.0
    cap_s: float = 1800.0
    give_up_after_s: float = 24 * 3600.0

    def next_attempt(
        self, attempts: int, now: datetime, first_at: datetime, rand: random.Random | None = None
    ) -> datetime | None:
        """When to try again after `attempts` failed tries; None: give up (the delivery has failed)."""
        if (now - first_at).total_seconds() >= self.give_up_after_s:
            return None
        ceiling = min(self.cap_s, self.base_s * 2 ** max(0, attempts - 1))
        delay = ceiling / 2 + (rand or random).uniform(0, ceiling / 2)
        return now + timedelta(seconds=delay)


def is_success(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


# ------------------------------------------------------------------ order per ticket


class Queued(NamedTuple):
    """The head of a lane: the oldest undelivered event of one ticket for one subscriber."""

    lane: tuple[str, str]  # (webhook id, ticket id)
    next_at: datetime


def ready(
    heads: Iterable[Queued],
    *,
    now: datetime,
    busy: set[tuple[str, str]],
    in_flight: dict[str, int],
    limit_per_webhook: int,
    limits: dict[str, int] | None = None,
) -> list[tuple[str, str]]:
    """The lanes to send now: only a lane's head is ever sent (a ticket's next event waits while its
    earlier one is retrying), no lane twice at once, and at most `limit_per_webhook` requests in flight
    per subscriber — so a slow or dead one takes only its own share and never holds up another. `limits`:
    a lower share for some (a subscriber whose breaker is open gets 0, or 1 for its probe)."""
    taken = dict(in_flight)
    chosen = []
    for head in sorted(heads, key=lambda h: h.next_at):
        webhook_id = head.lane[0]
        limit = limit_per_webhook if limits is None else limits.get(webhook_id, limit_per_webhook)
        if head.next_at > now or head.lane in busy or taken.get(webhook_id, 0) >= limit:
            continue
        taken[webhook_id] = taken.get(webhook_id, 0) + 1
        chosen.append(head.lane)
    return chosen


# ------------------------------------------------------------------ a subscriber that keeps failing


class Breaker:
    """One subscriber's circuit breaker. Closed: every lane is worked as usual. After `threshold` failures in
    a row it opens: no lane is tried at all (a dead receiver no longer costs a retry per ticket) until
    `open_until`; then one delivery (the head that is due first) probes it. The probe's 2xx closes the
    breaker and every lane resumes at once; its failure opens it again for twice as long (capped, jittered).
    Lanes keep their order and their entries meanwhile: nothing is skipped, nothing is lost."""

    __slots__ = ("failures", "open_until", "opened", "probing")

    def __init__(self) -> None:
        self.failures = 0  # in a row
        self.open_until: datetime | None = None
        self.opened = 0  # times opened since it last closed (the back-off grows with it)
        self.probing = False


class Breakers:
    def __init__(
        self,
        *,
        threshold: int = 5,
        base_s: float = 5.0,
        cap_s: float = 300.0,
        rand: random.Random | None = None,
    ) -> None:
        self.threshold, self.base_s, self.cap_s = threshold, base_s, cap_s
        self.rand = rand or random.Random()
        self.by_webhook: dict[str, Breaker] = {}

    def allowance(self, webhook_id: str, now: datetime, limit: int) -> int:
        """How many requests the subscriber may have in flight now: `limit` while closed, 1 (the probe) once
        an open breaker's time is up, 0 while it is open (or its probe is out)."""
        b = self.by_webhook.get(webhook_id)
        if b is None or b.open_until is None:
            return limit
        if b.probing or now < b.open_until:
            return 0
        return 1

    def sent(self, webhook_id: str) -> None:
        """A request went out; for an open breaker it is the probe."""
        b = self.by_webhook.get(webhook_id)
        if b is not None and b.open_until is not None:
            b.probing = True

    def succeeded(self, webhook_id: str) -> bool:
        """True when this closes an open breaker (every lane may go again now)."""
        b = self.by_webhook.pop(webhook_id, None)
        return b is not None and b.open_until is not None

    def failed(self, webhook_id: str, now: datetime) -> bool:
        """True when this opens the breaker (again, after a failed probe)."""
        b = self.by_webhook.setdefault(webhook_id, Breaker())
        b.failures += 1
        if b.open_until is None and b.failures < self.threshold:
            return False
        if b.open_until is not None and not b.probing:
            return False  # a request sent before it opened, answering late: the breaker's time stands
        b.probing = False
        b.opened += 1
        ceiling = min(self.cap_s, self.base_s * 2 ** (b.opened - 1))
        b.open_until = now + timedelta(seconds=ceiling / 2 + self.rand.uniform(0, ceiling / 2))
        return True

    def state(self, webhook_id: str, now: datetime) -> dict[str, object]:
        """For the subscription's view: closed, open (until when) or probing."""
        b = self.by_webhook.get(webhook_id)
        if b is None or b.open_until is None:
            return {"state": "closed", "failures_in_a_row": b.failures if b else 0}
        return {
            "state": "probing" if b.probing or now >= b.open_until else "open",
            "failures_in_a_row": b.failures,
            "next_probe_at": b.open_until,
        }
