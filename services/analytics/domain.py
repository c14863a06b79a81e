"""Read-model rules: what each ticket or SLA event contributes, and the arithmetic on the results. Pure.

Everything an event contributes is an insert-only row whose `_id` is a natural key, so
applying an event twice, or replaying the topics into an empty store, stores the same rows:
- a *state* row per change of what analytics reads from a ticket (status, assignee, tags,
  priority), keyed by the ticket's version; the latest version is the ticket's state;
- *facts* (first response, resolution, assignment, reopening), one per natural key;
- *SLA facts*, one per warning or outcome of each clock.
Insert-only because FerretDB 1.24 makes only inserts atomic, and only inserts cheap: its
updates and deletes take time in proportion to the collection (measured: ~5 µs per stored
document, 100 ms per update at 20,000 documents), so a row per ticket rewritten on every event
would slow down as the history grows."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.events import (
    CloudEvent,
    EventType,
    SlaTargetEvent,
    TicketAssigned,
    TicketCsatReceived,
    TicketPurged,
    TicketReplied,
    TicketSnapshot,
    TicketStatusChanged,
)

# ---------------------------------------------------------------- vocabulary

# tickets still owed work; `answered` counts, as the customer may write again any moment
BACKLOG_STATUSES = ("new", "open", "answered", "postponed")
# tickets that never were real requests: left out of recurring problems
JUNK_STATUSES = frozenset({"spam", "deleted", "purged"})

# (upper bound in seconds, label); None: no bound
AGE_BUCKETS: tuple[tuple[int | None, str], ...] = (
    (3600, "0-1h"),
    (4 * 3600, "1-4h"),
    (24 * 3600, "4-24h"),
    (3 * 86400, "1-3d"),
    (7 * 86400, "3-7d"),
    (None, "7d+"),
)

# histogram bounds in seconds (Prometheus `le`)
FIRST_RESPONSE_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800)
RESOLUTION_BUCKETS = (900, 3600, 14400, 28800, 86400, 172800, 259200, 604800, 1209600, 2592000)
DURATION_BUCKETS = {"first_response": FIRST_RESPONSE_BUCKETS, "resolution": RESOLUTION_BUCKETS}

SLA_KINDS = {EventType.SLA_WARNING: "warning", EventType.SLA_BREACHED: "breached", EventType.SLA_MET: "met"}

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
BUCKETS = {"hour": HOUR, "day": DAY}

# One change of a ticket can cause several events carrying the same version: a customer's
# message and the reopening it caused. Their snapshots differ (the message's is taken before
# the status moved), so within a version a status event outranks the others.
STATUS_EVENTS = frozenset(
    {EventType.TICKET_STATUS_CHANGED, EventType.TICKET_REOPENED, EventType.TICKET_DELETED, EventType.TICKET_RESTORED}
)
PURGED_VERSION = 2**62  # a purge is final: it outranks every version the ticket ever had


# ---------------------------------------------------------------- what an event contributes


@dataclass
class Contribution:
    ticket_id: str | None = None
    state: dict[str, Any] | None = None  # the ticket as this event leaves it
    facts: list[dict[str, Any]] = field(default_factory=list)
    sla: dict[str, Any] | None = None
    csat: dict[str, Any] | None = None  # a customer's answer to a confirmation request


def contribution(event: CloudEvent) -> Contribution:
    """What `event` adds to the read model; an unknown event type contributes nothing."""
    if event.type in SLA_KINDS:
        return Contribution(ticket_id=event.subject, sla=sla_fact(event))
    if event.type == EventType.TICKET_PURGED:
        purged = TicketPurged.model_validate(event.data)
        return Contribution(ticket_id=purged.ticket_id, state=purged_state(purged.ticket_id))
    if not event.type.startswith("deskstream.ticket.") or "ticket" not in event.data:
        return Contribution()
    snapshot = TicketSnapshot.model_validate(event.data["ticket"])
    return Contribution(
        ticket_id=snapshot.id,
        state=ticket_state(snapshot, rank=int(event.type in STATUS_EVENTS)),
        facts=ticket_facts(event, snapshot),
        csat=csat_answer(event) if event.type == EventType.TICKET_CSAT_RECEIVED else None,
    )


def csat_answer(event: CloudEvent) -> dict[str, Any]:
    """One answer per confirmation request: a later answer to the same request replaces it (by `at`).
    Credited to the agent and team that held the ticket when it was resolved."""
    answer = TicketCsatReceived.model_validate(event.data)
    return {
        "survey_id": answer.survey_id,
        "ticket_id": answer.ticket.id,
        "channel": answer.ticket.channel.value,
        "agent": answer.agent_id,
        "team": answer.team,
        "rating": answer.rating,
        "solved": answer.solved,
        "at": utc(answer.at),
    }


def satisfied(rating: int) -> bool:
    """CSAT counts ratings of 4 and 5 as satisfied."""
    return rating >= 4


def csat_numbers(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """Responses, the share satisfied (percent, of all ratings) and how many said solved."""
    n = len(answers)
    happy = sum(satisfied(a["rating"]) for a in answers)
    return {
        "responses": n,
        "satisfied": happy,
        "satisfied_pct": round(100 * happy / n, 1) if n else None,
        "solved": sum(bool(a["solved"]) for a in answers),
        "mean_rating": round(sum(a["rating"] for a in answers) / n, 2) if n else None,
    }


def ticket_state(snapshot: TicketSnapshot, *, rank: int = 0) -> dict[str, Any]:
    """What analytics reads from a ticket, as of `snapshot`; of two states of one ticket the
    one with the higher (version, rank) is the later. No customer id: the read model needs
    none, so a purge leaves nothing personal behind."""
    return {
        "_id": f"{snapshot.id}:{snapshot.version}:{rank}",
        "ticket_id": snapshot.id,
        "version": snapshot.version,
        "rank": rank,
        "channel": snapshot.channel.value,
        "created_at": utc(snapshot.created_at),
        "status": snapshot.status,
        "priority": snapshot.priority,
        "assignee": snapshot.assignee,
        "tags": list(snapshot.tags),
    }


def purged_state(ticket_id: str) -> dict[str, Any]:
    """The ticket's data is gone; it still counts as created (counters never go down), on
    the channel and at the time its earlier states tell."""
    return {
        "_id": f"{ticket_id}:purged",
        "ticket_id": ticket_id,
        "version": PURGED_VERSION,
        "rank": 0,
        "status": "purged",
        "priority": None,
        "assignee": None,
        "tags": [],
    }


def ticket_facts(event: CloudEvent, snapshot: TicketSnapshot) -> list[dict[str, Any]]:
    t = snapshot.id
    created = utc(snapshot.created_at)
    if event.type == EventType.TICKET_REPLIED:
        replied = TicketReplied.model_validate(event.data)
        # only the first reply of a ticket becomes this fact: later ones are duplicates of its key
        return [
            duration_fact(
                f"{t}:first_response",
                "first_response",
                snapshot,
                agent=replied.agent_id,
                start=created,
                at=utc(replied.message.at),
            )
        ]
    if event.type == EventType.TICKET_ASSIGNED:
        assigned = TicketAssigned.model_validate(event.data)
        # one per agent and ticket: "handled" counts tickets, not hand-offs back and forth
        return [
            fact(f"{t}:assigned:{assigned.agent_id}", "assigned", snapshot, agent=assigned.agent_id, at=utc(event.time))
        ]
    if event.type in (EventType.TICKET_STATUS_CHANGED, EventType.TICKET_REOPENED):
        change = TicketStatusChanged.model_validate(event.data)
        at = utc(event.time)
        if change.to_status == "resolved":
            # the assignee resolves (routing keeps them on the ticket); the first resolution is
            # what the resolution-time distribution measures, every one counts for the agent
            return [
                fact(f"{t}:resolved:{snapshot.version}", "resolved", snapshot, agent=snapshot.assignee, at=at),
                duration_fact(f"{t}:resolution", "resolution", snapshot, agent=snapshot.assignee, start=created, at=at),
            ]
        if event.type == EventType.TICKET_REOPENED:
            # credited to whoever holds the ticket when it comes back: the agent who resolved it
            return [fact(f"{t}:reopened:{snapshot.version}", "reopened", snapshot, agent=snapshot.assignee, at=at)]
    return []


def fact(id_: str, kind: str, snapshot: TicketSnapshot, *, agent: str | None, at: datetime) -> dict[str, Any]:
    return {
        "_id": id_,
        "kind": kind,
        "ticket_id": snapshot.id,
        "channel": snapshot.channel.value,
        "agent": agent,
        "at": at,
    }


def duration_fact(
    id_: str, kind: str, snapshot: TicketSnapshot, *, agent: str | None, start: datetime, at: datetime
) -> dict[str, Any]:
    return {**fact(id_, kind, snapshot, agent=agent, at=at), "seconds": max(0.0, (at - start).total_seconds())}


def sla_fact(event: CloudEvent) -> dict[str, Any]:
    """One row per warning and per outcome of each clock; next-response clocks run once per
    customer message (`cycle`), so the cycle is part of the key."""
    kind = SLA_KINDS[event.type]
    p = SlaTargetEvent.model_validate(event.data)
    at = utc(p.at)
    return {
        "_id": f"{p.ticket_id}:{p.target.value}:{p.cycle}:{kind}",
        "ticket_id": p.ticket_id,
        "target": p.target.value,
        "kind": kind,
        "policy_id": p.policy_id,
        "at": at,
    }


# ---------------------------------------------------------------- arithmetic


def utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def floor_time(at: datetime, bucket: str) -> datetime:
    """The start of the UTC hour or day `at` falls in."""
    at = utc(at)
    if bucket == "day":
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    return at.replace(minute=0, second=0, microsecond=0)


def bucket_starts(start: datetime, end: datetime, bucket: str) -> list[datetime]:
    """Every bucket start from the one holding `start` up to (not including) `end`."""
    step, at, out = BUCKETS[bucket], floor_time(start, bucket), []
    while at < end:
        out.append(at)
        at += step
    return out


def bucket_bound(seconds: float, bounds: tuple[int, ...]) -> int | None:
    """The smallest bound `seconds` does not exceed (Prometheus `le`); None: above every bound."""
    i = bisect.bisect_left(bounds, seconds)
    return bounds[i] if i < len(bounds) else None


def cumulative(counts: dict[int | None, int], bounds: tuple[int, ...]) -> list[tuple[float, int]]:
    """Per-bound counts (None: above every bound) as Prometheus histogram buckets:
    cumulative, ending with infinity."""
    per = [0] * (len(bounds) + 1)
    for le, n in counts.items():
        i = len(bounds) if le is None else bisect.bisect_left(bounds, le)
        per[min(i, len(bounds))] += n
    out, running = [], 0
    for bound, n in zip([*bounds, math.inf], per):
        running += n
        out.append((float(bound), running))
    return out


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between closest ranks; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def distribution(values: list[float]) -> dict[str, Any]:
    """Count, mean and the percentiles a support lead reads (seconds, rounded to 0.1 s)."""

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 1)

    return {
        "count": len(values),
        "mean_s": r(sum(values) / len(values)) if values else None,
        "p50_s": r(percentile(values, 50)),
        "p90_s": r(percentile(values, 90)),
        "p99_s": r(percentile(values, 99)),
    }


def age_label(seconds: float) -> str:
    for bound, label in AGE_BUCKETS:
        if bound is None or seconds < bound:
            return label
    return AGE_BUCKETS[-1][1]


def ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
