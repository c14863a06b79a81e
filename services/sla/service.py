"""SLA use cases: start clocks for new tickets, stop them when answered, and a
scheduler that turns due clocks into warning and breach events exactly once."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from services.sla.domain import DEFAULT_POLICY_ID, Clock, Policy, choose_policy, first_response_clock
from services.sla.store import SlaStore
from shared import topics
from shared.events import EventType, SlaTarget, SlaTargetEvent, TicketSnapshot, make_event, utcnow
from shared.outbox import Outbox

log = logging.getLogger(__name__)
KIND_TO_TYPE = {"warning": EventType.SLA_WARNING, "breached": EventType.SLA_BREACHED, "met": EventType.SLA_MET}


class SlaService:
    def __init__(self, *, store: SlaStore, outbox: Outbox, source: str, default_policy: Policy,
                 lease_s: float = 30.0, max_sleep_s: float = 1.0,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.outbox = outbox
        self.source = source
        self.default_policy = default_policy
        self.lease_s = lease_s
        self.max_sleep_s = max_sleep_s
        self.now = clock
        self.wake = asyncio.Event()

    async def install_default_policy(self) -> None:
        await self.store.ensure_policy(DEFAULT_POLICY_ID, self.default_policy)

    async def ticket_created(self, ticket: TicketSnapshot) -> None:
        policies = await self.store.all_policies() or {DEFAULT_POLICY_ID: self.default_policy}
        chosen = choose_policy(policies, ticket) or (DEFAULT_POLICY_ID, self.default_policy)
        if await self.store.start_clock(first_response_clock(ticket, *chosen)):
            self.wake.set()

    async def agent_replied(self, ticket_id: str, at: datetime) -> None:
        await self._update(f"{ticket_id}:{SlaTarget.first_response.value}",
                           lambda c: "met" if c.meet(at) else None)

    async def fire_due(self) -> int:
        """Handle every clock that is due now; returns how many events were raised."""
        fired = 0
        while claimed := await self.store.claim_due(self.now(), self.lease_s):
            clock, version = claimed
            kind = clock.fire(self.now())
            doc = await self.store.save(clock, version, self._events(clock, kind))
            if doc is not None:
                fired += bool(kind)
                await self.outbox.relay(doc)
        return fired

    async def run_scheduler(self) -> None:
        """Sleep until the nearest due time (bounded), not a fixed poll."""
        while True:
            await self.fire_due()
            nearest = await self.store.next_due()
            sleep = self.max_sleep_s if nearest is None else (nearest - self.now()).total_seconds()
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=min(max(sleep, 0.05), self.max_sleep_s))
            except TimeoutError:
                pass

    async def _update(self, key: str, decide: Callable[[Clock], str | None]) -> None:
        for _ in range(10):
            loaded = await self.store.load(key)
            if loaded is None:
                return
            clock, version = loaded
            kind = decide(clock)
            if kind is None:
                return
            doc = await self.store.save(clock, version, self._events(clock, kind))
            if doc is not None:
                await self.outbox.relay(doc)
                return
        raise RuntimeError(f"clock {key} kept changing")

    def _events(self, clock: Clock, kind: str | None):
        if kind is None:
            return []
        at = {"warning": self.now(), "breached": clock.breached_at, "met": clock.met_at}[kind]
        payload = SlaTargetEvent(ticket_id=clock.ticket_id, target=clock.target, policy_id=clock.policy_id,
                                 due_at=clock.due_at, at=at or self.now())
        # deterministic id: a re-sent event is recognisably the same event
        event = make_event(KIND_TO_TYPE[kind], payload, source=self.source, subject=clock.ticket_id,
                           id_=f"sla-{clock.ticket_id}-{clock.target.value}-{kind}")
        return [(topics.SLA_EVENTS, event)]

    def view(self, clocks: list[Clock]) -> list[dict]:
        now = self.now()
        return [{"target": c.target.value, "policy_id": c.policy_id, "started_at": c.started_at,
                 "due": c.due_at, "warn_at": c.warn_at, "state": c.state.value, "used_s": round(c.used_s(now), 3),
                 "remaining_s": round((c.due_at - now).total_seconds(), 3) if c.state == "running" else None,
                 "met_at": c.met_at, "breached_at": c.breached_at} for c in clocks]


