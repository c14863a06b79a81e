"""The collections the tickets service owns.

- `ticket_journal`: append-only, one entry per change of a ticket — the messages, notes and
  timeline entries the change added, and the ticket's state after it. Keyed by what caused the
  change (an inbound message's entry is keyed by the message id, so it is also the message index);
  a replayed change inserts the same key again and is ignored. A ticket's conversation is read
  from here, and so is its freshest state.
- `tickets`: one document per ticket for the lists (filters, sorts, text search), written by the
  owning process in coalesced batches (`flush_docs` in services/tickets/processor.py), never on the
  message path.
- `customer_links`: who is who beyond the rule "an identity is its own customer": identities
  attached to another customer, service tiers, merged profiles. Small; every process holds it.
- `customers`: what an admin sets on a profile (tier, merges); profiles themselves are read from
  the customer's tickets.
- `ticket_statuses` (custom statuses), `ticket_external_refs` (ids our replies were sent under)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from services.tickets.domain import PRIORITY_RANK, CustomStatus, Ticket
from shared.mongo import ASCENDING, DESCENDING
from shared.storage import Storage

# how lists can be ordered: (field, direction) — every order ends on _id so cursors are stable
SORTS: dict[str, tuple[str, int]] = {
    "-created_at": ("created_at", DESCENDING),
    "created_at": ("created_at", ASCENDING),
    "-updated_at": ("updated_at", DESCENDING),
    "updated_at": ("updated_at", ASCENDING),
    "priority": ("priority_rank", ASCENDING),
    "-priority": ("priority_rank", DESCENDING),
}
SUMMARY_FIELDS = {"search": 0, "seen": 0, "deliveries": 0}
# the lists agents open most, as indexes over FerretDB's table (on MongoDB: ensure_indexes)
TICKET_SQL_INDEXES = [
    ("created", ["created_at", "_id"]),
    ("updated", ["updated_at", "_id"]),
    ("prio", ["priority_rank", "_id"]),
    ("status_created", ["status", "created_at"]),
    ("status_updated", ["status", "updated_at"]),
    ("assignee_updated", ["assignee", "updated_at"]),
    ("team_created", ["team", "created_at"]),
    ("customer", ["customer.id", "created_at"]),
    ("substatus", ["substatus", "created_at"]),
    ("thread", ["thread_key", "created_at"]),
]
TICKET_ARRAYS = frozenset({"tags", "sla_states", "search"})
JOURNAL_KEEP = ("ticket_id", "seq", "at", "thread_key", "customer_id")
JOURNAL_SQL_INDEXES = [
    ("ticket", ["ticket_id", "seq"]),
    ("thread", ["thread_key", "at"]),
    ("customer", ["customer_id", "at"]),
]


class Purged(Exception):
    """The ticket was purged: only its tombstone is left."""


class TicketStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.tickets = storage.collection("tickets")
        self.journal = storage.collection("ticket_journal")
        self.links = storage.collection("customer_links")
        self.customers = storage.collection("customers")
        self.statuses = storage.collection("ticket_statuses")
        self.external_refs = storage.collection("ticket_external_refs")

    async def ensure_indexes(self) -> None:
        mongo = self.storage.mongo
        for keys in (
            [("created_at", DESCENDING), ("_id", DESCENDING)],
            [("status", 1), ("created_at", DESCENDING)],
            [("customer.id", 1)],
            [("assignee", 1)],
            [("updated_at", DESCENDING), ("_id", DESCENDING)],
            [("priority_rank", 1), ("_id", 1)],
            [("team", 1), ("created_at", DESCENDING)],
            [("search", 1)],
            [("sla_states", 1), ("created_at", DESCENDING)],
            [("thread_key", 1)],
        ):
            await mongo.index(self.tickets, keys)
        for keys in ([("ticket_id", 1), ("seq", 1)], [("thread_key", 1), ("at", 1)], [("customer_id", 1)]):
            await mongo.index(self.journal, keys)
        await self.storage.add_sql_indexes("tickets", TICKET_SQL_INDEXES, TICKET_ARRAYS)
        await self.storage.add_sql_indexes("ticket_journal", JOURNAL_SQL_INDEXES)

    # ------------------------------------------------------------ the journal
    async def append(self, entries: list[dict[str, Any]]) -> set[str]:
        """Insert journal entries (a batch's); returns the keys that were there already (a replay)."""
        if not entries:
            return set()
        return await self.storage.insert_batch(self.journal, [self.storage.pack(e, JOURNAL_KEEP) for e in entries])

    async def entry(self, entry_id: str) -> dict[str, Any] | None:
        doc = await self.journal.find_one({"_id": entry_id})
        return self.storage.unpack(doc) if doc else None

    async def entries_of(self, ticket_ids: list[str]) -> list[dict[str, Any]]:
        if not ticket_ids:
            return []
        docs = await self.storage.docs_where(self.journal, {"ticket_id": {"$in": ticket_ids}})
        return sorted((self.storage.unpack(d) for d in docs), key=lambda e: (e["ticket_id"], e["seq"]))

    async def repoint(self, entry_id: str, ticket_id: str) -> None:
        """A split: the message's entry belongs to its new ticket from now on."""
        await self.journal.update_one({"_id": entry_id}, {"$set": {"ticket_id": ticket_id}})

    async def move_messages(self, from_ticket: str, to_ticket: str) -> int:
        """A merge: the merged ticket's messages are the survivor's from now on (the rest of its history
        stays, and shows on the survivor as from the merged ticket)."""
        moved = 0
        for entry in await self.entries_of([from_ticket]):
            if entry.get("messages"):
                await self.repoint(entry["_id"], to_ticket)
                moved += 1
        return moved

    async def thread_ticket(self, thread_key: str) -> str | None:
        """The ticket a conversation's newest message was filed into (for chat widgets)."""
        ids = await self.storage.ids_where(self.journal, {"thread_key": thread_key}, limit=1, order=("at", True))
        if not ids:
            return None
        entry = await self.entry(ids[0])
        return entry["ticket_id"] if entry else None

    async def forget(self, ticket_id: str) -> int:
        """A purge: the journal keeps nothing of the ticket."""
        ids = await self.storage.ids_where(self.journal, {"ticket_id": ticket_id}, limit=100_000)
        for entry_id in ids:
            await self.journal.delete_one({"_id": entry_id})
        return len(ids)

    async def blobs_in_use(self, refs: list[str], *, besides: Sequence[str] = ()) -> set[str]:
        """Which of these files (`blob:<sha256>`) a journal entry of a ticket other than `besides` refers
        to: files another ticket shares are kept when a ticket is purged or erased. A scan of the journal:
        rare admin work."""
        ids = await self.storage.ids_mentioning(
            self.journal, refs, ["messages.attachments.content_ref", "messages.raw_ref"]
        )
        wanted, leaving = set(refs), set(besides)
        used: set[str] = set()
        for start in range(0, len(ids), 200):
            for doc in await self.storage.read_many(self.journal, ids[start : start + 200]):
                if doc.get("ticket_id") not in leaving:
                    used |= blob_refs([self.storage.unpack(doc)]) & wanted
        return used

    # ------------------------------------------------------------ ticket documents (the lists)
    async def write_docs(self, new: list[dict[str, Any]], changed: list[tuple[str, dict[str, Any], list[str]]]) -> None:
        """New tickets inserted together; changed ones updated (fields set, search words added)."""
        if new:
            await self.storage.insert_batch(self.tickets, new)
        updates = []
        for ticket_id, fields, words in changed:
            update: dict[str, Any] = {"$set": fields}
            if words:
                update["$addToSet"] = {"search": {"$each": words}}
            updates.append(({"_id": ticket_id}, update))
        if updates:
            await self.storage.update_batch(self.tickets, updates, upsert=True)

    async def tombstone(self, ticket_id: str, now: datetime) -> None:
        await self.tickets.replace_one(
            {"_id": ticket_id}, {"_id": ticket_id, "purged": True, "purged_at": now}, upsert=True
        )

    async def ticket_doc(self, ticket_id: str) -> dict[str, Any] | None:
        return await self.tickets.find_one({"_id": ticket_id}, {"search": 0})

    async def list_view(
        self, *, filters: dict[str, Any], limit: int, cursor: str | None, sort: str = "-created_at"
    ) -> tuple[list[dict[str, Any]], str | None]:
        field, direction = SORTS[sort]
        side = self.storage.sql("tickets")
        if side is not None and side.ready:
            after = decode_cursor(cursor) if cursor else None
            ids = await side.page(
                filters, field=field, descending=direction == DESCENDING, limit=limit + 1, after=after
            )
            docs = await self.storage.read_many(self.tickets, ids[:limit], SUMMARY_FIELDS)
            more = len(ids) > limit
            next_cursor = encode_cursor(docs[-1].get(field), docs[-1]["_id"]) if more and docs else None
            return docs, next_cursor
        query: dict[str, Any] = {"purged": {"$ne": True}, **filters}
        if cursor:
            value, last_id = decode_cursor(cursor)
            beyond = "$lt" if direction == DESCENDING else "$gt"
            query["$or"] = [{field: {beyond: value}}, {field: value, "_id": {beyond: last_id}}]
        docs = [
            d
            async for d in self.tickets.find(query, SUMMARY_FIELDS)
            .sort([(field, direction), ("_id", direction)])
            .limit(limit + 1)
        ]
        more = len(docs) > limit
        docs = docs[:limit]
        next_cursor = encode_cursor(docs[-1].get(field), docs[-1]["_id"]) if more and docs else None
        return docs, next_cursor

    async def tickets_of_customers(self, customer_ids: list[str]) -> list[dict[str, Any]]:
        """Every ticket of these customers: the lists' documents and, for tickets too new to have one
        yet, the state their journal holds."""
        docs = {
            d["_id"]: d
            for d in await self.storage.docs_where(
                self.tickets,
                {"customer.id": {"$in": customer_ids}},
                projection={"_id": 1, "status": 1, "channel": 1, "subject": 1, "created_at": 1, "customer": 1},
            )
        }
        created = await self.storage.docs_where(self.journal, {"customer_id": {"$in": customer_ids}})
        for entry in map(self.storage.unpack, created):
            state = entry.get("state") or {}
            if state.get("id") == entry["ticket_id"] and entry["ticket_id"] not in docs:
                docs[entry["ticket_id"]] = {
                    "_id": entry["ticket_id"],
                    **{k: state.get(k) for k in ("status", "channel", "subject", "created_at", "customer")},
                }
        return sorted(docs.values(), key=lambda d: str(d.get("created_at")), reverse=True)

    # ------------------------------------------------------------ who is who
    async def all_links(self) -> list[dict[str, Any]]:
        return [d async for d in self.links.find({})]

    async def add_links(self, rows: list[tuple[str, Any]]) -> None:
        """Identities newly attached to a customer (a batch's): inserted together; one there already is a
        replay of the same decision."""
        if rows:
            await self.storage.insert_batch(self.links, [{"_id": k, "value": v} for k, v in dict(rows).items()])

    async def put_link(self, key: str, value: Any) -> None:
        await self.links.replace_one({"_id": key}, {"_id": key, "value": value}, upsert=True)

    async def customer_doc(self, customer_id: str) -> dict[str, Any] | None:
        return await self.customers.find_one({"_id": customer_id})

    async def forget_customers(self, customer_ids: list[str]) -> list[str]:
        """An erasure: the links leading to these customers (identities, tier, merges) and their profile
        documents go. Returns the identity keys that were linked to them."""
        ids = set(customer_ids)
        doomed, identities = [], []
        for row in await self.all_links():
            kind, _, subject = row["_id"].partition(":")
            if (kind == "identity" and row.get("value") in ids) or (kind in ("tier", "merged") and subject in ids):
                doomed.append(row["_id"])
                if kind == "identity":
                    identities.append(subject)
        for key in doomed:
            await self.links.delete_one({"_id": key})
        for customer_id in ids:
            await self.customers.delete_one({"_id": customer_id})
        return identities

    async def put_customer(self, customer_id: str, fields: dict[str, Any], add_merged: Sequence[str] = ()) -> None:
        update: dict[str, Any] = {"$set": fields}
        if add_merged:
            update["$addToSet"] = {"merged_ids": {"$each": list(add_merged)}}
        await self.customers.update_one({"_id": customer_id}, update, upsert=True)

    # ------------------------------------------------------------ replies' ids
    async def index_external(self, channel: str, external_id: str, ticket_id: str) -> None:
        """Remember the ticket a reply was sent for under the provider's or our own id, so an answer
        quoting it (mail In-Reply-To, a delivery report) finds the ticket."""
        await self.external_refs.replace_one(
            {"_id": f"{channel}:{external_id}"},
            {"_id": f"{channel}:{external_id}", "ticket_id": ticket_id},
            upsert=True,
        )

    async def ticket_of_external(self, channel: str, external_id: str) -> str | None:
        doc = await self.external_refs.find_one({"_id": f"{channel}:{external_id}"})
        return doc["ticket_id"] if doc else None

    async def forget_external(self, ticket_ids: list[str]) -> None:
        """A purge or an erasure: answers quoting these tickets' replies no longer lead anywhere."""
        if ticket_ids:
            await self.external_refs.delete_many({"ticket_id": {"$in": list(ticket_ids)}})

    # ------------------------------------------------------------ custom statuses
    async def put_status(self, status: CustomStatus) -> None:
        await self.statuses.replace_one(
            {"_id": status.name}, {"_id": status.name, **status.model_dump(mode="json", exclude={"name"})}, upsert=True
        )

    async def custom_status(self, name: str) -> CustomStatus | None:
        doc = await self.statuses.find_one({"_id": name})
        return CustomStatus(name=doc["_id"], category=doc["category"], label=doc["label"]) if doc else None

    async def custom_statuses(self) -> list[CustomStatus]:
        return [
            CustomStatus(name=d["_id"], category=d["category"], label=d["label"])
            async for d in self.statuses.find({}).sort([("_id", ASCENDING)])
        ]

    async def delete_status(self, name: str) -> bool:
        return (await self.statuses.delete_one({"_id": name})).deleted_count > 0


def list_document(ticket: Ticket, words: list[str]) -> dict[str, Any]:
    """A ticket as the lists read it: its state (no history) and the fields lists filter and sort on. It
    also keeps what the owning process remembers of the ticket (the latest inputs applied, its replies'
    deliveries; lists leave them out), so a ticket let go of from memory is read back whole."""
    doc = ticket.model_dump(mode="python", exclude=set(Ticket.HISTORY))
    doc["_id"] = doc.pop("id")
    doc["search"] = words
    doc["priority_rank"] = PRIORITY_RANK.get(ticket.priority, 2)
    doc["sla_states"] = sorted(set(ticket.sla.values()))
    return doc


def ticket_of_document(doc: dict[str, Any]) -> Ticket:
    """A ticket read back from its list document (a ticket let go of from memory: its state without the
    history; a document written before it kept `seen` and `deliveries` reads back without them)."""
    fields = {k: v for k, v in doc.items() if k not in LIST_ONLY}
    fields["id"] = fields.pop("_id")
    return Ticket.model_validate(fields)


LIST_ONLY = frozenset({"search", "priority_rank", "sla_states", "_packed"})


def blob_refs(entries: list[dict[str, Any]]) -> set[str]:
    """The kept files (`blob:<sha256>`) journal entries refer to: their messages' attachments and
    original mails."""
    refs: set[str] = set()
    for entry in entries:
        for message in entry.get("messages") or ():
            files = [message.get("raw_ref"), *((a or {}).get("content_ref") for a in message.get("attachments") or ())]
            refs.update(r for r in files if isinstance(r, str) and r.startswith("blob:"))
    return refs


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
