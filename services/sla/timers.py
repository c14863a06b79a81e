"""The clocks this SLA process owns, in memory: each ticket's clocks and a due-ordered heap of
when each running clock must be looked at next (pure: no I/O).

MongoDB stays the durable record; this is what the scheduler and the ticket handlers read, so
that neither scans the clocks collection (on FerretDB 1.24 every query but an insert reads the
whole collection). A process owns the clocks of the tickets.events partitions it consumes: it
sees every change of those tickets, so its copy is current."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from datetime import datetime

from services.sla.domain import Clock


class DueHeap:
    """Clock keys by the time they are due for a look; rescheduling a key leaves its old entry
    in the heap, skipped when it surfaces (lazy deletion), and the heap is rebuilt when such
    leftovers outnumber the live entries."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, str]] = []
        self._when: dict[str, datetime] = {}

    def set(self, key: str, when: datetime | None) -> None:
        if when is None:
            self._when.pop(key, None)
            return
        if self._when.get(key) == when:
            return
        self._when[key] = when
        heapq.heappush(self._heap, (when, key))
        if len(self._heap) > 2 * len(self._when) + 1024:
            self._heap = [(w, k) for k, w in self._when.items()]
            heapq.heapify(self._heap)

    def discard(self, key: str) -> None:
        self._when.pop(key, None)

    def _drop_stale_top(self) -> None:
        while self._heap and self._when.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)

    def next_at(self) -> datetime | None:
        self._drop_stale_top()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: datetime, limit: int) -> list[str]:
        """Up to `limit` keys due at `now`, earliest first; they leave the heap (the caller
        puts each clock back with its next time, if it has one)."""
        due: list[str] = []
        while len(due) < limit:
            self._drop_stale_top()
            if not self._heap or self._heap[0][0] > now:
                break
            _, key = heapq.heappop(self._heap)
            del self._when[key]
            due.append(key)
        return due

    def __len__(self) -> int:
        return len(self._when)


class ClockBook:
    """Every clock of the tickets this process owns, by key and by ticket, with the due heap.

    Memory: at most `hot` clocks are held decoded (the least recently used are encoded again, as
    compact JSON: ~0.3 KB instead of ~1.5 KB); the heap keeps every running clock's due time, so the
    scheduler decodes only what comes due."""

    def __init__(self, hot: int | None = None) -> None:
        self.clocks: dict[str, Clock | bytes] = {}
        self.by_ticket: dict[str, dict[str, None]] = {}  # ticket id -> its clock keys, in start order
        self.partition_of: dict[str, int | None] = {}  # ticket id -> the partition its events arrive on
        self.due = DueHeap()
        self.hot = hot
        self._recent: dict[str, None] = {}  # decoded clocks, least recently used first
        # the tickets.events partitions owned; None: all of them (no consumer group in play)
        self.owned: set[int] | None = None

    def put(self, clock: Clock) -> None:
        key = clock.key
        self.clocks[key] = clock
        self.by_ticket.setdefault(clock.ticket_id, {})[key] = None
        self.partition_of[clock.ticket_id] = clock.partition
        self.due.set(key, clock.next_fire_at())
        if self.hot is not None:
            self._recent.pop(key, None)
            self._recent[key] = None

    def get(self, key: str) -> Clock | None:
        clock = self.clocks.get(key)
        if clock is None or self.hot is None:
            return clock  # type: ignore[return-value]  # without `hot` none is held encoded
        if isinstance(clock, bytes):
            clock = self.clocks[key] = Clock.model_validate_json(clock)
        self._recent.pop(key, None)
        self._recent[key] = None
        return clock

    def has(self, key: str) -> bool:
        return key in self.clocks

    def knows(self, ticket_id: str) -> bool:
        return ticket_id in self.by_ticket

    def of_ticket(self, ticket_id: str) -> list[Clock]:
        return [c for k in self.by_ticket.get(ticket_id, ()) if (c := self.get(k)) is not None]

    def mine(self, clock: Clock) -> bool:
        return self.owned is None or clock.partition is None or clock.partition in self.owned

    def cool(self) -> None:
        """Encode the least recently used clocks again, down to `hot` decoded ones (after a unit is
        written: nothing holds them any more)."""
        if self.hot is None:
            return
        while len(self._recent) > self.hot:
            key = next(iter(self._recent))
            del self._recent[key]
            clock = self.clocks.get(key)
            if clock is not None and not isinstance(clock, bytes):
                self.clocks[key] = clock.model_dump_json(exclude_defaults=True).encode()

    def forget_ticket(self, ticket_id: str) -> list[str]:
        """Drop a ticket's clocks (it was purged or erased); returns their keys."""
        self.partition_of.pop(ticket_id, None)
        keys = list(self.by_ticket.pop(ticket_id, {}))
        for key in keys:
            self.clocks.pop(key, None)
            self.due.discard(key)
            self._recent.pop(key, None)
        return keys

    def forget_partitions(self, partitions: Iterable[int]) -> int:
        """Drop the clocks of partitions another process owns now; returns how many."""
        gone = set(partitions)
        count = 0
        for ticket_id in [t for t, p in self.partition_of.items() if p in gone]:
            del self.partition_of[ticket_id]
            for key in self.by_ticket.pop(ticket_id, {}):
                self.clocks.pop(key, None)
                self.due.discard(key)
                self._recent.pop(key, None)
                count += 1
        return count

    def partitions(self) -> set[int]:
        return {p for p in self.partition_of.values() if p is not None}

    def decoded(self) -> int:
        return sum(1 for c in self.clocks.values() if type(c) is not bytes)

    def __len__(self) -> int:
        return len(self.clocks)
