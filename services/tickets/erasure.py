"""Erasure and export of what is held about one customer (GDPR articles 17 and 15), and what a purged
or erased ticket leaves behind outside its journal and list document.

Tickets live in the memory and the changelog of the process owning their partition, so a customer's
tickets are erased one by one, each by an `EraseTicket` command to its owner (services/tickets/
processor.py): it forgets the ticket, deletes its journal, leaves a tombstone without personal data as
its list document, and announces `deskstream.ticket.purged` (reason `erasure`) on the ticket's key, on
which SLA, routing and analytics drop their copies. What is not the ticket's own — who is who, the
profile, delivery records, the ids replies went under, kept files — is removed here once for the whole
customer, and `deskstream.customer.erased` tells every tickets process to forget the customer too.

Files are content-addressed, so the same bytes may belong to another customer's ticket as well: a
file goes only when no other ticket's journal entry refers to it. They go first, while the journal
still names them, so an erasure interrupted and asked for again leaves none behind. Tickets deletes
its own files (agents' attachments) and asks ingest, which keeps the customers' files and original
mails, on `privacy.erasures` (services/ingest/erasure.py): done within moments of the answer, not
before it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.tickets.commands import CommandBus
from services.tickets.customers import CustomerBook, canonical
from services.tickets.delivery.store import DeliveryStore
from services.tickets.store import Purged, TicketStore, blob_refs
from services.tickets.views import load_ticket, ticket_json
from shared import topics
from shared.events import CustomerErased, EraseBlobs, EraseTicket, EventType, stable_id, utcnow
from shared.kafka import Outgoing, event

Send = Callable[[list[Outgoing]], Awaitable[Any]]
AT_ONCE = 8  # erase commands in flight at a time (a customer may have hundreds of tickets)


class Shredder:
    """What a purged or erased ticket leaves outside its journal and list document: the files no other
    ticket refers to, its delivery records and the ids our replies went under. Each step may run again
    (after a crash, or an erasure asked for twice) and finds what is left."""

    def __init__(self, *, store: TicketStore, deliveries: DeliveryStore, send: Send, source: str) -> None:
        self.store, self.deliveries, self.send, self.source = store, deliveries, send, source

    async def files(self, ticket_ids: list[str], refs: set[str], *, reason: str, now: datetime) -> list[str]:
        """Erase the files (`refs`, which these tickets refer to) no other ticket refers to: ingest's copies
        (asked for on `privacy.erasures`) and ours. Run while the tickets' journal still names them, so
        that a crash right after loses no file from sight. Returns the files erased."""
        gone = sorted(refs - await self.store.blobs_in_use(sorted(refs), besides=ticket_ids))
        if gone:  # ingest first: it works on it while the rest is removed here
            erase = EraseBlobs(request_id=stable_id("erase-blobs", *gone), blob_refs=gone, reason=reason, at=now)
            await self.send(
                [
                    event(
                        topics.PRIVACY_ERASURES,
                        None,
                        EventType.ERASE_BLOBS,
                        erase,
                        source=self.source,
                        subject=None,
                        id_=erase.request_id,
                        time=now,
                    )
                ]
            )
            await self.deliveries.drop_blobs([ref.removeprefix("blob:") for ref in gone])
        return gone

    async def records(self, ticket_ids: list[str]) -> None:
        """Remove the tickets' delivery records (a provider's answer may name the customer's address) and
        the ids their replies went under. Run once the tickets are gone, so no delivery of theirs starts."""
        await self.store.forget_external(ticket_ids)
        await self.deliveries.forget_tickets(ticket_ids)


@dataclass
class Holding:
    """What is held about a customer: their profiles (the live one first, then those merged into it),
    their tickets as the lists have them, their identities and the profile documents admins wrote."""

    ids: list[str]
    tickets: list[dict[str, Any]]
    identities: list[str]
    profiles: dict[str, dict[str, Any]]


class Unfinished(Exception):
    """A ticket's owner did not erase it (it is away, or refused): the customer's files and some of their
    tickets may be gone, their profile is not; the erasure can be asked for again."""


class Erasure:
    def __init__(
        self,
        *,
        store: TicketStore,
        deliveries: DeliveryStore,
        bus: CommandBus,
        customers: CustomerBook,
        shredder: Shredder,
        send: Send,
        source: str,
    ) -> None:
        self.store, self.deliveries, self.bus, self.customers = store, deliveries, bus, customers
        self.shredder, self.send, self.source = shredder, send, source

    async def held(self, customer_id: str) -> Holding | None:
        """What is held about the customer: None when nothing is."""
        ids = self.customers.with_merged(customer_id)
        await self.bus.refresh_lists()
        tickets = await self.store.tickets_of_customers(ids)
        profiles = {c: doc for c in ids if (doc := await self.store.customer_doc(c)) is not None}
        linked = [k for k, c in self.customers.links.items() if c in ids]
        if not (tickets or profiles or linked):
            return None
        on_tickets = [k for t in tickets for k in (t.get("customer") or {}).get("identities") or ()]
        return Holding(ids, tickets, list(dict.fromkeys([*on_tickets, *linked])), profiles)

    # ------------------------------------------------------------ export
    async def export(self, customer_id: str) -> dict[str, Any] | None:
        """Everything held about the customer, as JSON: the profile, identities, every ticket with its
        messages, notes and timeline, delivery records and the kept files' descriptions."""
        held = await self.held(customer_id)
        if held is None:
            return None
        tickets = []
        for summary in held.tickets:
            try:
                ticket = await load_ticket(self.store, summary["_id"])
            except Purged:
                continue
            if ticket is not None:
                tickets.append(ticket_json(ticket))
        names = [t["customer"]["name"] for t in tickets if t["customer"].get("name")]
        records = await self.deliveries.outcomes_of([t["id"] for t in tickets])
        return {
            "customer": {
                "id": held.ids[0],
                "name": names[-1] if names else None,
                "tier": self.customers.tiers.get(held.ids[0]),
                "merged_ids": held.ids[1:],
                "profiles": [
                    {**{k: v for k, v in doc.items() if k != "_id"}, "id": c} for c, doc in held.profiles.items()
                ],
            },
            "identities": held.identities,
            "tickets": tickets,
            "deliveries": [{"message_id": d["_id"], **{k: v for k, v in d.items() if k != "_id"}} for d in records],
            "attachments": [
                {"ticket_id": t["id"], "message_id": m["message_id"], **a}
                for t in tickets
                for m in t["messages"]
                for a in m.get("attachments") or ()
            ],
            "original_mails": [
                {"ticket_id": t["id"], "message_id": m["message_id"], "ref": m["raw_ref"]}
                for t in tickets
                for m in t["messages"]
                if m.get("raw_ref")
            ],
            "exported_at": utcnow(),
        }

    # ------------------------------------------------------------ erasure
    async def erase(self, customer_id: str, *, actor: str) -> dict[str, Any] | None:
        """Erase the customer's files, every ticket of theirs through its owner, then what is the
        customer's own. Raises Unfinished when a ticket's owner does not answer: who the customer is stays
        known until every ticket is gone, so asking again finishes the work."""
        held = await self.held(customer_id)
        if held is None:
            return None
        ids = held.ids
        ticket_ids = [t["_id"] for t in held.tickets]
        now = utcnow()
        files = await self.shredder.files(
            ticket_ids, blob_refs(await self.store.entries_of(ticket_ids)), reason="erasure", now=now
        )
        gate = asyncio.Semaphore(AT_ONCE)

        async def erase_ticket(ticket_id: str) -> int:
            async with gate:
                outcome = await self.bus.send(
                    EventType.ERASE_TICKET,
                    EraseTicket(
                        command_id=stable_id("erase", ids[0], ticket_id, size=24), ticket_id=ticket_id, actor=actor
                    ),
                )
                return outcome.status

        try:
            statuses = await asyncio.gather(*(erase_ticket(t) for t in ticket_ids))
        except Exception as exc:  # Unavailable: the owner is away (taking a partition over, say)
            raise Unfinished(str(exc)) from exc
        refused = [t for t, status in zip(ticket_ids, statuses) if status >= 400 and status != 404]
        if refused:
            raise Unfinished(f"tickets {', '.join(refused)} were not erased")
        await self.shredder.records(ticket_ids)
        linked = await self.store.forget_customers(ids)
        identities = list(dict.fromkeys([*held.identities, *linked, *map(canonical, held.identities)]))
        erased = CustomerErased(
            customer_id=ids[0],
            merged_ids=ids[1:],
            identities=identities,
            ticket_ids=ticket_ids,
            blob_refs=files,
            actor=actor,
            at=now,
        )
        self.customers.forget(erased)  # here at once; every other tickets process when it hears the event
        await self.send(
            [
                event(
                    topics.TICKETS_EVENTS,
                    ids[0],
                    EventType.CUSTOMER_ERASED,
                    erased,
                    source=self.source,
                    subject=ids[0],
                    id_=stable_id("erased", ids[0], *ticket_ids, size=24),
                    time=now,
                )
            ]
        )
        return {
            "customer_id": ids[0],
            "merged_ids": ids[1:],
            "tickets": len(ticket_ids),
            "files": len(files),
            "status": "erased",
        }
