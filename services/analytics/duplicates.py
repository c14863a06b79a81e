"""Duplicate suspicion: does a new ticket repeat an open or recently resolved ticket of the same customer?

Pure. The rules, in order of strength:
- two different order ids mean two requests, whatever the wording;
- the same order id, the same product, the same kind of fault each count for the same request, and a
  different product or fault (both known) against it;
- the same product alone is not enough: without the same order or fault only a near copy counts;
- the wording (character shingles of the normalised text, exact Jaccard: a customer has few tickets, so
  nothing needs estimating here) adds the rest, which is what catches a retelling in the same language.
Weights and the threshold were set on the train half of tests/data/similar_tickets.jsonl
(bench/duplicates.py reports both halves)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.analytics.similar import Features, jaccard

NEAR_COPY = 0.5  # without the same order or fault, only wording this close says "the same request"
THRESHOLD = 0.45  # a score from here on is a suspected duplicate (set on the train half: docs/benchmarks.md)


@dataclass(frozen=True)
class Match:
    ticket_id: str
    score: float
    signals: tuple[str, ...]


def score(new: Features, old: Features) -> tuple[float, tuple[str, ...]]:
    """How likely `new` repeats the request of `old` (0 to 1), and the signals that said so."""
    signals: list[str] = []
    value = 0.0
    if new.orders and old.orders:
        if not set(new.orders) & set(old.orders):
            return 0.0, ("different_order",)
        value += 0.5
        signals.append("order")
    if new.fault and old.fault:
        if new.fault == old.fault:
            value += 0.25
            signals.append("fault")
        else:
            value -= 0.4
    if (new.skus and old.skus) or (new.products and old.products):
        if set(new.skus) & set(old.skus) or set(new.products) & set(old.products):
            value += 0.2
            signals.append("product")
        else:
            value -= 0.35
    wording = max(jaccard(set(new.grams), set(old.grams)), jaccard(set(new.words), set(old.words)))
    if wording >= 0.2:
        signals.append("wording")
    if "order" not in signals and "fault" not in signals and wording < NEAR_COPY:
        return 0.0, tuple(signals)  # the same product alone is not the same request (a spare part, a 2nd one)
    value += 0.8 * wording
    return max(0.0, min(1.0, value)), tuple(signals)


@dataclass(slots=True)
class Known:
    """A ticket of a customer, as the index keeps it (its first message's features, not its text)."""

    ticket_id: str
    created_at: datetime
    features: Features
    finished_at: datetime | None = None  # resolved at (a reopened ticket clears it)
    gone: bool = False  # closed, merged, spam, deleted or purged: never a duplicate's original


@dataclass
class DuplicateIndex:
    """The recent tickets of each customer, in memory. Bounded: a ticket is kept for `window` (14 days)
    from its creation, at most `per_customer` per customer (the newest), and at most `max_tickets` in
    all (the oldest go first). A ticket costs ~1.3 KB with a chat-sized first message and ~2.2 KB with
    one of 1,000 characters or more (only its opening is read; tracemalloc), so the default ceiling is
    130–220 MB (`DUPLICATES_MAX_TICKETS`); a customer's compared tickets keep their shingles too."""

    window: timedelta = timedelta(days=14)
    per_customer: int = 30
    max_tickets: int = 100_000
    threshold: float = THRESHOLD
    customers: dict[str, list[Known]] = field(default_factory=dict)  # a list: most customers have one
    owner: dict[str, str] = field(default_factory=dict)  # ticket → customer
    merged: dict[str, str] = field(default_factory=dict)  # customer merged away → the one it joined
    order: deque[tuple[datetime, str]] = field(default_factory=deque)  # (created, ticket), for expiry

    def customer(self, customer_id: str) -> str:
        seen = set()
        while customer_id in self.merged and customer_id not in seen:
            seen.add(customer_id)
            customer_id = self.merged[customer_id]
        return customer_id

    def match(self, customer_id: str, ticket_id: str, features: Features, at: datetime) -> Match | None:
        """The earlier ticket of the customer that `features` most likely repeats, if any is likely enough."""
        best: Match | None = None
        for known in self.customers.get(self.customer(customer_id), ()):
            if known.ticket_id == ticket_id or known.gone or known.created_at > at:
                continue
            if at - known.created_at > self.window:
                continue
            if known.finished_at is not None and at - known.finished_at > self.window:
                continue
            value, signals = score(features, known.features)
            if value >= self.threshold and (best is None or value > best.score):
                best = Match(known.ticket_id, round(value, 3), signals)
        return best

    def add(self, customer_id: str, ticket_id: str, features: Features, at: datetime) -> None:
        if ticket_id in self.owner:
            return
        customer_id = self.customer(customer_id)
        kept = self.customers.setdefault(customer_id, [])
        if len(kept) >= self.per_customer:
            self.owner.pop(kept.pop(0).ticket_id, None)
        kept.append(Known(ticket_id, at, features))
        self.owner[ticket_id] = customer_id
        self.order.append((at, ticket_id))
        while len(self.owner) > self.max_tickets:
            self._drop(self.order.popleft()[1])

    def expire(self, now: datetime) -> None:
        while self.order and now - self.order[0][0] > self.window:
            self._drop(self.order.popleft()[1])

    def finished(self, ticket_id: str, at: datetime | None, *, gone: bool = False) -> None:
        """The ticket was resolved (`at`), reopened (`at` None) or left for good (`gone`)."""
        for known in self.customers.get(self.owner.get(ticket_id, ""), ()):
            if known.ticket_id == ticket_id:
                known.finished_at = at
                known.gone = known.gone or gone

    def merge_customers(self, merged: str, into: str) -> None:
        """Two profiles are one customer now: their tickets are compared with each other."""
        merged, into = self.customer(merged), self.customer(into)
        if merged == into:
            return
        self.merged[merged] = into
        moved = self.customers.pop(merged, [])
        kept = self.customers.setdefault(into, [])
        joined = sorted([*kept, *moved], key=lambda k: k.created_at)
        for known in joined[: -self.per_customer]:  # beyond the newest `per_customer`: no longer kept
            self.owner.pop(known.ticket_id, None)
        for known in joined[-self.per_customer :]:
            self.owner[known.ticket_id] = into
        self.customers[into] = joined[-self.per_customer :]

    def forget(self, ticket_id: str) -> None:
        """The ticket was purged: nothing of it is kept."""
        self._drop(ticket_id)

    def forget_customer(self, customer_id: str) -> None:
        for known in self.customers.pop(self.customer(customer_id), ()):
            self.owner.pop(known.ticket_id, None)

    def _drop(self, ticket_id: str) -> None:
        customer_id = self.owner.pop(ticket_id, None)
        kept = self.customers.get(customer_id or "")
        if kept is None:
            return
        for known in list(kept):
            if known.ticket_id == ticket_id:
                kept.remove(known)
        if not kept:
            del self.customers[customer_id or ""]
