"""The dispatcher: who carries which ticket, decided by one process at a time.

An agent's capacity is shared by every ticket, so it cannot be split by ticket partitions. Every
change of it — a ticket to route, released, kept with an agent by hand, escalated; an agent's
presence — is a record on `routing.dispatch`, a topic of one partition. The routing process that
Kafka gives that partition is the dispatcher: it holds every agent's load and the waiting queue in
memory and decides in record order, so no agent is ever booked past capacity and no ticket twice,
without a database write or read per ticket. Its state is a changelog (`routing.dispatch-state`);
when another routing process takes the partition over, it reads that back first.

An assignment is recorded (with the command that announces it) before the command is sent, and
marked sent with the next write: a dispatcher that dies in between leaves the command pending in its
state, and its successor sends it again with the same id, which the tickets service drops if it had it."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.routing.domain import Agent, Needs, Presence, can_take, explain, rank
from services.routing.escalation import SlaKind, plan_escalation
from services.routing.roster import Roster
from services.routing.store import RoutingStore, to_agent
from shared import topics
from shared.events import (
    AgentUpdated,
    ApplyAutomation,
    AssignTicket,
    EscalateTicket,
    EventType,
    KeepTicketWithAgent,
    PublishRoutingView,
    ReleaseTicket,
    RouteTicket,
    TicketChangedForRouting,
    TicketSnapshot,
    stable_id,
)
from shared.kafka import Outgoing, Producer, event
from shared.state import ChangelogStore
from shared.stream import Batch, Record

log = logging.getLogger(__name__)
PARTITION = 0
TICKET, AGENT, CUSTOMER = "T:", "A:", "C:"
PRIORITY_RANK = {"urgent": 0, "high": 1, "normal": 2, "low": 3}
RELEASING_STATUSES = frozenset({"resolved", "closed", "spam", "deleted"})


@dataclass
class Held:
    """A ticket the dispatcher knows: carried by `agent`, or waiting (`queued_at`)."""

    snap: dict[str, Any]
    needs: dict[str, Any]
    agent: str | None = None
    queued_at: str | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)  # commands decided, not yet known to be sent
    seen: list[str] = field(default_factory=list)  # requests applied (a replayed one changes nothing)

    @property
    def ticket(self) -> TicketSnapshot:
        return TicketSnapshot.model_validate(self.snap)

    @property
    def rank(self) -> int:
        return PRIORITY_RANK.get(self.snap.get("priority", "normal"), 2)

    def encode(self) -> dict[str, Any]:
        return {
            "snap": self.snap,
            "needs": self.needs,
            "agent": self.agent,
            "queued_at": self.queued_at,
            "pending": self.pending,
            "seen": self.seen,
        }

    @classmethod
    def decode(cls, value: dict[str, Any]) -> Held:
        return cls(**value)

    def remember(self, request_id: str) -> None:
        self.seen = [*self.seen, request_id][-16:]


class Dispatcher:
    def __init__(
        self,
        *,
        store: RoutingStore,
        producer: Producer,
        bootstrap_servers: str,
        source: str,
        offline_grace_s: float = 300.0,
        hot: int | None = 2_000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.producer = producer
        self.source = source
        self.offline_grace = timedelta(seconds=offline_grace_s)
        self.clock = clock
        self.state: ChangelogStore[Any] = ChangelogStore(
            topics.ROUTING_DISPATCH_STATE,
            producer,
            bootstrap_servers,
            encode=lambda k, v: v.encode() if isinstance(v, Held) else v,
            decode=lambda k, v: Held.decode(v) if k.startswith(TICKET) else v,
            hot=hot,
            coldable=lambda k: k.startswith(TICKET),
        )
        self.roster = Roster()  # every agent's profile, presence and load, indexed for `_route`
        # the queue: tickets no agent could take yet, with what orders them (priority rank, since when)
        self.waiting: dict[str, tuple[int, str]] = {}
        self.unsent: set[str] = set()  # tickets with commands decided but not yet known to be sent
        self.view_dirty = True
        self.taken_over = False  # pending commands of the previous owner to send again
        self.view_token: str | None = None
        self.view_every_s = 5.0
        self._view_written = 0.0
        self.handlers: dict[str, Callable[[Record, list[Outgoing]], Any]] = {
            EventType.ROUTE_TICKET: self._route_request,
            EventType.RELEASE_TICKET: self._release_request,
            EventType.KEEP_TICKET_WITH_AGENT: self._keep_request,
            EventType.TICKET_CHANGED_FOR_ROUTING: self._changed_request,
            EventType.ESCALATE_TICKET: self._escalate_request,
            EventType.AGENT_UPDATED: self._agent_request,
            EventType.PUBLISH_ROUTING_VIEW: self._view_request,
        }

    # ------------------------------------------------------------ ownership
    @property
    def active(self) -> bool:
        return PARTITION in self.state.data

    async def load(self, partitions: set[int]) -> Any:
        return await self.state.read(partitions), await self.store.agent_docs()

    def install(self, partitions: set[int], loaded: Any) -> None:
        values, docs = loaded
        self.state.install(values)
        tickets = self._glance()
        self.waiting = {
            t: (PRIORITY_RANK.get(v["snap"].get("priority", "normal"), 2), v["queued_at"])
            for t, v in tickets.items()
            if v["agent"] is None and v["queued_at"]
        }
        self.unsent = {t for t, v in tickets.items() if v["pending"]}
        self._rebuild_agents(docs, tickets)
        self.view_dirty = True
        self.taken_over = True
        log.info(
            "dispatching: %d agent(s), %d ticket(s) carried, %d waiting",
            len(self.agents),
            sum(1 for v in tickets.values() if v["agent"]),
            len(self.waiting),
        )

    def revoke(self, partitions: set[int]) -> None:
        self.state.drop(partitions)
        self.roster.clear()
        self.waiting, self.unsent = {}, set()

    @property
    def agents(self) -> dict[str, Agent]:
        return self.roster.agents

    def _rebuild_agents(self, docs: list[dict[str, Any]], tickets: dict[str, dict[str, Any]]) -> None:
        held: dict[str, list[str]] = {}
        for ticket_id, v in tickets.items():
            if v["agent"]:
                held.setdefault(v["agent"], []).append(ticket_id)
        self.roster.clear()
        for doc in docs:
            agent = to_agent(doc, held.get(doc["_id"], []))
            last = self.state.get(PARTITION, AGENT + agent.id)
            if last:
                agent.last_assigned_at = datetime.fromisoformat(last)
            self.roster.put(agent)
        for agent_id, carried in held.items():  # tickets of an agent deleted meanwhile still count
            if agent_id not in self.agents:
                self.roster.put(Agent(id=agent_id, name=agent_id, capacity=0, tickets=sorted(carried)))

    def _glance(self) -> dict[str, dict[str, Any]]:
        """Every ticket's facts as the changelog has them, without holding any decoded (a takeover of tens
        of thousands of carried tickets would otherwise decode them all at once)."""
        return {
            k[len(TICKET) :]: v
            for k in self.state.keys(PARTITION)
            if k.startswith(TICKET) and (v := self.state.raw(PARTITION, k)) is not None
        }

    def _queue(self) -> Iterator[tuple[str, Held]]:
        """The waiting tickets, urgent first, then oldest (each decoded only when reached)."""
        for ticket_id, _ in sorted(self.waiting.items(), key=lambda x: (*x[1], x[0])):
            held = self._held(ticket_id)
            if held is not None:
                yield ticket_id, held

    # ------------------------------------------------------------ a batch
    async def process(self, batch: Batch) -> None:
        if self.taken_over:
            await self.resend_pending()
        out: list[Outgoing] = []
        for record in batch.records:
            if self.state.covers(record.partition, record.topic, record.offset):
                continue
            handler = self.handlers.get(record.type)
            if handler is None:
                continue
            try:
                await handler(record, out)
            except ValueError as exc:  # pydantic's ValidationError included
                batch.reject(record, f"{type(exc).__name__}: {exc}"[:2000])
            self.state.mark(PARTITION, record.topic, record.offset + 1)
        await self.commit(out)

    async def commit(self, out: list[Outgoing]) -> None:
        """The decisions (with their commands pending) first, then the commands. That they were sent goes
        to the changelog with the next batch's decisions (or the next tick, within a second), not in a write
        of its own that the next batch would wait for: a successor taking over in between sends them again,
        under the same command ids, and the tickets service drops what it had."""
        await self.state.flush()
        if out:
            await self.producer.send_many(out)
            for ticket_id in self.unsent:
                if (held := self._held(ticket_id)) is not None and held.pending:
                    held.pending = []
                    self._touch(held)
            self.unsent = set()
        if self.view_token is not None:
            await self.publish_view()

    async def resend_pending(self) -> int:
        """Commands a dispatcher before this one decided but may not have sent (once, after a takeover)."""
        self.taken_over = False
        out = [
            Outgoing(c["topic"], c["key"], c["value"].encode(), None, c["type"])
            for t in sorted(self.unsent)
            if (h := self._held(t)) is not None
            for c in h.pending
        ]
        if out:
            log.info("sending %d command(s) the previous dispatcher may not have sent", len(out))
            await self.commit(out)
        return len(out)

    # ------------------------------------------------------------ requests
    async def _route_request(self, record: Record, out: list[Outgoing]) -> None:
        req = RouteTicket.model_validate(record.data)
        now = record.timestamp
        held = self._held(req.ticket.id)
        if held is not None and req.request_id in held.seen:
            return
        if held is None:
            held = Held(snap=req.ticket.model_dump(mode="json"), needs=req.needs)
            self.state.put(PARTITION, TICKET + req.ticket.id, held)
        else:
            held.snap, held.needs = req.ticket.model_dump(mode="json"), req.needs
        held.remember(req.request_id)
        if req.ticket.status in RELEASING_STATUSES:
            return self._forget(req.ticket.id)
        if held.agent is None and req.ticket.assignee:  # a ticket already on someone stays with them
            self._take(held, req.ticket.assignee, now)
        elif held.agent is None:
            self._route(held, req.request_id, now, out)
        self._touch(held)

    async def _release_request(self, record: Record, out: list[Outgoing]) -> None:
        req = ReleaseTicket.model_validate(record.data)
        if req.forget_customer:  # erased: nothing says any more who served them
            self.state.delete(PARTITION, CUSTOMER + req.forget_customer)
        held = self._held(req.ticket_id)
        if held is None:
            return
        now = record.timestamp
        if req.reroute:
            if req.request_id in held.seen:
                return
            held.remember(req.request_id)
            self._drop_from_agent(held)
            held.snap = {**held.snap, "assignee": None}
            self._route(held, req.request_id, now, out)
            self._touch(held)
        else:
            self._forget(req.ticket_id)
        self._drain(now, out, req.request_id)

    async def _keep_request(self, record: Record, out: list[Outgoing]) -> None:
        req = KeepTicketWithAgent.model_validate(record.data)
        held = self._held(req.ticket.id)
        if held is None:
            held = Held(snap=req.ticket.model_dump(mode="json"), needs={"channel": req.ticket.channel.value})
            self.state.put(PARTITION, TICKET + req.ticket.id, held)
        if held.agent == req.agent_id:
            return
        freed = held.agent is not None
        self._drop_from_agent(held)
        held.snap = req.ticket.model_dump(mode="json")
        self._take(held, req.agent_id, record.timestamp)
        self._touch(held)
        if freed:
            self._drain(record.timestamp, out, req.request_id)

    async def _changed_request(self, record: Record, out: list[Outgoing]) -> None:
        req = TicketChangedForRouting.model_validate(record.data)
        held = self._held(req.ticket.id)
        if held is not None:
            held.snap = {**req.ticket.model_dump(mode="json"), "assignee": held.agent}
            self._touch(held)

    async def _agent_request(self, record: Record, out: list[Outgoing]) -> None:
        req = AgentUpdated.model_validate(record.data)
        doc = await self.store.agent_doc(req.agent_id)
        if doc is None:
            return
        tickets = self.agents[req.agent_id].tickets if req.agent_id in self.agents else []
        last = self.agents[req.agent_id].last_assigned_at if req.agent_id in self.agents else None
        agent = to_agent(doc, tickets)
        agent.last_assigned_at = last
        self.roster.put(agent)
        self.view_dirty = True
        self._drain(record.timestamp, out, req.request_id)

    async def _view_request(self, record: Record, out: list[Outgoing]) -> None:
        self.view_token = PublishRoutingView.model_validate(record.data).request_id

    async def _escalate_request(self, record: Record, out: list[Outgoing]) -> None:
        req = EscalateTicket.model_validate(record.data)
        held = self._held(req.sla.ticket_id)
        if held is None or req.request_id in held.seen:
            return  # released meanwhile (resolved, closed), or done before
        held.remember(req.request_id)
        self._touch(held)
        ticket = held.ticket
        plan = plan_escalation(await self.store.all_escalations(), SlaKind(req.kind), req.sla.target, ticket)
        if not plan.fired:
            return
        now = record.timestamp
        key = stable_id("escalation", req.request_id, ticket.id)
        names = [f"{name} (SLA {req.sla.target.value} {req.kind})" for name in plan.fired]
        priority = plan.priority.value if plan.priority else None
        self._command(
            held,
            out,
            EventType.APPLY_AUTOMATION,
            ApplyAutomation(command_id=key, ticket_id=ticket.id, rules=names, priority=priority, team=plan.team),
        )
        if priority:
            held.snap = {**held.snap, "priority": priority}
        if plan.team:
            held.needs = {**held.needs, "team": plan.team}
        if not plan.moves:
            return
        needs = Needs.model_validate(held.needs)
        online = self.roster.online()
        lead = self.agents.get(plan.agent) if plan.agent else None
        candidates: list[Agent] = []
        if lead and (
            lead.id == held.agent or can_take(lead, needs.model_copy(update={"skills": [], "team": None}), now)
        ):
            candidates = [lead]
        elif plan.team:
            current = self.agents.get(held.agent) if held.agent else None
            if current and current.team == plan.team:
                candidates = [current]  # already with the team: it stays
            else:
                wanted, _ = self.roster.offerable(needs, now)
                candidates = rank(online, wanted, now)
        for agent in candidates:
            if agent.id == held.agent:
                break  # already where it should be
            self._drop_from_agent(held)
            self._assign(
                held,
                agent,
                now,
                out,
                key,
                reason=f"escalated: {'; '.join(names)}; {explain(agent, needs)}",
                team=plan.team or agent.team,
                command_id=stable_id(key, "assign"),
            )
            return
        if held.agent is None:
            self._drain(now, out, key)

    # ------------------------------------------------------------ decisions
    def _route(self, held: Held, request_id: str, now: datetime, out: list[Outgoing]) -> bool:
        """Give the ticket to the best agent who can take it now, or let it wait its turn."""
        needs = Needs.model_validate(held.needs)
        wanted, note = self.roster.offerable(needs, now)
        customer = held.snap.get("customer_id")
        previous = self.state.get(PARTITION, CUSTOMER + customer) if customer else None
        previous_agent = previous.get("agent") if isinstance(previous, dict) else None
        if (agent := self.roster.best(wanted, now, previous=previous_agent)) is not None:
            self._assign(
                held,
                agent,
                now,
                out,
                request_id,
                reason=explain(agent, wanted, previous=agent.id == previous_agent) + note,
                team=needs.team or agent.team,
            )
            return True
        if held.queued_at is None:
            held.queued_at = now.isoformat()
            self.view_dirty = True
            log.info("no agent can take %s now; it waits in the queue", held.snap.get("id"))
        self.waiting[held.snap["id"]] = (held.rank, held.queued_at)
        return False

    def _assign(
        self,
        held: Held,
        agent: Agent,
        now: datetime,
        out: list[Outgoing],
        request_id: str,
        *,
        reason: str,
        team: str | None,
        command_id: str | None = None,
    ) -> None:
        ticket_id = held.snap["id"]
        self._take(held, agent.id, now)
        held.snap = {**held.snap, "assignee": agent.id}
        self._command(
            held,
            out,
            EventType.ASSIGN_TICKET,
            AssignTicket(
                command_id=command_id or stable_id("assign", ticket_id, agent.id, request_id),
                ticket_id=ticket_id,
                agent_id=agent.id,
                reason=reason,
                team=team,
            ),
        )

    def _take(self, held: Held, agent_id: str, now: datetime) -> None:
        """The ticket counts against `agent_id` from now on (past capacity when a person decided)."""
        held.agent = agent_id
        held.queued_at = None
        self.waiting.pop(held.snap["id"], None)
        agent = self.agents.get(agent_id)
        if agent is None:
            agent = Agent(id=agent_id, name=agent_id, capacity=0)
            self.roster.put(agent)
        if held.snap["id"] not in agent.tickets:
            agent.tickets.append(held.snap["id"])
        agent.last_assigned_at = now
        self.roster.changed(agent)
        self.state.put(PARTITION, AGENT + agent_id, now.isoformat())
        if customer := held.snap.get("customer_id"):
            self.state.put(PARTITION, CUSTOMER + customer, {"agent": agent_id, "at": now.isoformat()})
        self.view_dirty = True

    def _drop_from_agent(self, held: Held) -> None:
        if held.agent and (agent := self.agents.get(held.agent)) is not None and held.snap["id"] in agent.tickets:
            agent.tickets.remove(held.snap["id"])
            self.roster.changed(agent)
        held.agent = None
        self.view_dirty = True

    def _forget(self, ticket_id: str) -> None:
        held = self._held(ticket_id)
        if held is not None:
            self._drop_from_agent(held)
            self.state.delete(PARTITION, TICKET + ticket_id)
            self.waiting.pop(ticket_id, None)
            self.unsent.discard(ticket_id)
            self.view_dirty = True

    def _drain(self, now: datetime, out: list[Outgoing], cause: str) -> int:
        """Offer waiting tickets (urgent first, then oldest) to agents with room; one nobody on shift
        can take stays where it is and the next one is tried."""
        assigned = 0
        if not self.waiting or not self.roster.has_room(now):
            return 0
        for ticket_id, held in self._queue():
            if not self.roster.has_room(now):
                break
            if self._route(held, stable_id("drain", cause, ticket_id), now, out):
                self._touch(held)
                assigned += 1
        return assigned

    def _command(self, held: Held, out: list[Outgoing], type_: str, command: AssignTicket | ApplyAutomation) -> None:
        record = event(
            topics.TICKETS_COMMANDS,
            command.ticket_id,
            type_,
            command,
            source=self.source,
            subject=command.ticket_id,
            id_=command.command_id,
            time=self.clock(),
        )
        assert record.value is not None  # an event, never a tombstone
        held.pending.append(
            {
                "topic": record.topic,
                "key": record.key,
                "value": record.value.decode(),
                "partition": None,
                "type": record.type,
            }
        )
        self.unsent.add(command.ticket_id)
        out.append(record)
        self._touch(held)

    def _held(self, ticket_id: str) -> Held | None:
        return self.state.get(PARTITION, TICKET + ticket_id)

    def _touch(self, held: Held) -> None:
        self.state.touch(PARTITION, TICKET + held.snap["id"])

    # ------------------------------------------------------------ time-driven work
    async def tick(self) -> int:
        """Agents offline past the grace period lose their tickets to others; the queue is offered to
        agents whose shift began. Only the process that owns the partition does anything."""
        if not self.active:
            return 0
        if self.taken_over:
            await self.resend_pending()
        now = self.clock()
        out: list[Outgoing] = []
        moved = 0
        for agent in list(self.agents.values()):
            if agent.presence != Presence.offline or not agent.tickets:
                continue
            since = (await self.store.agent_doc(agent.id) or {}).get("offline_since")
            if since is None or since.replace(tzinfo=UTC) > now - self.offline_grace:
                continue
            for ticket_id in list(agent.tickets):
                held = self._held(ticket_id)
                if held is None:
                    agent.tickets.remove(ticket_id)
                    self.roster.changed(agent)
                    continue
                self._drop_from_agent(held)
                held.snap = {**held.snap, "assignee": None}
                moved += self._route(held, stable_id("offline", agent.id, ticket_id, now.isoformat()), now, out)
                self._touch(held)
        moved += self._drain(now, out, now.isoformat())
        if out or self.state.dirty():
            await self.commit(out)
        return moved

    async def publish_view(self) -> None:
        """Who carries what and what waits, for the API of any routing process to read: at once when a
        read asked for it (a token), else at most every `view_every_s` while it changes (it holds every
        carried ticket's id: rewriting it per change would cost the database more than the routing)."""
        if not self.active or not (
            self.view_token or (self.view_dirty and time.monotonic() - self._view_written >= self.view_every_s)
        ):
            return
        self._view_written = time.monotonic()
        queue = list(itertools.islice(self._queue(), 1000))
        await self.store.write_view(
            {
                "agents": {a.id: sorted(a.tickets) for a in self.agents.values()},
                "queue": [{"ticket_id": t, "priority": h.snap.get("priority"), "needs": h.needs} for t, h in queue],
                "queue_length": len(self.waiting),
                "token": self.view_token,
                "at": self.clock(),
            }
        )
        self.view_dirty, self.view_token = False, None
