"""Routing use cases: assign each ticket to the best agent who can take it, or queue it;
answer frequent questions from the knowledge base; escalate on SLA warnings and breaches."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from services.routing.domain import (
    RELEASING_STATUSES, Agent, AgentProfile, Needs, Presence, available, can_take, explain, fits, needs_of, rank,
)
from services.routing.escalation import EscalationPlan, SlaKind, plan_escalation
from services.routing.kb import best_answer
from services.routing.rules import Facts, evaluate
from services.routing.store import RoutingStore
from shared import topics
from shared.events import (
    ApplyAutomation, AssignTicket, EventType, SlaTargetEvent, TicketSnapshot, make_event, stable_id, utcnow,
)

log = logging.getLogger(__name__)


def offerable(agents: list[Agent], needs: Needs, now: datetime) -> tuple[Needs, str]:
    """The needs to route by: as they are, unless nobody on shift who otherwise fits reads the
    ticket's language — then better someone who can use a translator than a ticket waiting
    for no one."""
    if needs.language is None:
        return needs, ""
    on_shift = [a for a in agents if available(a, now)]
    anyone = needs.model_copy(update={"language": None})
    if any(fits(a, needs) for a in on_shift) or not any(fits(a, anyone) for a in on_shift):
        return needs, ""
    return anyone, f"; nobody on shift speaks {needs.language}"


class RoutingService:
    def __init__(self, *, store: RoutingStore, publish, source: str, offline_grace_s: float = 300.0,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.offline_grace_s = offline_grace_s
        self.store = store
        self.publish = publish
        self.source = source
        self.clock = clock
        self._drain_lock = asyncio.Lock()
        self._drain_wanted: asyncio.Event | None = None  # set once `run_drainer` runs (the app)

    # ------------------------------------------------------------ tickets
    async def ticket_created(self, ticket: TicketSnapshot, text: str) -> str | None:
        """Run the automation rules on a new ticket, then route it by what it needs."""
        outcome = evaluate(await self.store.all_rules(), Facts(
            channel=ticket.channel.value, language=ticket.language, text=text, tags=ticket.tags,
            customer_id=ticket.customer_id, priority=ticket.priority))
        if outcome.fired:
            reply = reply_source = None
            if outcome.kb_min_score is not None and not outcome.spam:
                found = best_answer(await self.store.all_articles(ticket.language), text, ticket.language,
                                    outcome.kb_min_score)
                if found:
                    article_id, article, score = found
                    reply, reply_source = article.body, f"kb:{article_id}"
                    log.info("ticket %s answered from %s (score %.2f)", ticket.id, reply_source, score)
            await self._send(EventType.APPLY_AUTOMATION, ApplyAutomation(
                command_id=stable_id("automation", ticket.id), ticket_id=ticket.id, rules=outcome.fired,
                priority=outcome.priority.value if outcome.priority else None, add_tags=outcome.add_tags,
                mark_spam=outcome.spam, team=outcome.team, reply=reply, reply_source=reply_source), ticket.id)
        if outcome.spam:
            return None  # spam waits for nobody
        ticket = ticket.model_copy(update={  # as it is about to be, for escalations and the queue
            "priority": outcome.priority.value if outcome.priority else ticket.priority,
            "tags": [*ticket.tags, *outcome.add_tags], "team": outcome.team or ticket.team})
        fresh = await self.store.remember(ticket, needs_of(ticket, outcome.skills, outcome.team))
        await self._queue_first()
        return await self.route(ticket, fresh=fresh)

    async def route(self, ticket: TicketSnapshot, *, fresh: bool = False) -> str | None:
        """Assign `ticket` (idempotent: a ticket already reserved keeps its agent). `fresh`: seen
        for the first time, so it holds no slot and waits in no queue yet."""
        if ticket.status in RELEASING_STATUSES:
            return None
        if ticket.assignee:  # already on someone (a reopened ticket keeps its agent)
            await self.store.take(ticket.assignee, ticket.id, self.clock())
            return ticket.assignee
        remembered = await self.store.recall(ticket.id)
        needs = remembered[1] if remembered else needs_of(ticket)
        holder, reason, team = await self.store.holder_of(ticket.id, fresh=fresh), None, needs.team
        if holder is None:
            now = self.clock()
            online = await self.store.all_agents(online_only=True)
            wanted, note = offerable(online, needs, now)
            previous = await self.store.last_agent(ticket.customer_id)
            for agent in rank(online, wanted, now, previous=previous):
                if slot := await self.store.reserve_slot(agent, ticket.id, now):
                    holder = await self.store.claim(ticket.id, agent.id, slot)
                    reason = explain(agent, wanted, previous=agent.id == previous) + note
                    team = needs.team or agent.team
                    break
        if holder is None:
            await self.store.enqueue(ticket, needs, self.clock())
            log.info("no agent can take %s now; it waits in the queue", ticket.id)
            return None
        await self._send(EventType.ASSIGN_TICKET, AssignTicket(
            command_id=stable_id("assign", ticket.id, holder), ticket_id=ticket.id, agent_id=holder,
            reason=reason, team=team), ticket.id)
        if not fresh:
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

    async def assigned_elsewhere(self, ticket: TicketSnapshot, agent_id: str) -> None:
        """The ticket is on `agent_id` now. If someone put it there by hand, move its slot there
        (even past capacity — a person decided), freeing the slot it held."""
        await self.store.note_served(ticket.customer_id, agent_id, self.clock())
        await self.store.refresh(ticket)
        if await self.store.holder_of(ticket.id) == agent_id:
            return
        if await self.store.release(ticket.id):
            await self.drain_soon()
        await self.store.take(agent_id, ticket.id, self.clock())
        await self.store.dequeue(ticket.id)

    async def unassigned(self, ticket: TicketSnapshot) -> None:
        """Taken off its agent: free the slot and find it someone new."""
        await self.store.release(ticket.id)
        await self.route(ticket)
        await self.drain_soon()

    async def ticket_finished(self, ticket: TicketSnapshot) -> None:
        await self.store.refresh(ticket)
        if await self.store.release(ticket.id):
            await self.drain_soon()
        await self.store.dequeue(ticket.id)

    async def reopened(self, ticket: TicketSnapshot) -> None:
        await self.store.refresh(ticket)
        await self.route(ticket)

    async def ticket_changed(self, ticket: TicketSnapshot) -> None:
        """Priority or tags changed: escalations look at the current ones; a queued ticket
        takes its new priority's place."""
        await self.store.refresh(ticket)
        if ticket.assignee is None and await self.store.queued(ticket.id):
            remembered = await self.store.recall(ticket.id)
            await self.store.enqueue(ticket, remembered[1] if remembered else needs_of(ticket), self.clock())

    async def drain(self) -> int:
        """Offer waiting tickets (urgent first, then oldest) to agents with free capacity; a
        ticket nobody on shift can take stays where it is and the next one is tried."""
        async with self._drain_lock:
            assigned = 0
            now = self.clock()
            agents = await self.store.all_agents(online_only=True)
            for ticket, needs in await self.store.waiting():
                if not any(available(a, now) and a.load < a.capacity for a in agents):
                    break
                wanted, _ = offerable(agents, needs or needs_of(ticket), now)
                if not any(can_take(a, wanted, now) for a in agents):
                    continue
                if await self.route(ticket):
                    assigned += 1
                    agents = await self.store.all_agents(online_only=True)
            return assigned

    async def reconcile(self) -> int:
        """For the periodic round: heal slots and loads a crash between two writes left wrong."""
        return await self.store.reconcile(self.clock())

    async def drain_soon(self) -> None:
        """Capacity may have freed: offer the queue. In the app a background drainer does it, so
        a burst of resolved tickets costs one pass over the queue, not one each; without the
        drainer (tests, tools) it happens now."""
        if self._drain_wanted is None:
            await self.drain()
        else:
            self._drain_wanted.set()

    async def _queue_first(self) -> None:
        """Before a new ticket is routed, capacity that freed meanwhile goes to those waiting."""
        if self._drain_wanted is not None and self._drain_wanted.is_set():
            self._drain_wanted.clear()
            await self.drain()

    async def run_drainer(self) -> None:
        """The background drainer (a runtime loop): one drain per burst of requests."""
        self._drain_wanted = wanted = asyncio.Event()
        try:
            while True:
                await wanted.wait()
                wanted.clear()
                try:
                    if assigned := await self.drain():
                        log.info("%s queued ticket(s) assigned", assigned)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("offering the queue failed; the periodic round will retry")
        finally:
            self._drain_wanted = None

    async def drain_if_waiting(self) -> int:
        """For the periodic round: agents whose shift just began take from the queue."""
        return await self.drain() if await self.store.queue_length() else 0

    # ------------------------------------------------------------ escalation
    async def sla_event(self, event_id: str, kind: SlaKind, sla: SlaTargetEvent) -> EscalationPlan | None:
        """Escalate as configured. Safe to run twice for one event: the decision where the ticket
        goes is recorded under the event's id before anything is sent, and every command id is
        derived from that id."""
        escalations = await self.store.all_escalations()
        remembered = await self.store.recall(sla.ticket_id) if escalations else None
        if remembered is None:
            return None
        ticket, needs = remembered
        if ticket.status in RELEASING_STATUSES:
            return None
        plan = plan_escalation(escalations, kind, sla.target, ticket)
        if not plan.fired:
            return plan
        key = stable_id("escalation", event_id, sla.ticket_id)
        decision = await self.store.escalation_decision(key) or await self._decide_move(key, ticket, needs, plan)
        new_needs = needs.model_copy(update={"team": plan.team}) if plan.team else needs
        priority = plan.priority.value if plan.priority else None
        await self.store.set_needs(ticket.id, new_needs, priority=priority)
        if priority and await self.store.queued(ticket.id):
            await self.store.enqueue(ticket.model_copy(update={"priority": priority}), new_needs, self.clock())
        names = [f"{name} (SLA {sla.target.value} {kind.value})" for name in plan.fired]
        await self._send(EventType.APPLY_AUTOMATION, ApplyAutomation(
            command_id=key, ticket_id=ticket.id, rules=names, priority=priority, team=plan.team), ticket.id)
        if agent_id := decision.get("agent_id"):
            await self.store.move(ticket.id, agent_id, decision.get("slot"))
            await self.store.dequeue(ticket.id)
            await self._send(EventType.ASSIGN_TICKET, AssignTicket(
                command_id=stable_id(key, "assign"), ticket_id=ticket.id, agent_id=agent_id,
                reason=f"escalated: {'; '.join(names)}; {decision.get('reason')}",
                team=plan.team or decision.get("team")), ticket.id)
        elif plan.moves and await self.store.queued(ticket.id):
            await self.drain_soon()  # the team may have room now
        return plan

    async def _decide_move(self, key: str, ticket: TicketSnapshot, needs: Needs, plan: EscalationPlan) -> dict:
        """Reserve a slot with the lead or the team (if the plan moves the ticket and someone
        can take it) and record that choice; an earlier choice for the same event wins."""
        choice: dict = {"agent_id": None}
        holder = await self.store.holder_of(ticket.id)
        if plan.moves:
            now = self.clock()
            online = await self.store.all_agents(online_only=True)
            by_id = {a.id: a for a in online}
            lead = by_id.get(plan.agent) if plan.agent else None
            candidates: list[Agent] = []
            if lead and (lead.id == holder or can_take(lead, needs.model_copy(update={"skills": [], "team": None}), now)):
                candidates = [lead]
            elif plan.team:
                wanted, _ = offerable(online, needs.model_copy(update={"team": plan.team}), now)
                current = by_id.get(holder) if holder else None
                if current and current.team == plan.team:
                    candidates = [current]  # already with the team: it stays
                else:
                    candidates = rank(online, wanted, now)
            for agent in candidates:
                if agent.id == holder:
                    break  # already where it should be
                if slot := await self.store.reserve_slot(agent, ticket.id, now):
                    choice = {"agent_id": agent.id, "slot": slot, "team": agent.team,
                              "reason": explain(agent, needs.model_copy(update={"team": plan.team}))}
                    break
        recorded = await self.store.record_escalation(key, choice)
        if choice["agent_id"] and recorded.get("slot") != choice["slot"]:
            await self.store.release_slot(ticket.id, choice["agent_id"], choice["slot"])  # decided elsewhere first
        return recorded

    async def _send(self, type_: str, command: AssignTicket | ApplyAutomation, ticket_id: str) -> None:
        event = make_event(type_, command, source=self.source, subject=ticket_id, id_=command.command_id)
        await self.publish(topics.TICKETS_COMMANDS, event.model_dump(mode="json"), ticket_id)

    # ------------------------------------------------------------ agents
    async def put_agent(self, agent_id: str, profile: AgentProfile) -> Agent:
        agent = await self.store.upsert_agent(agent_id, profile, self.clock())
        await self.drain_soon()
        return agent

    async def set_presence(self, agent_id: str, presence: Presence) -> Agent | None:
        agent = await self.store.set_presence(agent_id, presence, self.clock())
        if agent and presence == Presence.online:
            await self.drain_soon()
        return agent
