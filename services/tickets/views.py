"""A ticket as agents and the delivery read it: its state and its whole conversation, assembled from
the journal (and the list document, for tickets whose oldest entries are long gone from memory).

Read from the database on any tickets process, so a change the owning process acknowledged is seen
wherever the next request lands: its journal entry was written before the acknowledgement."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from services.tickets.domain import Delivery, Message, Note, Ticket, TimelineEntry
from services.tickets.store import Purged, TicketStore


async def load_ticket(store: TicketStore, ticket_id: str) -> Ticket | None:
    """The ticket with its messages, notes and timeline (those of tickets merged into it included);
    None when there is no such ticket; raises Purged for a purged one."""
    doc = await store.ticket_doc(ticket_id)
    if doc is not None and doc.get("purged"):
        raise Purged(ticket_id)
    entries = await store.entries_of([ticket_id])
    state = latest_state(ticket_id, doc, entries)
    if state is None:
        return None
    merged = [t for t in state.get("merged_from") or [] if t != ticket_id]
    others = await store.entries_of(merged) if merged else []
    return assemble(state, entries, others)


def latest_state(ticket_id: str, doc: dict[str, Any] | None, entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ticket's newest state: the list document, or a journal entry written after it."""
    state = {**{k: v for k, v in doc.items() if k != "_id"}, "id": doc["_id"]} if doc else None
    version = state.get("version", 0) if state else -1
    for entry in entries:
        snap = entry.get("state")
        if snap and snap.get("id") == ticket_id and entry["seq"] >= version:
            state, version = dict(snap), entry["seq"]
    return state


def assemble(state: dict[str, Any], entries: list[dict[str, Any]], others: Sequence[dict[str, Any]] = ()) -> Ticket:
    messages: dict[str, tuple[datetime, Message]] = {}
    notes: list[Note] = []
    timeline: list[TimelineEntry] = []
    deliveries: dict[str, Delivery] = {}
    for entry in [*entries, *others]:
        snap = entry.get("state") or {}
        origin = snap.get("id", entry["ticket_id"])
        foreign = origin != state["id"]
        filed = entry["at"] if isinstance(entry["at"], datetime) else datetime.fromisoformat(entry["at"])
        for m in entry.get("messages") or ():
            message = Message.model_validate(m)
            messages.setdefault(message.message_id, (filed, message))
        notes += [Note.model_validate(n) for n in entry.get("notes") or ()]
        for t in entry.get("timeline") or ():
            item = TimelineEntry.model_validate(t)
            if foreign:
                item.details = {**item.details, "from_ticket": origin}
            timeline.append(item)
        for message_id, d in (entry.get("deliveries") or {}).items():
            deliveries[message_id] = Delivery.model_validate(d)
    for message_id, delivery in deliveries.items():
        if (found := messages.get(message_id)) is not None:
            message = found[1]
            message.delivery = delivery
            if delivery.provider_id and message.external_id is None:
                message.external_id = delivery.provider_id
    body = {k: v for k, v in state.items() if k not in Ticket.HISTORY}
    ticket = Ticket.model_validate({**body, "messages": [], "notes": [], "timeline": []})
    # in the order they were filed (a mail's own date may be anything)
    ticket.messages = [
        m for _, m in sorted(messages.values(), key=lambda fm: fm[0].replace(tzinfo=fm[0].tzinfo or UTC))
    ]
    ticket.notes = sorted(notes, key=lambda n: n.at)
    ticket.timeline = sorted(timeline, key=lambda e: e.at)
    if ticket.timeline:
        ticket.updated_at = max(ticket.updated_at, ticket.timeline[-1].at)
    return ticket


def ticket_json(ticket: Ticket) -> dict[str, Any]:
    """The API's view of a ticket: its fields, the conversation, without what the service keeps for itself."""
    return ticket.model_dump(mode="json", exclude={"seen", "deliveries", "inbound_count", "last_entry_at"})
