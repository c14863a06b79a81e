"""What every tickets process must hear of while it runs — a reply or a satisfaction survey for a chat
widget connected to it, a customer linked, merged or erased — travels twice: on `tickets.events` with
every other ticket event, and as a copy on `tickets.notices`, which each process reads from its end.
Reading `tickets.events` itself for these few types cost every process a decode of every ticket event
(9 % of a tickets process's CPU at 250 msg/s). The copy has the event's id, so a replay repeats it
exactly as it repeats the event."""

from __future__ import annotations

from collections.abc import Iterable

from shared import topics
from shared.events import EventType
from shared.kafka import Outgoing

NOTICES = frozenset(
    {
        EventType.TICKET_REPLIED,
        EventType.TICKET_CSAT_REQUESTED,
        EventType.CUSTOMER_CHANGED,
        EventType.CUSTOMER_ERASED,
    }
)


def with_notices(records: Iterable[Outgoing]) -> list[Outgoing]:
    """The records, then a copy on `tickets.notices` of each ticket event every process must hear of."""
    out = list(records)
    out.extend(
        r._replace(topic=topics.TICKETS_NOTICES, partition=None)
        for r in out
        if r.topic == topics.TICKETS_EVENTS and r.type in NOTICES
    )
    return out
