"""Read-model rules: which facts an event contributes. Pure.

Every fact has a natural key (the ticket, the SLA target), so applying the same event
twice, or replaying a topic into an empty store, gives the same numbers."""
from __future__ import annotations

from typing import Any

from shared.events import CloudEvent, EventType, SlaTargetEvent, TicketCreated


def ticket_fact(event: CloudEvent) -> dict[str, Any] | None:
    """The row a ticket contributes when it is created."""
    if event.type != EventType.TICKET_CREATED:
        return None
    created = TicketCreated.model_validate(event.data)
    return {"_id": created.ticket.id, "channel": created.ticket.channel.value,
            "priority": created.ticket.priority, "created_at": created.ticket.created_at}


def sla_fact(event: CloudEvent) -> dict[str, Any] | None:
    kinds = {EventType.SLA_BREACHED: "breached", EventType.SLA_MET: "met", EventType.SLA_WARNING: "warning"}
    kind = kinds.get(event.type)
    if kind is None:
        return None
    payload = SlaTargetEvent.model_validate(event.data)
    return {"_id": f"{payload.ticket_id}:{payload.target.value}:{kind}", "ticket_id": payload.ticket_id,
            "target": payload.target.value, "kind": kind, "policy_id": payload.policy_id, "at": payload.at}
