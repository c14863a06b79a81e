"""The collections routing owns: agents, capacity slots, assignments, the waiting queue,
automation rules, the knowledge base, escalations and who served each customer last.

Capacity is enforced with unique keys, the one write both FerretDB and MongoDB make
atomic: an agent with capacity N has slots `<agent>#0` … `<agent>#N-1`, and taking a
ticket means inserting one of those slot documents. Two routers racing for the last
slot insert the same key; exactly one succeeds. A ticket is claimed the same way
(`routing_assignments._id` = ticket id), so it is never given to two agents."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from services.routing.domain import Agent, AgentProfile, Needs, Presence
from services.routing.escalation import Escalation
from services.routing.kb import Article
from services.routing.rules import Rule
from shared.events import TicketSnapshot
from shared.locks import KeyedLock
from shared.cache import Cached
from shared.mongo import ASCENDING, DuplicateKeyError, Mongo, loaded_week, stored_week, upsert

PRIORITY_RANK = {"urgent": 0, "high": 1, "normal": 2, "low": 3}


class RoutingStore:
    def __init__(self, mongo: Mongo) -> None:
        self.mongo = mongo
        self._rules = Cached(self._load_rules)
        self.agents = mongo.collection("routing_agents")
        self.slots = mongo.collection("routing_slots")
        self.assignments = mongo.collection("routing_assignments")
        self.queue = mongo.collection("routing_queue")
        self.tickets = mongo.collection("routing_tickets")  # what each ticket needs, for re-routing
        self.rules = mongo.collection("routing_rules")
        self.articles = mongo.collection("routing_kb_articles")
        self.escalations = mongo.collection("routing_escalations")
        self.escalated = mongo.collection("routing_escalation_decisions")  # one per (SLA event, ticket)
        self.customers = mongo.collection("routing_customers")  # customer id -> the agent who served them last
        self.locks = KeyedLock()  # agent documents are changed by one writer at a time
        self._suspects: set[tuple[str, str, str, str]] = set()  # mirror disagreements seen last round

    async def ensure_indexes(self) -> None:
        await self.mongo.index(self.slots, [("ticket_id", ASCENDING)])
        await self.mongo.index(self.slots, [("agent_id", ASCENDING)])
        await self.mongo.index(self.queue, [("rank", ASCENDING), ("enqueued_at", ASCENDING)])

    # ------------------------------------------------------------ agents
    async def upsert_agent(self, agent_id: str, profile: AgentProfile, now: datetime) -> Agent:
        async with self.locks.hold(agent_id):
            await upsert(self.agents, {"_id": agent_id}, {
                "$set": {**stored_profile(profile), "updated_at": now},
                "$setOnInsert": {"presence": Presence.offline.value, "created_at": now, "tickets": [], "slots": []}})
        return await self.get_agent(agent_id)

    async def set_presence(self, agent_id: str, presence: Presence, now: datetime) -> Agent | None:
        async with self.locks.hold(agent_id):
            current = await self.agents.find_one({"_id": agent_id}, {"presence": 1, "offline_since": 1})
            if current is None:
                return None
            change: dict[str, Any] = {"presence": presence.value, "updated_at": now}
            if presence == Presence.offline and current.get("presence") != Presence.offline.value:
                change["offline_since"] = now
            elif presence != Presence.offline:
                change["offline_since"] = None
            result = await self.agents.update_one({"_id": agent_id}, {"$set": change})
        return await self.get_agent(agent_id) if result.matched_count else None

    # An agent's document mirrors the slots they hold (`tickets`, `slots`), so reading who is
    # free is one read of a small collection: the slots collection, which has no index the
    # MongoDB-wire server uses for anything but `_id`, is only scanned by `reconcile`.

    async def get_agent(self, agent_id: str) -> Agent | None:
        doc = await self.agents.find_one({"_id": agent_id})
        return to_agent(doc) if doc else None

    async def all_agents(self, *, online_only: bool = False) -> list[Agent]:
        query = {"presence": Presence.online.value} if online_only else {}
        return [to_agent(d) async for d in self.agents.find(query).sort([("_id", ASCENDING)])]

    # ------------------------------------------------------------ slots and assignments
    async def holder_of(self, ticket_id: str, *, fresh: bool = False) -> str | None:
        """Who has the ticket. `fresh`: the caller knows no slot was ever reserved for it (a
        ticket seen for the first time), so a slot without a claim need not be looked for."""
        claim = await self.assignments.find_one({"_id": ticket_id})
        if claim:
            return claim["agent_id"]
        if fresh:
            return None
        slot = await self.slots.find_one({"ticket_id": ticket_id})  # reserved, claim not yet written
        if slot:
            return await self.claim(ticket_id, slot["agent_id"], slot["_id"])
        return None

    async def reserve(self, agent: Agent, ticket_id: str, now: datetime) -> bool:
        """Take one free slot of `agent` for the ticket; False when none is left."""
        return await self.reserve_slot(agent, ticket_id, now) is not None

    async def reserve_slot(self, agent: Agent, ticket_id: str, now: datetime) -> str | None:
        """Take one free slot of `agent` for the ticket: its id, or None when none is left."""
        taken = set(agent.slots)
        for n in range(agent.capacity):
            slot_id = f"{agent.id}#{n}"
            if slot_id in taken:
                continue
            try:
                await self.slots.insert_one({"_id": slot_id, "agent_id": agent.id, "ticket_id": ticket_id, "at": now})
            except DuplicateKeyError:
                continue  # someone took this slot a moment ago; try the next
            await self._mirror_add(agent.id, ticket_id, slot_id, now)
            return slot_id
        return None

    async def _mirror_add(self, agent_id: str, ticket_id: str, slot_id: str, now: datetime | None = None) -> None:
        change: dict[str, Any] = {"$addToSet": {"tickets": ticket_id, "slots": slot_id}}
        if now is not None:
            change["$set"] = {"last_assigned_at": now}
        async with self.locks.hold(agent_id):
            await self.agents.update_one({"_id": agent_id}, change)

    async def _free(self, slot_id: str, agent_id: str, ticket_id: str) -> None:
        # only if the slot still holds this ticket; this filter reads the whole slots collection
        # on FerretDB, which stays small (one document per ticket being worked on)
        await self.slots.delete_one({"_id": slot_id, "ticket_id": ticket_id})
        async with self.locks.hold(agent_id):
            await self.agents.update_one({"_id": agent_id},
                                         {"$pullAll": {"tickets": [ticket_id], "slots": [slot_id]}})

    async def take(self, agent_id: str, ticket_id: str, now: datetime) -> None:
        """Record a ticket on an agent regardless of capacity (a manual assignment)."""
        if await self.holder_of(ticket_id) == agent_id:
            return
        agent = await self.get_agent(agent_id)
        slot_id = None
        if agent is not None:
            slot_id = await self.reserve_slot(agent, ticket_id, now)
        if slot_id is None:
            slot_id = f"{agent_id}#extra-{ticket_id}"
            await upsert(self.slots, {"_id": slot_id}, {"$setOnInsert": {"agent_id": agent_id, "ticket_id": ticket_id,
                                                                          "at": now}})
            await self._mirror_add(agent_id, ticket_id, slot_id)
        await self.claim(ticket_id, agent_id, slot_id)

    async def claim(self, ticket_id: str, agent_id: str, slot_id: str | None = None) -> str:
        """Record who has the ticket; if another router got there first, theirs stands."""
        try:
            await self.assignments.insert_one({"_id": ticket_id, "agent_id": agent_id, "slot": slot_id})
            return agent_id
        except DuplicateKeyError:
            winner = (await self.assignments.find_one({"_id": ticket_id}))["agent_id"]
            if winner != agent_id:
                async for slot in self.slots.find({"ticket_id": ticket_id, "agent_id": agent_id}):
                    await self._free(slot["_id"], agent_id, ticket_id)
            return winner

    async def move(self, ticket_id: str, agent_id: str, slot_id: str | None = None) -> None:
        """The ticket now holds a slot of `agent_id` (reserved already): point its claim there and
        free the slot it held elsewhere. Running it again changes nothing."""
        claim = await self.assignments.find_one({"_id": ticket_id})
        if claim and claim["agent_id"] != agent_id and claim.get("slot"):
            await self._free(claim["slot"], claim["agent_id"], ticket_id)
        await upsert(self.assignments, {"_id": ticket_id}, {"$set": {"agent_id": agent_id, "slot": slot_id}})

    async def release_slot(self, ticket_id: str, agent_id: str, slot_id: str) -> None:
        """Give back a slot reserved for a ticket that went elsewhere after all."""
        await self._free(slot_id, agent_id, ticket_id)

    async def release(self, ticket_id: str, *, fresh: bool = False) -> list[str]:
        """Free the slot a ticket holds; a second call finds nothing to free."""
        claim = await self.assignments.find_one({"_id": ticket_id})
        if claim and claim.get("slot"):
            held = [{"_id": claim["slot"], "agent_id": claim["agent_id"]}]
        elif fresh:
            held = []
        else:  # a slot without a claim (or a claim from before slots were named on it)
            held = [s async for s in self.slots.find({"ticket_id": ticket_id}, {"agent_id": 1})]
        for slot in held:
            await self._free(slot["_id"], slot["agent_id"], ticket_id)
        if claim:
            await self.assignments.delete_one({"_id": ticket_id})
        return [s["agent_id"] for s in held]

    async def offline_since_before(self, cutoff: datetime) -> list[str]:
        return [d["_id"] async for d in self.agents.find(
            {"presence": Presence.offline.value, "offline_since": {"$lte": cutoff}}, {"_id": 1})]

    async def tickets_of(self, agent_id: str) -> list[str]:
        agent = await self.get_agent(agent_id)
        return agent.tickets if agent else []

    async def reconcile(self, now: datetime, *, orphan_after_s: float = 60.0) -> int:
        """Heal what a crash between two writes can leave: a slot whose ticket was never claimed
        (or claimed elsewhere) is freed once it is old enough not to be a reservation in
        flight, and an agent's mirror that disagrees with their slots in two rounds running
        (so not just a reservation or release half done at the moment) is corrected. Returns
        the number of fixes."""
        mirrors = {d["_id"]: (set(d.get("tickets") or []), set(d.get("slots") or []))
                   async for d in self.agents.find({}, {"tickets": 1, "slots": 1})}
        claims = {d["_id"]: d async for d in self.assignments.find({})}
        fixes = 0
        held: dict[str, tuple[set[str], set[str]]] = {}
        async for slot in self.slots.find({}):
            claim = claims.get(slot["ticket_id"])
            ok = claim is not None and claim["agent_id"] == slot["agent_id"] and claim.get("slot") in (None, slot["_id"])
            at = slot.get("at")
            if not ok and at is not None and (now - at.replace(tzinfo=now.tzinfo)).total_seconds() > orphan_after_s:
                await self._free(slot["_id"], slot["agent_id"], slot["ticket_id"])  # takes it off the mirror too
                mirror_tickets, mirror_slots = mirrors.get(slot["agent_id"], (set(), set()))
                mirror_tickets.discard(slot["ticket_id"])
                mirror_slots.discard(slot["_id"])
                fixes += 1
                continue
            tickets, slots = held.setdefault(slot["agent_id"], (set(), set()))
            tickets.add(slot["ticket_id"])
            slots.add(slot["_id"])
        seen: set[tuple[str, str, str, str]] = set()  # (agent, field, value, "extra" | "missing")
        for agent_id, (tickets, slots) in mirrors.items():
            has_tickets, has_slots = held.get(agent_id, (set(), set()))
            for field, mirror, truth in (("tickets", tickets, has_tickets), ("slots", slots, has_slots)):
                seen.update((agent_id, field, v, "extra") for v in mirror - truth)
                seen.update((agent_id, field, v, "missing") for v in truth - mirror)
        confirmed, self._suspects = seen & self._suspects, seen - self._suspects
        for agent_id, field, value, kind in sorted(confirmed):
            async with self.locks.hold(agent_id):
                op = {"$pullAll": {field: [value]}} if kind == "extra" else {"$addToSet": {field: value}}
                await self.agents.update_one({"_id": agent_id}, op)
            fixes += 1
        return fixes

    # ------------------------------------------------------------ what tickets need
    async def remember(self, ticket: TicketSnapshot, needs: Needs) -> bool:
        """Keep what the ticket needs; True when it is seen for the first time."""
        result = await upsert(self.tickets, {"_id": ticket.id}, {"$setOnInsert": {
            "ticket": ticket.model_dump(mode="json"), "needs": needs.model_dump()}})
        return result is not None and result.upserted_id is not None

    async def recall(self, ticket_id: str) -> tuple[TicketSnapshot, Needs] | None:
        doc = await self.tickets.find_one({"_id": ticket_id})
        if doc is None:
            return None
        return TicketSnapshot.model_validate(doc["ticket"]), Needs.model_validate(doc["needs"])

    async def refresh(self, ticket: TicketSnapshot) -> None:
        """Keep the remembered snapshot current (priority, tags, status), never stepping back.
        Read and written by `_id` alone: FerretDB reads a whole collection for any other filter,
        `_id` plus a version included."""
        doc = await self.tickets.find_one({"_id": ticket.id}, {"ticket": 1})
        if doc is not None and doc["ticket"]["version"] < ticket.version:
            await self.tickets.update_one({"_id": ticket.id}, {"$set": {"ticket": ticket.model_dump(mode="json")}})

    async def set_needs(self, ticket_id: str, needs: Needs, *, priority: str | None = None) -> None:
        change: dict[str, Any] = {"needs": needs.model_dump()}
        if priority:
            change["ticket.priority"] = priority
        await self.tickets.update_one({"_id": ticket_id}, {"$set": change})

    # ------------------------------------------------------------ who served a customer
    async def note_served(self, customer_id: str, agent_id: str, now: datetime) -> None:
        await upsert(self.customers, {"_id": customer_id}, {"$set": {"agent_id": agent_id, "at": now}})

    async def last_agent(self, customer_id: str) -> str | None:
        doc = await self.customers.find_one({"_id": customer_id})
        return doc["agent_id"] if doc else None

    # ------------------------------------------------------------ automation rules
    async def put_rule(self, rule_id: str, rule: Rule) -> None:
        await upsert(self.rules, {"_id": rule_id}, {"$set": rule.model_dump(mode="json")})
        self._rules.invalidate()

    async def delete_rule(self, rule_id: str) -> bool:
        deleted = (await self.rules.delete_one({"_id": rule_id})).deleted_count > 0
        self._rules.invalidate()
        return deleted

    async def all_rules(self) -> dict[str, Rule]:
        """Every rule; read for every new ticket, so kept a few seconds (shared/cache.py)."""
        return dict(await self._rules.get())

    async def _load_rules(self) -> dict[str, Rule]:
        return {d["_id"]: Rule.model_validate(d) async for d in self.rules.find({})}

    # ------------------------------------------------------------ knowledge base
    async def put_article(self, article_id: str, article: Article, now: datetime) -> None:
        await upsert(self.articles, {"_id": article_id}, {"$set": {**article.model_dump(), "updated_at": now}})

    async def get_article(self, article_id: str) -> Article | None:
        doc = await self.articles.find_one({"_id": article_id})
        return Article.model_validate(doc) if doc else None

    async def delete_article(self, article_id: str) -> bool:
        return (await self.articles.delete_one({"_id": article_id})).deleted_count > 0

    async def all_articles(self, language: str | None = None) -> dict[str, Article]:
        query = {"language": language} if language else {}
        return {d["_id"]: Article.model_validate(d) async for d in self.articles.find(query)}

    # ------------------------------------------------------------ escalations
    async def put_escalation(self, escalation_id: str, escalation: Escalation) -> None:
        await upsert(self.escalations, {"_id": escalation_id}, {"$set": escalation.model_dump(mode="json")})

    async def delete_escalation(self, escalation_id: str) -> bool:
        return (await self.escalations.delete_one({"_id": escalation_id})).deleted_count > 0

    async def all_escalations(self) -> dict[str, Escalation]:
        return {d["_id"]: Escalation.model_validate(d) async for d in self.escalations.find({})}

    async def escalation_decision(self, key: str) -> dict[str, Any] | None:
        return await self.escalated.find_one({"_id": key})

    async def record_escalation(self, key: str, decision: dict[str, Any]) -> dict[str, Any]:
        """Keep the first decision taken for `key`; a later (redelivered, racing) one gets that one back."""
        try:
            await self.escalated.insert_one({"_id": key, **decision})
            return {"_id": key, **decision}
        except DuplicateKeyError:
            return await self.escalated.find_one({"_id": key})

    # ------------------------------------------------------------ the waiting queue
    async def enqueue(self, ticket: TicketSnapshot, needs: Needs, now: datetime) -> None:
        """Put the ticket in the queue, or update its priority and needs if it is there already
        (it keeps its place among tickets of its priority)."""
        await upsert(self.queue, {"_id": ticket.id}, {
            "$set": {"ticket": ticket.model_dump(mode="json"), "needs": needs.model_dump(),
                     "rank": PRIORITY_RANK.get(ticket.priority, 2)},
            "$setOnInsert": {"enqueued_at": now}})

    async def queued(self, ticket_id: str) -> bool:
        return await self.queue.find_one({"_id": ticket_id}, {"_id": 1}) is not None

    async def dequeue(self, ticket_id: str) -> None:
        await self.queue.delete_one({"_id": ticket_id})

    async def waiting(self, limit: int = 1000) -> list[tuple[TicketSnapshot, Needs | None]]:
        """Urgent first, then oldest."""
        return [(TicketSnapshot.model_validate(d["ticket"]), Needs.model_validate(d["needs"]) if d.get("needs") else None)
                async for d in self.queue.find({}).sort([("rank", ASCENDING), ("enqueued_at", ASCENDING)]).limit(limit)]

    async def queue_length(self) -> int:
        return await self.queue.count_documents({})


def stored_profile(profile: AgentProfile) -> dict[str, Any]:
    doc = profile.model_dump()
    if doc["working_hours"]:
        doc["working_hours"]["hours"] = stored_week(doc["working_hours"]["hours"])
    return doc


def to_agent(doc: dict[str, Any]) -> Agent:
    hours = doc.get("working_hours")
    if hours:
        hours = {**hours, "hours": loaded_week(hours.get("hours") or {})}
    return Agent.model_validate({**doc, "id": doc["_id"], "tickets": sorted(doc.get("tickets") or []),
                                 "slots": doc.get("slots") or [], "working_hours": hours})
