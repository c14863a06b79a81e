"""Routing use cases: assign each ticket to the best agent who can take it, or queue it."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from services.routing.domain import RELEASING_STATUSES, Agent, AgentProfile, Presence, explain, needs_of, rank
from services.routing.rules import Facts, evaluate
from services.routing.store import RoutingStore
from shared import topics
from shared.events import ApplyAutomation, AssignTicket, EventType, TicketSnapshot, make_event, stable_id, utcnow

log = logging.getLogger(__name__)


class RoutingService:
    def __init__(self, *, store: RoutingStore, publish, source: str, offline_grace_s: float = 300.0,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.offline_grace_s = offline_grace_s
        self.store = store
        self.publish = publish
        self.source = source
        self.clock = clock
        self._drain_lock = asyncio.Lock()

    # ------------------------------------------------------------ tickets
    async def ticket_created(self, ticket: TicketSnapshot, text: str) -> str | None:
        """Run the automation rules on a new ticket, then route it by what it needs."""
        outcome = evaluate(await self.store.all_rules(), Facts(
            channel=ticket.channel.value, language=ticket.language, text=text, tags=ticket.tags,
            customer_id=ticket.customer_id, priority=ticket.priority))
        if outcome.fired:
            await self._send(EventType.APPLY_AUTOMATION, ApplyAutomation(
                command_id=stable_id("automation", ticket.id), ticket_id=ticket.id, rules=outcome.fired,
                priority=outcome.priority.value if outcome.priority else None, add_tags=outcome.add_tags,
                mark_spam=outcome.spam), ticket.id)
        if outcome.spam:
            return None  # spam waits for nobody
        if outcome.priority:
            ticket = ticket.model_copy(update={"priority": outcome.priority.value})
        await self.store.remember(ticket, needs_of(ticket, outcome.skills, outcome.team))
        return await self.route(ticket)

    async def route(self, ticket: TicketSnapshot) -> str | None:
        """Assign `ticket` (idempotent: a ticket already reserved keeps its agent)."""
        if ticket.status in RELEASING_STATUSES:
            return None
        if ticket.assignee:  # already on someone (a reopened ticket keeps its agent)
            await self.store.take(ticket.assignee, ticket.id, self.clock())
            return ticket.assignee
        remembered = await self.store.recall(ticket.id)
        needs = remembered[1] if remembered else needs_of(ticket)
        holder, reason, team = await self.store.holder_of(ticket.id), None, needs.team
        if holder is None:
            online = await self.store.all_agents(online_only=True)
            candidates, note = rank(online, needs), ""
            if not candidates and needs.language:
                # nobody on shift reads this language: better someone who can use a translator
                # than a ticket waiting for no one
                candidates = rank(online, needs.model_copy(update={"language": None}))
                note = f"; nobody online speaks {needs.language}"
            for agent in candidates:
                if await self.store.reserve(agent, ticket.id, self.clock()):
                    holder = await self.store.claim(ticket.id, agent.id)
                    reason = explain(agent, needs.model_copy(update={"language": None}) if note else needs) + note
                    team = needs.team or agent.team
                    break
        if holder is None:
            await self.store.enqueue(ticket, self.clock())
            log.info("no agent can take %s now; it waits in the queue", ticket.id)
            return None
        await self._send(EventType.ASSIGN_TICKET, AssignTicket(
            command_id=stable_id("assign", ticket.id, holder), ticket_id=ticket.id, agent_id=holder,
            reason=reason, team=team), ticket.id)
        await self.store.dequeue(ticket.id)
        return holder

    async def reroute_offline(self) -> int:
        """Tickets of agents offline for longer than the grace period go to someone else."""
        moved = 0
        for agent_id in await self.store.offline_since_before(self.clock() - timedelta(seconds=self.offline_grace_s)):
            for ticket_id in await self.store.tickets_of(agent_id):
                remembered = await self.store.recall(ticket_id)
                await self.store.release(ticket_id)
                if remembered and await self.route(remembered[0].model_copy(update={"assignee": None})):
                    moved += 1
                elif remembered is None:
                    log.warning("ticket %s of offline agent %s is unknown here; freed its slot", ticket_id, agent_id)
        return moved

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

    async def _send(self, type_: str, command: AssignTicket | ApplyAutomation, ticket_id: str) -> None:
        event = make_event(type_, command, source=self.source, subject=ticket_id, id_=command.command_id)
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
