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
    """Every clock of the tickets this process owns, by key and by ticket, with the due heap."""

    def __init__(self) -> None:
        self.clocks: dict[str, Clock] = {}
        self.by_ticket: dict[str, dict[str, None]] = {}  # ticket id -> its clock keys, in start order
        self.due = DueHeap()
        # the tickets.events partitions owned; None: all of them (no consumer group in play)
        self.owned: set[int] | None = None

    def put(self, clock: Clock) -> None:
        self.clocks[clock.key] = clock
        self.by_ticket.setdefault(clock.ticket_id, {})[clock.key] = None
        self.due.set(clock.key, clock.next_fire_at())

    def knows(self, ticket_id: str) -> bool:
        return ticket_id in self.by_ticket

    def of_ticket(self, ticket_id: str) -> list[Clock]:
        return [self.clocks[k] for k in self.by_ticket.get(ticket_id, ())]

    def mine(self, clock: Clock) -> bool:
        return self.owned is None or clock.partition is None or clock.partition in self.owned

    def forget_partitions(self, partitions: Iterable[int]) -> int:
        """Drop the clocks of partitions another process owns now; returns how many."""
        gone = set(partitions)
        keys = [k for k, c in self.clocks.items() if c.partition in gone]
        for key in keys:
            clock = self.clocks.pop(key)
            self.due.discard(key)
            ticket = self.by_ticket.get(clock.ticket_id)
            if ticket is not None:
                ticket.pop(key, None)
                if not ticket:
                    del self.by_ticket[clock.ticket_id]
        return len(keys)

    def partitions(self) -> set[int]:
        return {c.partition for c in self.clocks.values() if c.partition is not None}

    def __len__(self) -> int:
        return len(self.clocks)
