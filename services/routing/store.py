"""The collections routing owns: agents (with the tickets they carry) and the waiting queue.

Capacity is kept exact without transactions: `free` is decremented only by an update
whose filter requires `free > 0` and the ticket not yet on the agent, so two racing
reservations for the last slot cannot both match, and a repeated one matches nothing."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from services.routing.domain import Agent, AgentProfile, Presence
from shared.events import TicketSnapshot
from shared.mongo import ASCENDING, DuplicateKeyError, Mongo, ReturnDocument

PRIORITY_RANK = {"urgent": 0, "high": 1, "normal": 2, "low": 3}


class RoutingStore:
    def __init__(self, mongo: Mongo) -> None:
        self.agents = mongo.collection("routing_agents")
        self.queue = mongo.collection("routing_queue")

    async def ensure_indexes(self) -> None:
        await self.agents.create_index([("presence", ASCENDING), ("free", ASCENDING)])
        await self.agents.create_index([("tickets", ASCENDING)])
        await self.queue.create_index([("rank", ASCENDING), ("enqueued_at", ASCENDING)])

    # ------------------------------------------------------------ agents
    async def upsert_agent(self, agent_id: str, profile: AgentProfile, now: datetime) -> Agent:
        for _ in range(20):
            doc = await self.agents.find_one({"_id": agent_id})
            if doc is None:
                new = {"_id": agent_id, **profile.model_dump(), "presence": Presence.offline.value,
                       "tickets": [], "free": profile.capacity, "version": 1, "updated_at": now}
                try:
                    await self.agents.insert_one(new)
                    return to_agent(new)
                except DuplicateKeyError:
                    continue
            free = profile.capacity - len(doc.get("tickets", []))
            updated = await self.agents.find_one_and_update(
                {"_id": agent_id, "version": doc["version"]},
                {"$set": {**profile.model_dump(), "free": free, "updated_at": now}, "$inc": {"version": 1}},
                return_document=ReturnDocument.AFTER)
            if updated is not None:
                return to_agent(updated)
        raise RuntimeError(f"agent {agent_id} is changing too fast to update")

    async def set_presence(self, agent_id: str, presence: Presence, now: datetime) -> Agent | None:
        doc = await self.agents.find_one_and_update(
            {"_id": agent_id}, {"$set": {"presence": presence.value, "updated_at": now}, "$inc": {"version": 1}},
            return_document=ReturnDocument.AFTER)
        return to_agent(doc) if doc else None

    async def get_agent(self, agent_id: str) -> Agent | None:
        doc = await self.agents.find_one({"_id": agent_id})
        return to_agent(doc) if doc else None

    async def all_agents(self) -> list[Agent]:
        return [to_agent(d) async for d in self.agents.find({}).sort([("_id", ASCENDING)])]

    async def available_agents(self) -> list[Agent]:
        return [to_agent(d) async for d in self.agents.find({"presence": Presence.online.value, "free": {"$gt": 0}})]

    async def holder_of(self, ticket_id: str) -> str | None:
        doc = await self.agents.find_one({"tickets": ticket_id}, {"_id": 1})
        return doc["_id"] if doc else None

    async def reserve(self, agent_id: str, ticket_id: str, now: datetime) -> bool:
        doc = await self.agents.find_one_and_update(
            {"_id": agent_id, "presence": Presence.online.value, "free": {"$gt": 0}, "tickets": {"$ne": ticket_id}},
            {"$inc": {"free": -1, "version": 1}, "$push": {"tickets": ticket_id},
             "$set": {"last_assigned_at": now}})
        return doc is not None

    async def release(self, ticket_id: str) -> list[str]:
        """Free the slot a ticket holds; a second call finds nothing to free."""
        released = []
        while True:
            doc = await self.agents.find_one_and_update(
                {"tickets": ticket_id}, {"$pull": {"tickets": ticket_id}, "$inc": {"free": 1, "version": 1}})
            if doc is None:
                return released
            released.append(doc["_id"])

    # ------------------------------------------------------------ the waiting queue
    async def enqueue(self, ticket: TicketSnapshot, now: datetime) -> None:
        await self.queue.update_one({"_id": ticket.id}, {"$setOnInsert": {
            "ticket": ticket.model_dump(mode="json"), "rank": PRIORITY_RANK.get(ticket.priority, 2),
            "enqueued_at": now}}, upsert=True)

    async def dequeue(self, ticket_id: str) -> None:
        await self.queue.delete_one({"_id": ticket_id})

    async def waiting(self, limit: int = 500) -> list[TicketSnapshot]:
        return [TicketSnapshot.model_validate(d["ticket"]) async for d in
                self.queue.find({}).sort([("rank", ASCENDING), ("enqueued_at", ASCENDING)]).limit(limit)]

    async def queue_length(self) -> int:
        return await self.queue.count_documents({})


def to_agent(doc: dict[str, Any]) -> Agent:
    return Agent.model_validate({**doc, "id": doc["_id"]})
