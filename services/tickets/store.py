"""The collections the tickets service owns: tickets (with their outbox), the message
index, conversation threads, customers and their identities."""
from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime
from typing import Any

from services.tickets.listing import SqliteListing
from services.tickets.domain import PRIORITY_RANK, CustomerInfo, CustomStatus, Ticket, customer_id_for, search_terms
from shared import topics
from shared.events import CloudEvent, Identity
from shared.locks import KeyedLock
from shared.mongo import ASCENDING, DESCENDING, DuplicateKeyError, Mongo, ReturnDocument, upsert
from shared.outbox import FIELD as OUTBOX_FIELD, entry

SUMMARY_FIELDS = {"messages": 0, "timeline": 0, "notes": 0, "search": 0, "sla_states": 0, OUTBOX_FIELD: 0, "applied_commands": 0}
# how lists can be ordered: (field, direction) — every order ends on _id so cursors are stable
SORTS: dict[str, tuple[str, int]] = {
    "-created_at": ("created_at", DESCENDING), "created_at": ("created_at", ASCENDING),
    "-updated_at": ("updated_at", DESCENDING), "updated_at": ("updated_at", ASCENDING),
    "priority": ("priority_rank", ASCENDING), "-priority": ("priority_rank", DESCENDING),
}


class Purged(Exception):
    """The ticket was purged: only its tombstone is left."""


class VersionConflict(Exception):
    """Someone else changed the ticket since it was loaded; reload and decide again."""


class TicketStore:
    def __init__(self, mongo: Mongo) -> None:
        self.mongo = mongo
        self.listing: SqliteListing | None = None  # on FerretDB with local SQLite files (listing.py)
        self.tickets = mongo.collection("tickets")
        self.outbox_marks = mongo.collection("tickets_outbox")  # see shared/outbox.py
        self.message_index = mongo.collection("ticket_messages")
        self.threads = mongo.collection("ticket_threads")
        self.external_refs = mongo.collection("ticket_external_refs")
        self.deliveries = mongo.collection("ticket_deliveries")
        self.customers = mongo.collection("customers")
        self.identities = mongo.collection("customer_identities")
        self.statuses = mongo.collection("ticket_statuses")

    async def ensure_indexes(self) -> None:
        await self.mongo.index(self.tickets, [("created_at", DESCENDING), ("_id", DESCENDING)])
        await self.mongo.index(self.tickets, [("status", 1), ("created_at", DESCENDING)])
        await self.mongo.index(self.tickets, [("customer.id", 1)])
        await self.mongo.index(self.tickets, [("assignee", 1)])
        await self.mongo.index(self.tickets, [("status", 1), ("postponed_until", 1)])
        await self.mongo.index(self.tickets, [("status", 1), ("resolved_at", 1)])
        await self.mongo.index(self.tickets, [("updated_at", DESCENDING), ("_id", DESCENDING)])
        await self.mongo.index(self.tickets, [("priority_rank", 1), ("_id", 1)])
        await self.mongo.index(self.tickets, [("team", 1), ("created_at", DESCENDING)])
        await self.mongo.index(self.tickets, [("search", 1)])
        await self.mongo.index(self.tickets, [("sla_states", 1), ("created_at", DESCENDING)])
        await self.mongo.index(self.message_index, [("ticket_id", 1)])
        if (file := self.mongo.sqlite_file()) is not None:
            await self.mongo.create_collections(["tickets"])
            listing = SqliteListing(file, "tickets")
            if await listing.prepare():
                self.listing = listing

    # ------------------------------------------------------------ tickets
    async def load(self, ticket_id: str) -> Ticket | None:
        return (await self.load_for(ticket_id, None))[0]

    async def load_for(self, ticket_id: str, command_id: str | None) -> tuple[Ticket | None, bool]:
        """The ticket, and whether the command `command_id` was applied to it already: one read."""
        skipped = {OUTBOX_FIELD: 0} if command_id else {OUTBOX_FIELD: 0, "applied_commands": 0}
        doc = await self.tickets.find_one({"_id": ticket_id}, skipped)
        if doc and doc.get("purged"):
            raise Purged(ticket_id)
        if doc is None:
            return None, False
        return Ticket.model_validate(doc), bool(command_id) and command_id in (doc.get("applied_commands") or [])

    async def purge(self, ticket: Ticket, event: CloudEvent, now: datetime) -> dict[str, Any]:
        """Replace the ticket with a tombstone that keeps no personal data, only the
        `purged` event until it is sent; its conversations start new tickets from now on."""
        tombstone = {"_id": ticket.id, "purged": True, "purged_at": now, "version": ticket.version + 1,
                     OUTBOX_FIELD: [entry(topics.TICKETS_EVENTS, ticket.id, event)]}
        await self.tickets.replace_one({"_id": ticket.id}, tombstone)
        await self.threads.delete_many({"ticket_id": ticket.id})
        return tombstone

    async def postponed_due(self, now: datetime, limit: int = 200) -> list[str]:
        if self.listing is not None and self.listing.ready:
            return await self.listing.ids({"status": "postponed", "postponed_until": {"$lte": now}}, limit)
        return [d["_id"] async for d in self.tickets.find(
            {"status": "postponed", "postponed_until": {"$lte": now}}, {"_id": 1}).limit(limit)]

    async def save(self, ticket: Ticket, events: list[tuple[str, CloudEvent]], *,
                   expected_version: int | None, command_id: str | None = None) -> dict[str, Any]:
        """Write the ticket and its events in one atomic step. `expected_version` None
        means a new ticket. Returns the stored document (with every pending event)."""
        pending = [entry(topic, ticket.id, event) for topic, event in events]
        body = ticket.model_dump(mode="python", exclude={"version"})
        # derived fields the list filters and sorts on
        body["search"] = search_terms(ticket)
        body["priority_rank"] = PRIORITY_RANK.get(ticket.priority, 2)
        body["sla_states"] = sorted(set(ticket.sla.values()))
        if expected_version is None:
            doc = {"_id": ticket.id, **body, "version": 1, OUTBOX_FIELD: pending,
                   "applied_commands": [command_id] if command_id else []}
            try:
                await self.tickets.insert_one(doc)
            except DuplicateKeyError as exc:
                raise VersionConflict(ticket.id) from exc
            ticket.version = 1
            return doc
        update: dict[str, Any] = {"$set": {**body, "version": expected_version + 1}}
        push: dict[str, Any] = {}
        if pending:
            push[OUTBOX_FIELD] = {"$each": pending}
        if command_id:
            push["applied_commands"] = command_id
        if push:
            update["$push"] = push
        doc = await self.tickets.find_one_and_update(
            self.mongo.by_id(ticket.id, version=expected_version), update,
            return_document=ReturnDocument.AFTER)
        if doc is None or doc.get("version") != expected_version + 1:
            raise VersionConflict(ticket.id)
        ticket.version = expected_version + 1
        return doc

    async def pending_of(self, ticket_id: str) -> dict[str, Any] | None:
        return await self.tickets.find_one({"_id": ticket_id}, {OUTBOX_FIELD: 1})

    async def get_view(self, ticket_id: str) -> dict[str, Any] | None:
        doc = await self.tickets.find_one({"_id": ticket_id}, {OUTBOX_FIELD: 0, "applied_commands": 0})
        if doc is not None and doc.get("purged"):
            return None
        if doc is not None:  # show who the customer is now: identities added or merged since
            customer = await self.current_customer(doc["customer"]["id"])
            if customer:
                doc["customer"] = {"id": customer["_id"], "name": customer.get("name") or doc["customer"].get("name"),
                                   "identities": customer.get("identities", [])}
        return doc

    async def resolved_before(self, cutoff: datetime, limit: int = 200) -> list[str]:
        if self.listing is not None and self.listing.ready:
            return await self.listing.ids({"status": "resolved", "resolved_at": {"$lte": cutoff}}, limit)
        return [d["_id"] async for d in self.tickets.find(
            {"status": "resolved", "resolved_at": {"$lte": cutoff}}, {"_id": 1}).limit(limit)]

    async def list_view(self, *, filters: dict[str, Any], limit: int, cursor: str | None,
                        sort: str = "-created_at") -> tuple[list[dict[str, Any]], str | None]:
        field, direction = SORTS[sort]
        if self.listing is not None and self.listing.ready:
            after = decode_cursor(cursor) if cursor else None
            ids = await self.listing.page(filters, field=field, descending=direction == DESCENDING,
                                          limit=limit + 1, after=after)
            docs = [d for d in await asyncio.gather(*(self.tickets.find_one({"_id": i}, SUMMARY_FIELDS)
                                                      for i in ids[:limit])) if d is not None]
            more = len(ids) > limit
            next_cursor = encode_cursor(docs[-1].get(field), docs[-1]["_id"]) if more and docs else None
            return docs, next_cursor
        query: dict[str, Any] = {"purged": {"$ne": True}, **filters}
        if cursor:
            value, last_id = decode_cursor(cursor)
            beyond = "$lt" if direction == DESCENDING else "$gt"
            query["$or"] = [{field: {beyond: value}}, {field: value, "_id": {beyond: last_id}}]
        docs = [d async for d in self.tickets.find(query, SUMMARY_FIELDS)
                .sort([(field, direction), ("_id", direction)]).limit(limit + 1)]
        more = len(docs) > limit
        docs = docs[:limit]
        next_cursor = encode_cursor(docs[-1].get(field), docs[-1]["_id"]) if more and docs else None
        return docs, next_cursor

    # ------------------------------------------------------------ custom statuses
    async def put_status(self, status: CustomStatus) -> None:
        await upsert(self.statuses, {"_id": status.name}, {"$set": status.model_dump(mode="json", exclude={"name"})})

    async def custom_status(self, name: str) -> CustomStatus | None:
        doc = await self.statuses.find_one({"_id": name})
        return CustomStatus(name=doc["_id"], category=doc["category"], label=doc["label"]) if doc else None

    async def custom_statuses(self) -> list[CustomStatus]:
        return [CustomStatus(name=d["_id"], category=d["category"], label=d["label"])
                async for d in self.statuses.find({}).sort([("_id", ASCENDING)])]

    async def delete_status(self, name: str) -> bool:
        return (await self.statuses.delete_one({"_id": name})).deleted_count > 0

    # ------------------------------------------------------------ merge
    async def repoint(self, old_ticket: str, new_ticket: str, message_ids: list[str]) -> None:
        """Messages and conversations of a merged ticket lead to the survivor from now on."""
        for message_id in message_ids:
            await self.message_index.update_one({"_id": message_id}, {"$set": {"ticket_id": new_ticket}})
        await self.threads.update_many({"ticket_id": old_ticket}, {"$set": {"ticket_id": new_ticket}})
        await self.external_refs.update_many({"ticket_id": old_ticket}, {"$set": {"ticket_id": new_ticket}})

    # ------------------------------------------------------------ message index and threads
    async def ticket_of_message(self, message_id: str) -> str | None:
        doc = await self.message_index.find_one({"_id": message_id})
        return doc["ticket_id"] if doc else None

    async def index_message(self, message_id: str, ticket_id: str) -> None:
        await upsert(self.message_index, {"_id": message_id}, {"$setOnInsert": {"ticket_id": ticket_id}})

    async def move_message(self, message_id: str, ticket_id: str) -> None:
        await upsert(self.message_index, {"_id": message_id}, {"$set": {"ticket_id": ticket_id}})

    async def index_external(self, channel: str, external_id: str, ticket_id: str) -> None:
        """Remember which ticket a channel's own message id landed in, so replies to it
        (mail In-Reply-To/References, social replies) find the ticket."""
        await upsert(self.external_refs, {"_id": f"{channel}:{external_id}"}, {"$setOnInsert": {"ticket_id": ticket_id}})

    async def ticket_of_external(self, channel: str, external_id: str) -> str | None:
        doc = await self.external_refs.find_one({"_id": f"{channel}:{external_id}"})
        return doc["ticket_id"] if doc else None

    async def thread_ticket(self, thread_key: str) -> str | None:
        doc = await self.threads.find_one({"_id": thread_key})
        return doc["ticket_id"] if doc else None

    async def claim_thread(self, thread_key: str, *, candidate: str, replacing: str | None) -> str:
        """Point the conversation at a ticket; returns the ticket it points at now
        (someone else's claim wins a race, so both file into one ticket)."""
        if replacing is None:
            doc = await upsert(self.threads, {"_id": thread_key}, {"$setOnInsert": {"ticket_id": candidate}},
                               returning=True)
            return doc["ticket_id"]
        doc = await self.threads.find_one_and_update(
            {"_id": thread_key, "ticket_id": replacing}, {"$set": {"ticket_id": candidate}},
            return_document=ReturnDocument.AFTER)
        return doc["ticket_id"] if doc else (await self.thread_ticket(thread_key) or candidate)

    # ------------------------------------------------------------ customers
    async def resolve_customer(self, name: str | None, identities: list[Identity],
                               now: datetime, *, locks: KeyedLock) -> CustomerInfo:
        """One customer across identities: a known identity names the customer, unknown
        identities are linked to it, and a message that links two customers merges them
        (the older one stays). Idempotent, so a redelivered message changes nothing."""
        keys = list(dict.fromkeys(i.key for i in identities))
        # one lookup per identity: an `_id` lookup is indexed on every server, `$in` is not on FerretDB
        found_docs = await asyncio.gather(*(self.identities.find_one({"_id": k}) for k in keys))
        known = {d["_id"]: d["customer_id"] for d in found_docs if d}
        found = list(dict.fromkeys(known[k] for k in keys if k in known))
        customer_id = await self._oldest(found) if found else customer_id_for(keys[0])
        for other in found:
            if other != customer_id:
                await self.merge_customers(customer_id, other, now=now, locks=locks)
        for key in keys:
            if key not in known:
                await upsert(self.identities, {"_id": key}, {"$setOnInsert": {"customer_id": customer_id}})
        update: dict[str, Any] = {"$setOnInsert": {"created_at": now}, "$addToSet": {"identities": {"$each": keys}}}
        if name:
            update["$set"] = {"name": name}
        async with locks.hold(customer_id):
            doc = await upsert(self.customers, {"_id": customer_id}, update, returning=True)
        return CustomerInfo(id=customer_id, name=doc.get("name"), identities=doc.get("identities", keys),
                            tier=doc.get("tier"))

    async def set_customer_tier(self, customer_id: str, tier: str | None, *, now: datetime) -> bool:
        """The tier goes on the live profile (following merges); tickets opened from now on carry it."""
        doc = await self.current_customer(customer_id)
        if doc is None:
            return False
        await self.customers.update_one({"_id": doc["_id"]}, {"$set": {"tier": tier, "updated_at": now}})
        return True

    async def _oldest(self, customer_ids: list[str]) -> str:
        docs = [d async for d in self.customers.find({"_id": {"$in": customer_ids}}, {"created_at": 1})]
        if not docs:
            return customer_ids[0]
        return min(docs, key=lambda d: (d.get("created_at"), d["_id"]))["_id"]

    async def merge_customers(self, survivor: str, other: str, *, now: datetime, locks: KeyedLock) -> None:
        """Fold `other` into `survivor`: identities, tickets and later lookups all lead to
        the survivor; the merged profile points at it."""
        if survivor == other:
            return
        first, second = sorted((survivor, other))
        async with locks.hold(first), locks.hold(second):
            gone = await self.customers.find_one({"_id": other})
            if gone is None or gone.get("merged_into") == survivor:
                return
            moved = list(gone.get("identities", []))
            await self.identities.update_many({"customer_id": other}, {"$set": {"customer_id": survivor}})
            await self.customers.update_one({"_id": survivor}, {
                "$addToSet": {"identities": {"$each": moved},
                              "merged_ids": {"$each": [other, *gone.get("merged_ids", [])]}},
                "$set": {"updated_at": now}})
            await self.customers.update_one({"_id": other}, {"$set": {"merged_into": survivor, "updated_at": now}})

    async def current_customer(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's live profile, following merges."""
        for _ in range(10):
            doc = await self.customers.find_one({"_id": customer_id})
            if doc is None or not doc.get("merged_into"):
                return doc
            customer_id = doc["merged_into"]
        return doc

    async def customer_view(self, customer_id: str) -> dict[str, Any] | None:
        doc = await self.current_customer(customer_id)
        if doc is None:
            return None
        ids = [doc["_id"], *doc.get("merged_ids", [])]
        tickets = [t async for t in self.tickets.find(
            {"customer.id": {"$in": ids}}, {"_id": 1, "status": 1, "channel": 1, "subject": 1, "created_at": 1})
            .sort([("created_at", DESCENDING)])]
        return {"id": doc["_id"], "name": doc.get("name"), "tier": doc.get("tier"),
                "identities": doc.get("identities", []),
                "merged_ids": doc.get("merged_ids", []), "created_at": doc.get("created_at"),
                "tickets": [{"id": t["_id"], **{k: v for k, v in t.items() if k != "_id"}} for t in tickets]}


def encode_cursor(value: Any, ticket_id: str) -> str:
    """An opaque cursor: the sort value and id of the last ticket on the page."""
    packed = {"t": value.isoformat()} if isinstance(value, datetime) else {"v": value}
    return base64.urlsafe_b64encode(json.dumps([packed, ticket_id]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[Any, str]:
    try:
        packed, ticket_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if "t" in packed:
            return datetime.fromisoformat(packed["t"]), str(ticket_id)
        if not isinstance(packed["v"], (int, str, type(None))):
            raise ValueError("bad cursor value")
        return packed["v"], str(ticket_id)
    except Exception as exc:
        raise ValueError("invalid cursor") from exc
