"""Routing use cases: assign each ticket to the best agent who can take it, or queue it."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from services.routing.domain import RELEASING_STATUSES, Agent, AgentProfile, Presence, needs_of, rank
from services.routing.store import RoutingStore
from shared import topics
from shared.events import AssignTicket, EventType, TicketSnapshot, make_event, stable_id, utcnow

log = logging.getLogger(__name__)


class RoutingService:
    def __init__(self, *, store: RoutingStore, publish, source: str,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.publish = publish
        self.source = source
        self.clock = clock
        self._drain_lock = asyncio.Lock()

    # ------------------------------------------------------------ tickets
    async def route(self, ticket: TicketSnapshot) -> str | None:
        """Assign `ticket` (idempotent: a ticket already reserved keeps its agent)."""
        if ticket.status in RELEASING_STATUSES:
            return None
        if ticket.assignee:  # already on someone (a reopened ticket keeps its agent)
            await self.store.take(ticket.assignee, ticket.id, self.clock())
            return ticket.assignee
        holder = await self.store.holder_of(ticket.id)
        if holder is None:
            for agent in rank(await self.store.all_agents(online_only=True), needs_of(ticket)):
                if await self.store.reserve(agent, ticket.id, self.clock()):
                    holder = await self.store.claim(ticket.id, agent.id)
                    break
        if holder is None:
            await self.store.enqueue(ticket, self.clock())
            log.info("no agent can take %s now; it waits in the queue", ticket.id)
            return None
        await self._send_assign(ticket.id, holder)
        await self.store.dequeue(ticket.id)
        return holder

    async def assigned_elsewhere(self, ticket_id: str, agent_id: str) -> None:
        """Someone put the ticket on an agent by hand: move its slot there (even past
        capacity — a person decided), freeing the slot it held."""
        if await self.store.holder_of(ticket_id) == agent_id:
            return
        if await self.store.release(ticket_id):
            await self.drain()
        await self.store.take(agent_id, ticket_id, self.clock())
        await self.store.dequeue(ticket_id)

    async def unassigned(self, ticket: TicketSnapshot) -> None:
        """Taken off its agent: free the slot and find it someone new."""
        await self.store.release(ticket.id)
        await self.route(ticket)
        await self.drain()

    async def ticket_finished(self, ticket_id: str) -> None:
        if await self.store.release(ticket_id):
            await self.drain()
        await self.store.dequeue(ticket_id)

    async def drain(self) -> int:
        """Offer waiting tickets (urgent first, then oldest) to agents with free capacity."""
        async with self._drain_lock:
            assigned = 0
            for ticket in await self.store.waiting():
                if not any(a.load < a.capacity for a in await self.store.all_agents(online_only=True)):
                    break
                if await self.route(ticket):
                    assigned += 1
            return assigned

    async def _send_assign(self, ticket_id: str, agent_id: str) -> None:
        command = AssignTicket(command_id=stable_id("assign", ticket_id, agent_id), ticket_id=ticket_id,
                               agent_id=agent_id)
        event = make_event(EventType.ASSIGN_TICKET, command, source=self.source, subject=ticket_id,
                           id_=command.command_id)
        await self.publish(topics.TICKETS_COMMANDS, event.model_dump(mode="json"), ticket_id)

    # ------------------------------------------------------------ agents
    async def put_agent(self, agent_id: str, profile: AgentProfile) -> Agent:
        agent = await self.store.upsert_agent(agent_id, profile, self.clock())
        await self.drain()
        return agent

    async def set_presence(self, agent_id: str, presence: Presence) -> Agent | None:
        agent = await self.store.set_presence(agent_id, presence, self.clock())
        if agent and presence == Presence.online:
            await self.drain()
        return agent
