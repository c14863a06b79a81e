"""The ticket aggregate and its lifecycle rules. Pure: no I/O, no framework.

Each method changes the ticket and returns the events it caused, as (event type, payload) pairs,
and leaves what it added to the conversation — messages, notes, timeline entries — in the lists
`messages`, `notes` and `timeline`. The tickets service holds the aggregate in memory without its
history: after each change it takes those lists away into an append-only journal entry (see
`drain`), so the lists hold only what is new. A ticket read back for an agent (services/tickets/
views.py) is the same class with the whole history in them."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from shared.events import (
    Attachment,
    Channel,
    Direction,
    DuplicateOf,
    EventType,
    MessageReceived,
    MessageSummary,
    TicketAssigned,
    TicketCreated,
    TicketCsatReceived,
    TicketCsatRequested,
    TicketDeliveryUpdated,
    TicketDuplicateSuspected,
    TicketMerged,
    TicketMessageAdded,
    TicketNoteAdded,
    TicketPriorityChanged,
    TicketReplied,
    TicketSnapshot,
    TicketSplit,
    TicketStatusChanged,
    TicketTagsChanged,
    TicketUnassigned,
    stable_id,
)


class Status(StrEnum):
    new = "new"
    open = "open"
    answered = "answered"
    postponed = "postponed"
    resolved = "resolved"
    closed = "closed"
    spam = "spam"
    deleted = "deleted"


S = Status
# Which status an agent or admin may set from which. Customer messages and agent replies
# move tickets by the rules in `receive` and `reply` below.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    S.new: frozenset({S.open, S.postponed, S.resolved, S.spam, S.deleted}),
    S.open: frozenset({S.postponed, S.resolved, S.spam, S.deleted}),
    S.answered: frozenset({S.open, S.postponed, S.resolved, S.spam, S.deleted}),
    S.postponed: frozenset({S.open, S.resolved, S.spam, S.deleted}),
    S.resolved: frozenset({S.open, S.closed, S.deleted}),
    S.closed: frozenset({S.deleted}),
    S.spam: frozenset({S.open, S.deleted}),
    S.deleted: frozenset({S.open}),  # restore
}
# a customer message moves the ticket to...
ON_CUSTOMER_MESSAGE: dict[Status, Status] = {
    S.new: S.new,
    S.open: S.open,
    S.answered: S.open,
    S.postponed: S.open,
    S.resolved: S.open,
    S.spam: S.spam,
    S.deleted: S.deleted,
}
# tickets in these statuses take no more messages: the next one starts a new ticket
FINISHED = frozenset({S.closed})
REPLYABLE = frozenset({S.new, S.open, S.answered, S.postponed, S.resolved})


# tickets in these statuses may be purged (their data removed for good)
PURGEABLE = frozenset({S.deleted, S.spam})


# admins add statuses of their own, each within one of these base categories (as Zammad's
# state types), so SLA clocks and analytics keep working on the category
CUSTOM_STATUS_CATEGORIES = frozenset({S.open, S.answered, S.postponed, S.resolved, S.closed})


class CustomStatus(BaseModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{1,39}$")
    category: Status
    label: str = Field(min_length=1, max_length=100)

    def check(self) -> None:
        if self.name in Status.__members__ or self.name == "purged":
            raise LifecycleError(f"{self.name} is a built-in status")
        if self.category not in CUSTOM_STATUS_CATEGORIES:
            raise LifecycleError(f"a custom status belongs to one of {sorted(CUSTOM_STATUS_CATEGORIES)}")


class Priority(StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    urgent = "urgent"


def status_event_type(previous: Status, to: Status) -> str:
    """Each status change is one event; the ones subscribers most often act on have their own type."""
    if to == S.deleted:
        return EventType.TICKET_DELETED
    if previous == S.deleted:
        return EventType.TICKET_RESTORED
    if previous in (S.resolved, S.closed) and to in (S.open, S.new):
        return EventType.TICKET_REOPENED
    return EventType.TICKET_STATUS_CHANGED


class LifecycleError(Exception):
    """The change is not allowed in the ticket's current state (HTTP 409)."""


class DeliveryState(StrEnum):
    """What became of an outbound message: queued → sent → delivered, or failed; not_sent
    when the channel cannot be reached at all (no address, no provider configured)."""

    queued = "queued"
    sent = "sent"
    delivered = "delivered"
    failed = "failed"
    not_sent = "not_sent"


# a report never moves a delivery backwards (a late "sent" after "delivered" is ignored)
DELIVERY_RANK = {
    DeliveryState.queued: 0,
    DeliveryState.sent: 1,
    DeliveryState.delivered: 2,
    DeliveryState.failed: 2,
    DeliveryState.not_sent: 2,
}


class Delivery(BaseModel):
    state: DeliveryState
    at: datetime
    detail: str | None = None
    provider_id: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None


class Message(BaseModel):
    message_id: str
    direction: Direction
    channel: Channel
    text: str
    at: datetime
    author: str | None = None
    subject: str | None = None
    html: str | None = None
    attachments: list[Attachment] = Field(default_factory=list)
    external_id: str | None = None
    raw_ref: str | None = None
    sender: str | None = None  # inbound: the identity it came from (`email:ana@example.com`); replies go there
    delivery: Delivery | None = None  # outbound only: what became of it on the channel


class Note(BaseModel):
    note_id: str
    author: str
    text: str
    at: datetime


class TimelineEntry(BaseModel):
    at: datetime
    type: str
    actor: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class CustomerInfo(BaseModel):
    id: str
    name: str | None = None
    identities: list[str] = Field(default_factory=list)
    tier: str | None = None
    # identities an unverified message claimed beside its sender's: not the customer's until a verified
    # message or an agent says so (POST /v1/customers/{id}/identities); never a reply address
    hints: list[str] = Field(default_factory=list)
    verified: bool = Field(False, description="the first message's sender was verified")


class CsatStatus(StrEnum):
    requested = "requested"
    answered = "answered"


# a customer may change their answer for this long after giving it
CSAT_UPDATE_WINDOW = timedelta(days=7)


class Csat(BaseModel):
    """The customer confirmation of the latest resolution: asked, and what the customer answered."""

    survey_id: str
    request_url: str
    status: CsatStatus = CsatStatus.requested
    message_id: str
    requested_at: datetime
    agent_id: str | None = None  # who held the ticket when it was resolved (the rating is theirs)
    team: str | None = None
    solved: bool | None = None
    rating: int | None = None
    comment: str | None = None
    answered_at: datetime | None = None
    reopened: bool = False  # the answer reopened the ticket (a later "solved" closes it again)
    closed: bool = False  # the answer closed the ticket (a later "not solved" within the window reopens it)


class CsatRefused(LifecycleError):
    """The answer cannot be taken: `status` 404 for a link that is not (any more) the ticket's, 410 for
    one answered longer ago than the update window."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


Event = tuple[str, BaseModel]
SEEN = 32  # ids of the latest inputs a ticket remembers, so a redelivered one changes nothing
MAX_DELIVERIES = 20


class Ticket(BaseModel):
    id: str
    status: Status = Status.new
    priority: str = "normal"
    channel: Channel
    customer: CustomerInfo
    subject: str | None = None
    thread_key: str
    assignee: str | None = None
    team: str | None = None
    tags: list[str] = Field(default_factory=list)
    language: str | None = None
    postponed_until: datetime | None = None
    substatus: str | None = None  # an admin-defined status within `status` (its base category)
    resolved_at: datetime | None = None
    follows: str | None = None  # the earlier ticket this conversation continues
    merged_into: str | None = None  # this ticket was merged into that one
    split_from: str | None = None  # this ticket started as a message split off that one
    duplicate_of: DuplicateOf | None = None  # very likely repeats that ticket of the same customer (issue 19)
    sla: dict[str, str] = Field(default_factory=dict)  # SLA target → warning, breached, met
    messages: list[Message] = Field(default_factory=list)
    notes: list[Note] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    version: int = 0
    # what the aggregate remembers instead of its history
    seen: list[str] = Field(default_factory=list)  # ids of the latest messages, notes and commands applied
    deliveries: dict[str, Delivery] = Field(default_factory=dict)  # outbound message id → what became of it
    inbound_count: int = 0
    last_entry_at: datetime | None = None
    merged_from: list[str] = Field(default_factory=list)  # tickets folded into this one (their history shows here)
    csat: Csat | None = None  # the latest resolution's confirmation request and its answer
    csat_due_at: datetime | None = None  # resolved, the request goes out then (a delay an admin set)

    HISTORY: ClassVar[tuple[str, ...]] = ("messages", "notes", "timeline")

    def remember(self, input_id: str) -> None:
        """A message, note or command applied: a redelivery of it changes nothing."""
        if input_id not in self.seen:
            self.seen.append(input_id)
            del self.seen[:-SEEN]

    def drain(self) -> tuple[list[Message], list[Note], list[TimelineEntry]]:
        """Take away what the last change added to the conversation (to be journaled)."""
        out = (self.messages, self.notes, self.timeline)
        self.messages, self.notes, self.timeline = [], [], []
        return out

    # ------------------------------------------------------------ creation and messages
    @classmethod
    def open_from(
        cls, msg: MessageReceived, *, ticket_id: str, customer: CustomerInfo, now: datetime, follows: str | None = None
    ) -> tuple[Ticket, list[Event]]:
        # the ticket exists from the moment its first message reached us: SLA clocks count from there
        opened = min(now, msg.received_at)
        ticket = cls(
            id=ticket_id,
            channel=msg.channel,
            customer=customer,
            subject=msg.subject,
            thread_key=msg.thread_key,
            language=msg.language,
            created_at=opened,
            updated_at=opened,
            follows=follows,
        )
        ticket._log(
            opened, "created", actor=customer.id, channel=msg.channel.value, **({"follows": follows} if follows else {})
        )
        message = ticket._append_inbound(msg)
        return ticket, [(EventType.TICKET_CREATED, TicketCreated(ticket=ticket.snapshot(), message=message))]

    def has_message(self, message_id: str) -> bool:
        return message_id in self.seen or any(m.message_id == message_id for m in self.messages)

    def accepts_messages(self) -> bool:
        return self.status not in FINISHED

    def receive(self, msg: MessageReceived, *, now: datetime) -> list[Event]:
        """A customer message joins the ticket; a waiting or resolved ticket reopens."""
        if self.has_message(msg.message_id):
            return []
        message = self._append_inbound(msg)
        self.updated_at = now
        events: list[Event] = [
            (EventType.TICKET_MESSAGE_ADDED, TicketMessageAdded(ticket=self.snapshot(), message=message))
        ]
        target = ON_CUSTOMER_MESSAGE.get(self.status, self.status)
        if target != self.status:
            events.append(self._set_status(target, actor=self.customer.id, now=now))
        return events

    def reply(
        self,
        *,
        agent_id: str,
        text: str,
        message_id: str,
        now: datetime,
        html: str | None = None,
        attachments: list[Attachment] | None = None,
    ) -> list[Event]:
        if self.has_message(message_id):
            return []
        if self.status not in REPLYABLE:
            raise LifecycleError(f"a {self.status} ticket cannot be answered")
        delivery = Delivery(state=DeliveryState.queued, at=now)
        message = Message(
            message_id=message_id,
            direction=Direction.outbound,
            channel=self.channel,
            text=text,
            at=now,
            author=agent_id,
            html=html,
            attachments=attachments or [],
            delivery=delivery,
        )
        self.messages.append(message)
        self.remember(message_id)
        self.deliveries[message_id] = delivery
        self._keep_deliveries()
        self._log(now, "reply_sent", actor=agent_id, message_id=message_id)
        self.updated_at = now
        events: list[Event] = []
        if self.status != S.answered:
            events.append(self._set_status(S.answered, actor=agent_id, now=now))
        events.insert(
            0,
            (
                EventType.TICKET_REPLIED,
                TicketReplied(ticket=self.snapshot(), message=summary(message), agent_id=agent_id),
            ),
        )
        return events

    # ------------------------------------------------------------ assignment and status
    def assign(
        self, agent_id: str, *, actor: str, now: datetime, reason: str | None = None, team: str | None = None
    ) -> list[Event]:
        if self.assignee == agent_id and (team is None or self.team == team):
            return []
        if self.status in (S.closed, S.deleted, S.spam):
            raise LifecycleError(f"a {self.status} ticket cannot be assigned")
        previous, self.assignee = self.assignee, agent_id
        self.team = team or self.team
        self._log(
            now, "assigned", actor=actor, agent_id=agent_id, previous=previous, **({"reason": reason} if reason else {})
        )
        self.updated_at = now
        return [
            (
                EventType.TICKET_ASSIGNED,
                TicketAssigned(ticket=self.snapshot(), agent_id=agent_id, previous_agent_id=previous, actor=actor),
            )
        ]

    def unassign(self, *, actor: str, now: datetime) -> list[Event]:
        if self.assignee is None:
            return []
        previous, self.assignee = self.assignee, None
        self._log(now, "unassigned", actor=actor, agent_id=previous)
        self.updated_at = now
        return [(EventType.TICKET_UNASSIGNED, TicketUnassigned(ticket=self.snapshot(), agent_id=previous, actor=actor))]

    def add_note(self, *, author: str, text: str, note_id: str, now: datetime) -> list[Event]:
        if note_id in self.seen or any(n.note_id == note_id for n in self.notes):
            return []
        self.notes.append(Note(note_id=note_id, author=author, text=text, at=now))
        self.remember(note_id)
        self._log(now, "note_added", actor=author, note_id=note_id)
        self.updated_at = now
        return [
            (
                EventType.TICKET_NOTE_ADDED,
                TicketNoteAdded(ticket=self.snapshot(), note_id=note_id, author=author, text=text, at=now),
            )
        ]

    def set_priority(self, priority: Priority, *, actor: str, now: datetime) -> list[Event]:
        if priority == self.priority:
            return []
        previous, self.priority = self.priority, priority.value
        self._log(now, "priority_changed", actor=actor, **{"from": previous, "to": priority.value})
        self.updated_at = now
        return [
            (
                EventType.TICKET_PRIORITY_CHANGED,
                TicketPriorityChanged(
                    ticket=self.snapshot(), from_priority=previous, to_priority=priority.value, actor=actor
                ),
            )
        ]

    def change_tags(self, *, add: list[str], remove: list[str], actor: str, now: datetime) -> list[Event]:
        added = [t for t in dict.fromkeys(add) if t not in self.tags and t not in remove]
        removed = [t for t in dict.fromkeys(remove) if t in self.tags]
        if not added and not removed:
            return []
        self.tags = [t for t in self.tags if t not in removed] + added
        self._log(now, "tags_changed", actor=actor, added=added, removed=removed)
        self.updated_at = now
        return [
            (
                EventType.TICKET_TAGS_CHANGED,
                TicketTagsChanged(ticket=self.snapshot(), added=added, removed=removed, actor=actor),
            )
        ]

    def record_delivery(
        self,
        message_id: str,
        *,
        state: DeliveryState,
        detail: str | None,
        provider_id: str | None,
        attempts: int,
        now: datetime,
        next_attempt_at: datetime | None = None,
    ) -> list[Event]:
        message = next((m for m in self.messages if m.message_id == message_id), None)
        if message is not None and message.direction != Direction.outbound:
            return []
        if message is None and message_id not in self.deliveries:
            return []  # not one of this ticket's replies
        state = DeliveryState(state)
        if (current := self.deliveries.get(message_id) or (message.delivery if message else None)) is not None:
            if DELIVERY_RANK[state] < DELIVERY_RANK[current.state]:
                return []  # reports arrive out of order: never step back
            if current.state == state and current.attempts >= attempts:
                return []  # the same report again
        provider_id = provider_id or (current.provider_id if current else None)
        delivery = Delivery(
            state=state,
            at=now,
            detail=detail,
            provider_id=provider_id,
            attempts=attempts,
            next_attempt_at=next_attempt_at,
        )
        self.deliveries[message_id] = delivery
        self._keep_deliveries()
        if message is not None:
            message.delivery = delivery
            if provider_id and message.external_id is None:
                message.external_id = provider_id
        self._log(
            now,
            "delivery",
            actor="delivery",
            message_id=message_id,
            state=state.value,
            attempts=attempts,
            **({"detail": detail} if detail else {}),
        )
        self.updated_at = now
        return [
            (
                EventType.TICKET_DELIVERY_UPDATED,
                TicketDeliveryUpdated(
                    ticket=self.snapshot(),
                    message_id=message_id,
                    state=state.value,
                    detail=detail,
                    provider_id=provider_id,
                    attempts=attempts,
                ),
            )
        ]

    def automate(
        self,
        *,
        rules: list[str],
        priority: str | None,
        add_tags: list[str],
        mark_spam: bool,
        now: datetime,
        team: str | None = None,
        reply: str | None = None,
        reply_id: str | None = None,
        reply_source: str | None = None,
    ) -> list[Event]:
        """Apply what automation rules decided; each rule that fired is on the timeline."""
        self._log(
            now,
            "automation",
            actor="automation",
            rules=list(rules),
            **({"team": team} if team else {}),
            **({"answered_from": reply_source} if reply_source else {}),
        )
        events: list[Event] = []
        if team:
            self.team = team
        if priority:
            events += self.set_priority(Priority(priority), actor="automation", now=now)
        if add_tags:
            events += self.change_tags(add=add_tags, remove=[], actor="automation", now=now)
        if mark_spam and S.spam in TRANSITIONS[self.status]:
            events.append(self._set_status(S.spam, actor="automation", now=now))
        elif reply and reply_id and self.status in REPLYABLE:
            events += self.reply(agent_id="automation", text=reply, message_id=reply_id, now=now)
        self.updated_at = now
        return events

    def wake_if_due(self, now: datetime) -> list[Event]:
        """A postponed ticket whose time has come is open again."""
        if self.status != S.postponed or self.postponed_until is None or self.postponed_until > now:
            return []
        return [self._set_status(S.open, actor="scheduler", now=now)]

    def check_purgeable(self) -> None:
        if self.status not in PURGEABLE:
            raise LifecycleError(f"only deleted or spam tickets can be purged; this one is {self.status}")

    def change_status(
        self, to: Status, *, actor: str, now: datetime, until: datetime | None = None, substatus: str | None = None
    ) -> list[Event]:
        if to == self.status and to != S.postponed:
            if substatus == self.substatus:
                return []
            # a custom status within the same category: agents see it, SLA and analytics need not
            previous, self.substatus = self.substatus, substatus
            self._log(
                now,
                "status_changed",
                actor=actor,
                **{"from": self.status.value, "to": to.value},
                substatus=substatus,
                previous_substatus=previous,
            )
            self.updated_at = now
            return [
                (
                    EventType.TICKET_STATUS_CHANGED,
                    TicketStatusChanged(ticket=self.snapshot(), from_status=to.value, to_status=to.value, actor=actor),
                )
            ]
        if to not in TRANSITIONS[self.status] and not (to == S.postponed == self.status):
            raise LifecycleError(f"cannot go from {self.status} to {to}")
        if to == S.postponed and until is None:
            raise LifecycleError("postponing needs 'until'")
        return [self._set_status(to, actor=actor, now=now, until=until, substatus=substatus)]

    def close_if_quiet(self, now: datetime, *, after_s: float) -> list[Event]:
        """A resolved ticket the customer did not come back to is closed after `after_s`."""
        if self.status != S.resolved or self.resolved_at is None:
            return []
        if (now - self.resolved_at).total_seconds() < after_s:
            return []
        return [self._set_status(S.closed, actor="auto-close", now=now)]

    # ------------------------------------------------------------ customer confirmation
    def request_csat(
        self, *, survey_id: str, request_url: str, text: str, message_id: str, now: datetime
    ) -> list[Event]:
        """Ask the customer of a resolved ticket whether it is solved: an outbound message on their channel
        (delivered like a reply, without making the ticket answered) with the link they answer on."""
        self.csat_due_at = None
        if self.status != S.resolved or (self.csat is not None and self.csat.survey_id == survey_id):
            return []
        delivery = Delivery(state=DeliveryState.queued, at=now)
        message = Message(
            message_id=message_id,
            direction=Direction.outbound,
            channel=self.channel,
            text=text,
            at=now,
            author="csat",
            delivery=delivery,
        )
        self.messages.append(message)
        self.remember(message_id)
        self.deliveries[message_id] = delivery
        self._keep_deliveries()
        self.csat = Csat(
            survey_id=survey_id,
            request_url=request_url,
            message_id=message_id,
            requested_at=now,
            agent_id=self.assignee,
            team=self.team,
        )
        self._log(now, "csat_requested", actor="csat", message_id=message_id, survey_id=survey_id)
        self.updated_at = now
        return [
            (
                EventType.TICKET_CSAT_REQUESTED,
                TicketCsatRequested(
                    ticket=self.snapshot(), message=summary(message), survey_id=survey_id, request_url=request_url
                ),
            )
        ]

    def answer_csat(
        self, *, survey_id: str, solved: bool, rating: int, comment: str | None, now: datetime
    ) -> list[Event]:
        """The customer's answer: solved closes a resolved ticket at once, not solved reopens it (routing
        finds it an agent again). A second answer within CSAT_UPDATE_WINDOW replaces the first, and takes
        back what the first did to the status."""
        csat = self.csat
        if csat is None or csat.survey_id != survey_id:
            raise CsatRefused(404, "this confirmation link is not the ticket's current one")
        updated = csat.status == CsatStatus.answered
        if updated and csat.answered_at is not None and now - csat.answered_at > CSAT_UPDATE_WINDOW:
            raise CsatRefused(410, "this answer can no longer be changed")
        csat.status, csat.solved, csat.rating, csat.comment = CsatStatus.answered, solved, rating, comment
        csat.answered_at = now
        self._log(now, "csat_received", actor=self.customer.id, solved=solved, rating=rating, updated=updated)
        self.updated_at = now
        events: list[Event] = [
            (
                EventType.TICKET_CSAT_RECEIVED,
                TicketCsatReceived(
                    ticket=self.snapshot(),
                    survey_id=survey_id,
                    solved=solved,
                    rating=rating,
                    comment=comment,
                    agent_id=csat.agent_id,
                    team=csat.team,
                    at=now,
                    updated=updated,
                ),
            )
        ]
        if solved and (self.status == S.resolved or (csat.reopened and self.status in (S.open, S.answered))):
            events.append(self._set_status(S.closed, actor=self.customer.id, now=now, reason="customer confirmation"))
            csat.closed, csat.reopened = True, False
        elif not solved and (self.status == S.resolved or (csat.closed and self.status == S.closed)):
            events.append(self._set_status(S.open, actor=self.customer.id, now=now, reason="customer: not solved"))
            csat.closed, csat.reopened = False, True
        return events

    def csat_if_due(self, now: datetime) -> bool:
        """Is the (delayed) confirmation request of this resolved ticket due?"""
        return self.status == S.resolved and self.csat_due_at is not None and self.csat_due_at <= now

    def record_sla(self, target: str, state: str, *, at: datetime, due_at: datetime | None, now: datetime) -> bool:
        """An SLA warning, breach or met target, on the timeline (once) when it is heard of,
        with the SLA service's own time in the details; no ticket event, as the SLA service
        has already announced it on `sla.events`."""
        if self.sla.get(target) == state:
            return False
        self.sla[target] = state
        self._log(
            max(now, self.last_entry_at) if self.last_entry_at else now,
            f"sla_{state}",
            actor="sla",
            target=target,
            happened_at=at.isoformat(),
            **({"due_at": due_at.isoformat()} if due_at else {}),
        )
        return True

    # ------------------------------------------------------------ merge and split
    def absorb(self, other: Ticket, *, actor: str, now: datetime, moved: list[str] | None = None) -> list[Event]:
        """Fold `other` into this ticket: its conversation shows here from now on (the history stays
        where it was written and is read with this ticket's), its tags join these. `moved`: the ids of
        its messages (as the agent's view of it lists them)."""
        if other.id == self.id:
            raise LifecycleError("a ticket cannot be merged into itself")
        if other.id in self.merged_from:
            return []  # done before (a retried merge)
        if self.status in (S.deleted, S.spam, S.closed):
            raise LifecycleError(f"a {self.status} ticket cannot take in another")
        moved = list(moved if moved is not None else (m.message_id for m in other.messages))
        self.merged_from = [*self.merged_from, other.id, *(t for t in other.merged_from if t not in self.merged_from)]
        self.tags += [t for t in other.tags if t not in self.tags]
        self.inbound_count += other.inbound_count
        self._log(now, "merged", actor=actor, ticket_id=other.id, messages=len(moved))
        self.updated_at = now
        return [
            (
                EventType.TICKET_MERGED,
                TicketMerged(ticket=self.snapshot(), merged_ticket_id=other.id, moved_message_ids=moved, actor=actor),
            )
        ]

    def suspect_duplicate(self, of: str, *, score: float, signals: list[str], actor: str, now: datetime) -> list[Event]:
        """Mark the ticket as very likely repeating `of`; agents (or an auto-merge rule) decide the rest.
        A ticket already merged, closed or junk is left alone, and a mark is never moved to another."""
        if of == self.id or self.duplicate_of is not None or self.merged_into:
            return []
        if self.status in (S.closed, S.spam, S.deleted):
            return []
        self.duplicate_of = DuplicateOf(ticket_id=of, score=round(score, 3))
        self._log(now, "duplicate_suspected", actor=actor, ticket_id=of, score=self.duplicate_of.score, signals=signals)
        self.updated_at = now
        return [
            (
                EventType.TICKET_DUPLICATE_SUSPECTED,
                TicketDuplicateSuspected(
                    ticket=self.snapshot(), duplicate_of=self.duplicate_of, signals=signals, at=now
                ),
            )
        ]

    def close_as_merged(self, survivor_id: str, *, actor: str, now: datetime) -> list[Event]:
        if self.merged_into == survivor_id:
            return []
        if self.status == S.deleted:
            raise LifecycleError("a deleted ticket cannot be merged")
        self.merged_into = survivor_id
        self._log(now, "merged_into", actor=actor, ticket_id=survivor_id)
        if self.status == S.closed:
            self.updated_at = now
            return [
                (
                    EventType.TICKET_STATUS_CHANGED,
                    TicketStatusChanged(
                        ticket=self.snapshot(), from_status=S.closed.value, to_status=S.closed.value, actor=actor
                    ),
                )
            ]
        return [self._set_status(S.closed, actor=actor, now=now, substatus="merged")]

    def split_off(self, message: Message, new_ticket_id: str, *, actor: str, now: datetime) -> list[Event]:
        """Take an inbound message out into a new ticket (a second question in one mail thread)."""
        if message.direction != Direction.inbound:
            raise LifecycleError("only a customer's message can start a ticket of its own")
        if self.inbound_count < 2:
            raise LifecycleError("the ticket's only customer message cannot be split off")
        self.messages = [m for m in self.messages if m.message_id != message.message_id]
        self.inbound_count -= 1
        self._log(now, "split", actor=actor, message_id=message.message_id, new_ticket_id=new_ticket_id)
        self.updated_at = now
        return [
            (
                EventType.TICKET_SPLIT,
                TicketSplit(
                    ticket=self.snapshot(), new_ticket_id=new_ticket_id, message_id=message.message_id, actor=actor
                ),
            )
        ]

    @classmethod
    def open_split(
        cls, original: Ticket, message: Message, *, ticket_id: str, actor: str, now: datetime
    ) -> tuple[Ticket, list[Event]]:
        ticket = cls(
            id=ticket_id,
            channel=message.channel,
            customer=original.customer,
            subject=message.subject or original.subject,
            thread_key=f"split:{ticket_id}",
            language=original.language,
            priority=original.priority,
            tags=list(original.tags),
            created_at=now,
            updated_at=now,
            split_from=original.id,
            messages=[message],
            inbound_count=1,
            seen=[message.message_id],
        )
        ticket._log(
            now,
            "created",
            actor=actor,
            channel=message.channel.value,
            split_from=original.id,
            message_id=message.message_id,
        )
        return ticket, [(EventType.TICKET_CREATED, TicketCreated(ticket=ticket.snapshot(), message=summary(message)))]

    # ------------------------------------------------------------ views
    def snapshot(self) -> TicketSnapshot:
        return TicketSnapshot(
            id=self.id,
            status=self.status.value,
            priority=self.priority,
            channel=self.channel,
            customer_id=self.customer.id,
            assignee=self.assignee,
            tags=list(self.tags),
            language=self.language,
            created_at=self.created_at,
            version=self.version + 1,
            team=self.team,
            customer_tier=self.customer.tier,
            substatus=self.substatus,
        )

    # ------------------------------------------------------------ internals
    def _append_inbound(self, msg: MessageReceived) -> MessageSummary:
        message = Message(
            message_id=msg.message_id,
            direction=Direction.inbound,
            channel=msg.channel,
            text=msg.text,
            at=msg.sent_at,
            author=self.customer.id,
            subject=msg.subject,
            html=msg.html,
            attachments=msg.attachments,
            external_id=msg.external_id,
            raw_ref=msg.raw_ref,
            sender=msg.customer.identities[0].key,
        )
        self.messages.append(message)
        self.remember(msg.message_id)
        self.inbound_count += 1
        self._log(
            msg.received_at,
            "message_received",
            actor=self.customer.id,
            message_id=msg.message_id,
            channel=msg.channel.value,
        )
        return summary(message)

    def _set_status(
        self,
        to: Status,
        *,
        actor: str | None,
        now: datetime,
        until: datetime | None = None,
        substatus: str | None = None,
        reason: str | None = None,
    ) -> Event:
        previous, self.status = self.status, to
        if to != S.resolved:
            self.csat_due_at = None
        self.postponed_until = until if to == S.postponed else None
        self.substatus = substatus
        if to == S.resolved:
            self.resolved_at = now
        self._log(
            now,
            "status_changed",
            actor=actor,
            **{"from": previous.value, "to": to.value},
            **({"until": until.isoformat()} if until else {}),
            **({"substatus": substatus} if substatus else {}),
            **({"reason": reason} if reason else {}),
        )
        self.updated_at = now
        return (
            status_event_type(previous, to),
            TicketStatusChanged(
                ticket=self.snapshot(), from_status=previous.value, to_status=to.value, actor=actor, until=until
            ),
        )

    def _log(self, at: datetime, type_: str, *, actor: str | None, **details: Any) -> None:
        """Add an entry in time order: a message received at ingest before an agent's reply
        was recorded, but filed after it, still reads before the reply."""
        i = len(self.timeline)
        while i and self.timeline[i - 1].at > at:
            i -= 1
        self.timeline.insert(i, TimelineEntry(at=at, type=type_, actor=actor, details=details))
        self.last_entry_at = at if self.last_entry_at is None else max(at, self.last_entry_at)

    def _keep_deliveries(self) -> None:
        """Only the latest replies' delivery states are kept in memory (older ones are in the journal)."""
        if len(self.deliveries) > MAX_DELIVERIES:
            for key in list(self.deliveries)[:-MAX_DELIVERIES]:
                del self.deliveries[key]

    # ------------------------------------------------------------ the aggregate without its history
    def core(self) -> dict[str, Any]:
        """What the service keeps of the ticket (its changelog value): everything but the history."""
        return self.model_dump(mode="json", exclude=set(self.HISTORY))


class ThreadingPolicy(BaseModel):
    """How long a conversation stays one ticket."""

    # SMS, WhatsApp, social and phone have no thread of their own: a message joins the
    # customer's ticket on that channel if the ticket saw activity within this window
    window_s: int = 7 * 24 * 3600
    # a customer writing to a resolved ticket reopens it within this time, else starts a new one
    reopen_window_s: int = 14 * 24 * 3600


WINDOWED_CHANNELS = frozenset({Channel.sms, Channel.whatsapp, Channel.social, Channel.voice})


def continues(ticket: Ticket, msg: MessageReceived, *, now: datetime, policy: ThreadingPolicy) -> bool:
    """Does `msg` continue `ticket`, or start a new one?"""
    if ticket.has_message(msg.message_id):
        return True  # a redelivery: it is already here
    if not ticket.accepts_messages():
        return False
    idle = (now - ticket.updated_at).total_seconds()
    if ticket.status == S.resolved and idle > policy.reopen_window_s:
        return False
    if msg.channel in WINDOWED_CHANNELS and idle > policy.window_s:  # noqa: SIM103 - one rule a line
        return False
    return True


def summary(message: Message) -> MessageSummary:
    return MessageSummary(
        message_id=message.message_id,
        direction=message.direction,
        channel=message.channel,
        text=message.text,
        at=message.at,
        author=message.author,
    )


PRIORITY_RANK = {"urgent": 0, "high": 1, "normal": 2, "low": 3}


def search_terms(ticket: Ticket, limit: int = 2000) -> list[str]:
    """The words a text search finds the ticket by: subject, messages, customer name."""
    texts = [ticket.subject or "", ticket.customer.name or "", *(m.text for m in ticket.messages)]
    words = dict.fromkeys(w for text in texts for w in re.findall(r"\w{2,}", text.lower()))
    return list(words)[:limit]


def query_terms(q: str) -> list[str]:
    return list(dict.fromkeys(re.findall(r"\w{2,}", q.lower())))[:20]


def ticket_id_for(seed: str, placed: Callable[[str], bool] | None = None) -> str:
    """Deterministic, so filing the same first message twice names the same ticket. `placed`: the
    id must satisfy it (the service asks for ids that Kafka's partitioner puts on the partition of
    the conversation, so everything about the ticket is handled where the conversation is)."""
    for n in itertools.count():
        candidate = "TK-" + stable_id("ticket", seed, *([str(n)] if n else []), size=12).upper()
        if placed is None or placed(candidate):
            return candidate
    raise AssertionError("unreachable")


def customer_id_for(identity_key: str) -> str:
    return "CU-" + stable_id("customer", identity_key, size=12).upper()
