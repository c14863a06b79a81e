"""SLA use cases: start clocks for new tickets, stop them when answered, and a scheduler
that turns due clocks into warning and breach events — each exactly once per target and
ticket, across restarts, redeliveries and several SLA processes."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from services.sla.domain import DEFAULT_POLICY_ID, Clock, ClockState, Policy, choose_policy, first_response_clock
from services.sla.store import SlaStore
from shared import topics
from shared.events import EventType, SlaTarget, SlaTargetEvent, TicketSnapshot, make_event, utcnow
from shared.outbox import EventClaims

log = logging.getLogger(__name__)
KIND_TO_TYPE = {"warning": EventType.SLA_WARNING, "breached": EventType.SLA_BREACHED, "met": EventType.SLA_MET}


class SlaService:
    def __init__(self, *, store: SlaStore, claims: EventClaims, source: str, default_policy: Policy,
                 max_sleep_s: float = 1.0, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.claims = claims
        self.source = source
        self.default_policy = default_policy
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
        await self._decide(f"{ticket_id}:{SlaTarget.first_response.value}", lambda c: c.answer(at))

    async def fire_due(self) -> int:
        """Turn every clock that is due now into its event; returns how many were raised."""
        fired = 0
        for key in await self.store.due(self.now()):
            fired += await self._decide(key, lambda c: c.fire(self.now()))
        return fired

    async def run_scheduler(self) -> None:
        """Sleep until the nearest due time (bounded), not a fixed poll."""
        while True:
            await self.fire_due()
            nearest = await self.store.next_due()
            sleep = self.max_sleep_s if nearest is None else (nearest - self.now()).total_seconds()
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=min(max(sleep, 0.02), self.max_sleep_s))
            except TimeoutError:
                pass

    async def _decide(self, key: str, decide: Callable[[Clock], str | None]) -> int:
        """Apply a decision to a clock. The decision is claimed under a unique key first
        (warning, or the one outcome: met or breached); a process that loses the claim
        takes the earlier decision instead of its own."""
        async with self.store.locks.hold(key):
            clock = await self.store.load(key)
            if clock is None:
                return 0
            kind = decide(clock)
            if kind is None:
                return 0
            slot = "warning" if kind == "warning" else "outcome"
            stored, won = await self.claims.claim(f"{key}:{slot}", topic=topics.SLA_EVENTS,
                                                  key=clock.ticket_id, event=self._event(clock, kind), kind=kind)
            if stored["kind"] != kind:  # another process decided the outcome first
                clock.state = ClockState(stored["kind"])
            await self.store.save(clock)
            if won:
                await self.claims.relay(stored)
            return int(won)

    def _event(self, clock: Clock, kind: str):
        at = {"warning": self.now(), "breached": clock.breached_at, "met": clock.met_at}[kind] or self.now()
        payload = SlaTargetEvent(ticket_id=clock.ticket_id, target=clock.target, policy_id=clock.policy_id,
                                 due_at=clock.due_at, at=at)
        # deterministic id: a re-sent event is recognisably the same event
        return make_event(KIND_TO_TYPE[kind], payload, source=self.source, subject=clock.ticket_id,
                          id_=f"sla-{clock.ticket_id}-{clock.target.value}-{kind}")

    def view(self, clocks: list[Clock]) -> list[dict]:
        now = self.now()
        return [{"target": c.target.value, "policy_id": c.policy_id, "started_at": c.started_at,
                 "due": c.due_at, "warn_at": c.warn_at, "state": c.state.value, "used_s": round(c.used_s(now), 3),
                 "remaining_s": round((c.due_at - now).total_seconds(), 3) if c.state == "running" else None,
                 "met_at": c.met_at, "breached_at": c.breached_at} for c in clocks]
