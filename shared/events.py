"""The CloudEvents 1.0 envelope and every event and command payload deskstream sends.

Commands are named as imperatives (`AssignTicket`), events in the past tense
(`TicketAssigned`). Every record on every topic is a structured-mode CloudEvent whose
`data` is one of the payloads below; `EVENT_TYPES` maps each `type` to its payload.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

SPECVERSION: Final = "1.0"


def utcnow() -> datetime:
    """Now, in UTC, to the millisecond: what MongoDB (BSON dates) keeps, so a time in an event
    and the same time read back from the database are equal."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def stable_id(*parts: str, size: int = 20) -> str:
    """A deterministic id from its parts: the same input always gives the same id."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return digest[:size]


def inbound_message_id(channel: str, *external: str) -> str:
    """The id of an inbound message: from the channel's own id for it, so a redelivered webhook is
    the same message (and a mail's Message-ID leads to the message it names)."""
    return "msg_" + stable_id(channel, *external, size=24)


class CloudEvent(BaseModel):
    """CloudEvents 1.0, structured JSON mode. `data` stays a plain dict here so a
    consumer can skip types it does not know; `payload()` parses the known ones."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = SPECVERSION
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    subject: str | None = None
    time: datetime
    datacontenttype: str = "application/json"
    data: dict[str, Any] = Field(default_factory=dict)

    def payload(self) -> BaseModel | None:
        model = EVENT_TYPES.get(self.type)
        return model.model_validate(self.data) if model else None


def make_event(
    type_: str,
    data: BaseModel,
    *,
    source: str,
    subject: str | None,
    id_: str | None = None,
    time: datetime | None = None,
) -> CloudEvent:
    return CloudEvent(
        id=id_ or uuid.uuid4().hex,
        source=source,
        type=type_,
        subject=subject,
        time=time or utcnow(),
        data=data.model_dump(mode="json"),
    )


# ---------------------------------------------------------------- vocabulary


class Channel(StrEnum):
    email = "email"
    chat = "chat"
    sms = "sms"
    whatsapp = "whatsapp"
    social = "social"
    voice = "voice"
    webform = "webform"


class Direction(StrEnum):
    inbound = "inbound"
    outbound = "outbound"


class Identity(BaseModel):
    """One way to reach a customer: `email:ana@example.com`, `chat:<visitor id>`, `phone:+9665...`.
    `verified`: a provider proved the message came from it (a signature-checked Twilio or WhatsApp
    webhook, a mail whose sender passed DKIM or SPF at a trusted relay); chat and web-form claims and
    unsigned webhooks are not. Only verified identities attach to or merge customers."""

    kind: str
    value: str
    verified: bool = False

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.value}"


class CustomerRef(BaseModel):
    name: str | None = None
    identities: list[Identity] = Field(min_length=1)


# ---------------------------------------------------------------- ingest → tickets


class DeliveryReported(BaseModel):
    """A provider says what became of a message we sent (Twilio status callback, WhatsApp
    `statuses`), keyed by the provider's id for it."""

    channel: Channel
    provider_id: str = Field(min_length=1, max_length=300)
    state: Literal["sent", "delivered", "failed"]
    provider_status: str = Field(max_length=50, description="the provider's own word: delivered, read, undelivered…")
    error: str | None = Field(None, max_length=500)
    at: datetime


class Attachment(BaseModel):
    """A file that came with a message. Its bytes are kept by ingest (`content_ref`) or,
    for providers that host media, referenced by the provider's URL."""

    filename: str | None = None
    media_type: str
    size: int | None = None
    sha256: str | None = None
    content_ref: str | None = None
    inline: bool = False
    content_id: str | None = Field(
        None,
        max_length=998,
        description="an inline part's Content-ID (no angle brackets): what `cid:` links in the message's HTML point at",
    )


class MessageReceived(BaseModel):
    """A channel message, normalised by ingest (topic `ingest.messages`)."""

    message_id: str
    channel: Channel
    external_id: str
    # messages sharing a thread key belong to one conversation: a chat session, a mail
    # thread, a phone number on SMS; tickets decides how long a conversation stays open
    thread_key: str
    customer: CustomerRef
    subject: str | None = None
    text: str  # what agents read: plain text, quoted history and signatures left out
    html: str | None = None  # sanitised
    attachments: list[Attachment] = Field(default_factory=list)
    # ISO 639-1; None when the text gives too little to tell (undetermined, `und`)
    language: str | None = None
    language_confidence: float | None = Field(
        None, ge=0, le=1, description="how sure ingest's language guess is (0 to 1); absent on older records"
    )
    # threading hints: the ids this message answers (mail Message-IDs, a social post id)
    in_reply_to: str | None = None
    references: list[str] = Field(default_factory=list)
    ticket_ref: str | None = None  # a ticket reference the customer quoted, e.g. from a subject
    recipient: str | None = None  # the address or number the customer wrote to
    raw_ref: str | None = None  # where ingest keeps the original, byte for byte
    mailbox_id: str | None = Field(
        None, description="the IMAP mailbox (PUT /v1/mailboxes/{mailbox_id} on ingest) a mail was fetched from"
    )
    sent_at: datetime
    received_at: datetime

    @model_validator(mode="before")
    @classmethod
    def _confidence_from_the_guess(cls, data: Any) -> Any:
        """Ingest's language guess is a str carrying its `confidence`: taken from there, every
        channel that sets `language=detect_language(text)` reports it without a second guess."""
        if isinstance(data, dict) and data.get("language_confidence") is None:
            confidence = getattr(data.get("language"), "confidence", None)
            if confidence is not None:
                data = {**data, "language_confidence": confidence}
        return data


# ---------------------------------------------------------------- tickets → everyone


class TicketSnapshot(BaseModel):
    """The facts of a ticket every consumer needs, carried on each ticket event."""

    id: str
    status: str
    priority: str
    channel: Channel
    customer_id: str
    assignee: str | None = None
    tags: list[str] = Field(default_factory=list)
    language: str | None = None
    created_at: datetime
    version: int
    team: str | None = Field(None, description="the team the ticket belongs to (set by rules or by assignment)")
    substatus: str | None = Field(
        None,
        description="an admin-defined status shown to agents; `status` is its "
        "base category, which SLA and analytics use",
    )
    customer_tier: str | None = Field(None, description="the customer's service tier (e.g. vip), for SLA and routing")


class MessageSummary(BaseModel):
    message_id: str
    direction: Direction
    channel: Channel
    text: str
    at: datetime
    author: str | None = None


class TicketCreated(BaseModel):
    ticket: TicketSnapshot
    message: MessageSummary


class TicketMessageAdded(BaseModel):
    ticket: TicketSnapshot
    message: MessageSummary


class TicketReplied(BaseModel):
    """An agent answered the customer (an outbound message)."""

    ticket: TicketSnapshot
    message: MessageSummary
    agent_id: str


class TicketAssigned(BaseModel):
    ticket: TicketSnapshot
    agent_id: str
    previous_agent_id: str | None = None
    actor: str | None = Field(None, description="routing, or the agent or admin who assigned by hand")


class TicketStatusChanged(BaseModel):
    ticket: TicketSnapshot
    from_status: str
    to_status: str
    actor: str | None = None
    until: datetime | None = None


class TicketMerged(BaseModel):
    """Another ticket was folded into this one: its messages and timeline moved here, and the
    merged ticket is closed, pointing at this one."""

    ticket: TicketSnapshot
    merged_ticket_id: str
    moved_message_ids: list[str]
    actor: str | None = None


class TicketSplit(BaseModel):
    """A message was taken out of this ticket into a new one (which starts with `created`)."""

    ticket: TicketSnapshot
    new_ticket_id: str
    message_id: str
    actor: str | None = None


class TicketNoteAdded(BaseModel):
    """An internal note: agents see it, the customer never does."""

    ticket: TicketSnapshot
    note_id: str
    author: str
    text: str
    at: datetime


class TicketPriorityChanged(BaseModel):
    ticket: TicketSnapshot
    from_priority: str
    to_priority: str
    actor: str | None = None


class TicketTagsChanged(BaseModel):
    ticket: TicketSnapshot
    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    actor: str | None = None


class TicketUnassigned(BaseModel):
    ticket: TicketSnapshot
    agent_id: str
    actor: str | None = None


class TicketDeliveryUpdated(BaseModel):
    """What became of an outbound message on its channel: sent, failed, not sent."""

    ticket: TicketSnapshot
    message_id: str
    state: str
    detail: str | None = None
    provider_id: str | None = None
    attempts: int = 0


class TicketCsatRequested(BaseModel):
    """The ticket was resolved and its customer is asked, on their channel, whether it is solved and how
    they rate the help (1-5): `message` is that outbound message, delivered like an agent's reply."""

    ticket: TicketSnapshot
    message: MessageSummary
    survey_id: str = Field(description="one per resolution; the link's token names it")
    request_url: str = Field(description="the page the customer answers on (GET: a form, POST: the answer)")


class TicketCsatReceived(BaseModel):
    """The customer answered the confirmation request; a second answer (within 7 days) updates the first
    (`updated`). `agent_id` and `team` are who held the ticket when it was resolved."""

    ticket: TicketSnapshot
    survey_id: str
    solved: bool
    rating: int = Field(ge=1, le=5)
    comment: str | None = None
    agent_id: str | None = None
    team: str | None = None
    at: datetime
    updated: bool = False


class TicketPurged(BaseModel):
    """The ticket's data is gone; only this record of it remains. Every service drops its copy."""

    ticket_id: str
    customer_id: str
    actor: str | None = None
    at: datetime
    reason: Literal["purge", "erasure"] = Field(
        "purge",
        description="`purge`: an admin purged the deleted or spam ticket; `erasure`: its customer's "
        "data was erased (any status), see `deskstream.customer.erased`",
    )


# ---------------------------------------------------------------- commands


class TicketCommand(BaseModel):
    command_id: str = Field(description="deterministic: the same request sent again is the same command")
    ticket_id: str
    request_id: str | None = Field(None, description="where the outcome goes back to (the asking API instance)")


class AssignTicket(TicketCommand):
    """Put an agent on a ticket (topic `tickets.commands`): routing's choice, or an agent's or admin's."""

    agent_id: str
    reason: str | None = Field(None, description="why this agent: matched skills, load at the time")
    team: str | None = Field(None, description="the agent's team, recorded on the ticket")
    actor: str = Field("routing", description="who assigned: routing, or the agent or admin who did it by hand")


class ApplyAutomation(TicketCommand):
    """Routing's automation rules fired for a ticket: tickets applies their effects."""

    rules: list[str]
    priority: str | None = None
    add_tags: list[str] = Field(default_factory=list)
    mark_spam: bool = False
    team: str | None = Field(None, description="the team the ticket now belongs to")
    reply: str | None = Field(None, description="an automatic answer sent to the customer (a knowledge-base article)")
    reply_source: str | None = Field(None, description="where the answer came from, e.g. `kb:returns-policy`")


# Agents' and admins' changes, and messages filed on behalf of another partition: the tickets
# service's HTTP API sends each as a command to the ticket's partition on `tickets.commands`, so
# the process owning the ticket applies it in order with everything else that happens to it, and
# answers on `tickets.outcomes` (`request_id`).


class ReplyToTicket(TicketCommand):
    message_id: str
    agent_id: str
    text: str
    html: str | None = None
    attachments: list[Attachment] = Field(default_factory=list)


class ChangeTicketStatus(TicketCommand):
    status: str = Field(description="a built-in status")
    substatus: str | None = Field(None, description="the admin-defined status within `status`, if one was asked for")
    until: datetime | None = None
    actor: str


class AddTicketNote(TicketCommand):
    note_id: str
    author: str
    text: str


class SetTicketPriority(TicketCommand):
    priority: str
    actor: str


class ChangeTicketTags(TicketCommand):
    add: list[str] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)
    actor: str


class UnassignTicket(TicketCommand):
    actor: str


class MergeTicket(TicketCommand):
    """Fold another ticket into this one (sent to the survivor)."""

    other_id: str
    other_tags: list[str] = Field(default_factory=list)
    other_merged_from: list[str] = Field(default_factory=list)
    other_inbound: int = 0
    moved_message_ids: list[str] = Field(default_factory=list)
    actor: str


class CloseMergedTicket(TicketCommand):
    """The ticket was folded into `survivor_id` (sent to the merged ticket)."""

    survivor_id: str
    actor: str


class SplitTicket(TicketCommand):
    """Move a customer message into a new ticket of its own (sent to the ticket it is on)."""

    message: dict[str, Any] = Field(description="the message as the ticket shows it")
    actor: str


class PurgeTicket(TicketCommand):
    actor: str


class EraseTicket(TicketCommand):
    """Remove the ticket whatever its status, because its customer's data is being erased (sent for
    each ticket of the customer by the erasure, services/tickets/erasure.py)."""

    actor: str


class RecordDelivery(TicketCommand):
    """What became of an outbound message (from the tickets service's delivery, or a provider's report,
    which names the message by the provider's id for it)."""

    message_id: str | None = None
    state: str
    detail: str | None = None
    provider_id: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None


class RecordCsatAnswer(TicketCommand):
    """A customer's answer to a confirmation request (POST of the link's form), for the process owning
    the ticket: solved closes the ticket, not solved reopens it."""

    survey_id: str
    solved: bool
    rating: int = Field(ge=1, le=5)
    comment: str | None = Field(None, max_length=2000)


class RefreshLists(TicketCommand):
    """Write every ticket change of a partition to the lists now (sent to each partition before a list
    is read, so a list shows every change acknowledged before it was asked for)."""


class FileMessage(TicketCommand):
    """A customer message for a ticket another partition owns (a quoted ticket reference, a reply to
    a mail of that ticket): filed there."""

    message: MessageReceived


class SuspectDuplicate(TicketCommand):
    """The ticket very likely repeats another request of the same customer (sent by analytics' duplicate
    suspicion, services/analytics/duplicates.py, to the new ticket): mark it, do not merge it."""

    duplicate_of: str = Field(description="the earlier ticket of the same customer it repeats")
    score: float = Field(ge=0, le=1, description="how sure the suspicion is (0 to 1)")
    signals: list[str] = Field(default_factory=list, description="what matched: order, product, fault, wording")


class CommandOutcome(BaseModel):
    """How a command with a `request_id` ended (topic `tickets.outcomes`)."""

    request_id: str
    ticket_id: str
    status: int = Field(description="as HTTP would say it: 200, 201, 404, 409, 422")
    code: str | None = None
    message: str | None = None
    result: dict[str, Any] = Field(default_factory=dict)


# ---------------------------------------------------------------- routing's dispatcher
# Routing's view of who carries which ticket is one piece of state: an agent's capacity is shared by
# all tickets. Every change of it is a record on `routing.dispatch` (one partition), applied in order
# by the one process that owns that partition.


class RouteTicket(BaseModel):
    """Find an agent for the ticket (or queue it); a ticket with an assignee goes back to them."""

    request_id: str
    ticket: TicketSnapshot
    needs: dict[str, Any] = Field(description="channel, language, skills (name or name:level), team")


class ReleaseTicket(BaseModel):
    """The ticket no longer occupies its agent (resolved, closed, spam, deleted, unassigned)."""

    request_id: str
    ticket_id: str
    reroute: bool = Field(False, description="find it another agent (it was taken off its agent)")
    forget_customer: str | None = Field(
        None, description="the ticket's customer was erased: forget which agent last served them"
    )


class KeepTicketWithAgent(BaseModel):
    """Someone put the ticket on this agent by hand: it counts against them, even past capacity."""

    request_id: str
    ticket: TicketSnapshot
    agent_id: str


class TicketChangedForRouting(BaseModel):
    """Priority or tags changed: a waiting ticket takes its new place, escalations see the change."""

    request_id: str
    ticket: TicketSnapshot


class EscalateTicket(BaseModel):
    """An SLA warning or breach, for the escalations admins configured."""

    request_id: str
    kind: str = Field(description="warning or breached")
    sla: SlaTargetEvent


class AgentUpdated(BaseModel):
    """An agent's profile or presence changed (the document is in `routing_agents`)."""

    request_id: str
    agent_id: str


class PublishRoutingView(BaseModel):
    """Write who carries what and what waits, now (an API read asks for it, so it sees its own changes)."""

    request_id: str


class SettingsChanged(BaseModel):
    """An admin changed settings a service keeps cached (rules, escalations, SLA policies...): every
    process of that service reads them again now rather than when its cache expires."""

    service: str
    what: str = Field(description="the kind of settings, e.g. `rules`, `escalations`, `policies`")


# ---------------------------------------------------------------- customers


class CustomerChanged(BaseModel):
    """A customer's identities, tier or merge changed (on `tickets.events`, key = customer id):
    every tickets process keeps who is who in memory and follows these."""

    customer_id: str
    identities: list[str] = Field(default_factory=list, description="identity keys now leading to this customer")
    tier: str | None = None
    tier_set: bool = Field(False, description="the tier was set (to `tier`, which may be null)")
    merged_into: str | None = None
    at: datetime


class CustomerErased(BaseModel):
    """Everything held about a customer is being erased (GDPR article 17), on `tickets.events`
    (key = customer id): every service removes or anonymises its copies of these tickets, identities
    and files. The event itself names identities; it ages out of Kafka with the topic's retention."""

    customer_id: str
    merged_ids: list[str] = Field(default_factory=list, description="profiles that had been merged into it")
    identities: list[str] = Field(default_factory=list, description="identity keys the customer had")
    ticket_ids: list[str] = Field(default_factory=list)
    blob_refs: list[str] = Field(default_factory=list, description="`blob:<sha256>` of their files and raw mail")
    actor: str = "admin"
    at: datetime


class EraseBlobs(BaseModel):
    """Delete these kept files (attachments, original mails) wherever they are kept: no ticket left
    refers to them after a purge or a customer's erasure (topic `privacy.erasures`)."""

    request_id: str
    blob_refs: list[str] = Field(description="`blob:<sha256>` of each file")
    reason: Literal["purge", "erasure"]
    at: datetime


# ---------------------------------------------------------------- sla


class SlaTarget(StrEnum):
    first_response = "first_response"
    next_response = "next_response"
    resolution = "resolution"


class SlaTargetEvent(BaseModel):
    ticket_id: str
    target: SlaTarget
    policy_id: str
    cycle: str = Field("", description="next_response only: the customer message that started the wait")
    due_at: datetime | None = Field(None, description="when the target was due (None if met while paused)")
    at: datetime = Field(description="when it happened: the warning, the breach or the answer")


# ---------------------------------------------------------------- webhooks


class WebhookDisabled(BaseModel):
    """A webhook subscription took no delivery for the whole retry period (24 h) and was switched off,
    on `tickets.events` (key = webhook id): admins and the other subscribers hear of it; an admin's
    `PUT /v1/webhooks/{webhook_id}` switches it on again."""

    webhook_id: str
    url: str
    reason: str
    at: datetime


# ---------------------------------------------------------------- duplicates and problems


class DuplicateOf(BaseModel):
    ticket_id: str
    score: float = Field(ge=0, le=1)


class TicketDuplicateSuspected(BaseModel):
    """The ticket very likely repeats an earlier open or recently resolved ticket of the same customer
    (`duplicate_of`), perhaps written on another channel or in another language."""

    ticket: TicketSnapshot
    duplicate_of: DuplicateOf
    signals: list[str] = Field(default_factory=list, description="what matched: order, product, fault, wording")
    at: datetime


class ProblemDetected(BaseModel):
    """Tickets of different customers describe one problem (the same product and kind of fault) and
    their number passed the detection threshold, on `tickets.events` (key and `subject` = problem id):
    sent once per problem, for the product team (a webhook subscribed to `deskstream.problem.*`)."""

    problem_id: str
    label: str
    product: str = Field(description="the product code (SKU) or the product the messages name")
    fault: str = Field(description="the kind of fault, e.g. not_working, leaking, late_delivery")
    tickets: int
    customers: int
    ticket_ids: list[str] = Field(description="a sample of its tickets")
    skus: list[str] = Field(default_factory=list)
    order_ids: list[str] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)
    first_seen: datetime
    last_seen: datetime
    at: datetime


# ---------------------------------------------------------------- dead letters


class DeadLetter(BaseModel):
    """A record that could not be processed, kept whole with where it came from and why."""

    service: str
    reason: str
    source_topic: str
    source_partition: int | None = None
    source_offset: int | None = None
    source_key: str | None = None
    original_base64: str
    original_text: str | None = None
    at: datetime


# ---------------------------------------------------------------- the type registry


class EventType:
    MESSAGE_RECEIVED = "deskstream.message.received"
    DELIVERY_REPORTED = "deskstream.message.delivery_reported"
    TICKET_CREATED = "deskstream.ticket.created"
    TICKET_MESSAGE_ADDED = "deskstream.ticket.message_added"
    TICKET_REPLIED = "deskstream.ticket.replied"
    TICKET_ASSIGNED = "deskstream.ticket.assigned"
    TICKET_STATUS_CHANGED = "deskstream.ticket.status_changed"
    TICKET_REOPENED = "deskstream.ticket.reopened"
    TICKET_DELETED = "deskstream.ticket.deleted"
    TICKET_RESTORED = "deskstream.ticket.restored"
    TICKET_NOTE_ADDED = "deskstream.ticket.note_added"
    TICKET_PRIORITY_CHANGED = "deskstream.ticket.priority_changed"
    TICKET_TAGS_CHANGED = "deskstream.ticket.tags_changed"
    TICKET_UNASSIGNED = "deskstream.ticket.unassigned"
    TICKET_PURGED = "deskstream.ticket.purged"
    TICKET_DELIVERY_UPDATED = "deskstream.ticket.delivery_updated"
    TICKET_MERGED = "deskstream.ticket.merged"
    TICKET_SPLIT = "deskstream.ticket.split"
    TICKET_CSAT_REQUESTED = "deskstream.ticket.csat_requested"
    TICKET_CSAT_RECEIVED = "deskstream.ticket.csat_received"
    CUSTOMER_CHANGED = "deskstream.customer.changed"
    CUSTOMER_ERASED = "deskstream.customer.erased"
    ROUTE_TICKET = "deskstream.routing.route_ticket"
    RELEASE_TICKET = "deskstream.routing.release_ticket"
    KEEP_TICKET_WITH_AGENT = "deskstream.routing.keep_ticket_with_agent"
    TICKET_CHANGED_FOR_ROUTING = "deskstream.routing.ticket_changed"
    ESCALATE_TICKET = "deskstream.routing.escalate_ticket"
    AGENT_UPDATED = "deskstream.routing.agent_updated"
    PUBLISH_ROUTING_VIEW = "deskstream.routing.publish_view"
    ASSIGN_TICKET = "deskstream.command.assign_ticket"
    APPLY_AUTOMATION = "deskstream.command.apply_automation"
    REPLY_TO_TICKET = "deskstream.command.reply_to_ticket"
    CHANGE_TICKET_STATUS = "deskstream.command.change_ticket_status"
    ADD_TICKET_NOTE = "deskstream.command.add_ticket_note"
    SET_TICKET_PRIORITY = "deskstream.command.set_ticket_priority"
    CHANGE_TICKET_TAGS = "deskstream.command.change_ticket_tags"
    UNASSIGN_TICKET = "deskstream.command.unassign_ticket"
    MERGE_TICKET = "deskstream.command.merge_ticket"
    CLOSE_MERGED_TICKET = "deskstream.command.close_merged_ticket"
    SPLIT_TICKET = "deskstream.command.split_ticket"
    PURGE_TICKET = "deskstream.command.purge_ticket"
    ERASE_TICKET = "deskstream.command.erase_ticket"
    ERASE_BLOBS = "deskstream.privacy.erase_blobs"
    RECORD_DELIVERY = "deskstream.command.record_delivery"
    FILE_MESSAGE = "deskstream.command.file_message"
    SUSPECT_DUPLICATE = "deskstream.command.suspect_duplicate"
    TICKET_DUPLICATE_SUSPECTED = "deskstream.ticket.duplicate_suspected"
    PROBLEM_DETECTED = "deskstream.problem.detected"
    RECORD_CSAT_ANSWER = "deskstream.command.record_csat_answer"
    REFRESH_LISTS = "deskstream.command.refresh_lists"
    COMMAND_OUTCOME = "deskstream.command.outcome"
    SLA_WARNING = "deskstream.sla.warning"
    SLA_BREACHED = "deskstream.sla.breached"
    SLA_MET = "deskstream.sla.met"
    DEAD_LETTER = "deskstream.deadletter"
    SETTINGS_CHANGED = "deskstream.settings.changed"
    # a setting the system changed itself (the prefixes other systems rely on stay as they are)
    WEBHOOK_DISABLED = "deskstream.settings.webhook_disabled"


EVENT_TYPES: dict[str, type[BaseModel]] = {
    EventType.MESSAGE_RECEIVED: MessageReceived,
    EventType.DELIVERY_REPORTED: DeliveryReported,
    EventType.TICKET_CREATED: TicketCreated,
    EventType.TICKET_MESSAGE_ADDED: TicketMessageAdded,
    EventType.TICKET_REPLIED: TicketReplied,
    EventType.TICKET_ASSIGNED: TicketAssigned,
    EventType.TICKET_STATUS_CHANGED: TicketStatusChanged,
    EventType.TICKET_REOPENED: TicketStatusChanged,
    EventType.TICKET_DELETED: TicketStatusChanged,
    EventType.TICKET_RESTORED: TicketStatusChanged,
    EventType.TICKET_NOTE_ADDED: TicketNoteAdded,
    EventType.TICKET_PRIORITY_CHANGED: TicketPriorityChanged,
    EventType.TICKET_TAGS_CHANGED: TicketTagsChanged,
    EventType.TICKET_UNASSIGNED: TicketUnassigned,
    EventType.TICKET_PURGED: TicketPurged,
    EventType.TICKET_DELIVERY_UPDATED: TicketDeliveryUpdated,
    EventType.TICKET_MERGED: TicketMerged,
    EventType.TICKET_SPLIT: TicketSplit,
    EventType.TICKET_CSAT_REQUESTED: TicketCsatRequested,
    EventType.TICKET_CSAT_RECEIVED: TicketCsatReceived,
    EventType.CUSTOMER_CHANGED: CustomerChanged,
    EventType.CUSTOMER_ERASED: CustomerErased,
    EventType.ROUTE_TICKET: RouteTicket,
    EventType.RELEASE_TICKET: ReleaseTicket,
    EventType.KEEP_TICKET_WITH_AGENT: KeepTicketWithAgent,
    EventType.TICKET_CHANGED_FOR_ROUTING: TicketChangedForRouting,
    EventType.ESCALATE_TICKET: EscalateTicket,
    EventType.AGENT_UPDATED: AgentUpdated,
    EventType.PUBLISH_ROUTING_VIEW: PublishRoutingView,
    EventType.ASSIGN_TICKET: AssignTicket,
    EventType.APPLY_AUTOMATION: ApplyAutomation,
    EventType.REPLY_TO_TICKET: ReplyToTicket,
    EventType.CHANGE_TICKET_STATUS: ChangeTicketStatus,
    EventType.ADD_TICKET_NOTE: AddTicketNote,
    EventType.SET_TICKET_PRIORITY: SetTicketPriority,
    EventType.CHANGE_TICKET_TAGS: ChangeTicketTags,
    EventType.UNASSIGN_TICKET: UnassignTicket,
    EventType.MERGE_TICKET: MergeTicket,
    EventType.CLOSE_MERGED_TICKET: CloseMergedTicket,
    EventType.SPLIT_TICKET: SplitTicket,
    EventType.PURGE_TICKET: PurgeTicket,
    EventType.ERASE_TICKET: EraseTicket,
    EventType.ERASE_BLOBS: EraseBlobs,
    EventType.RECORD_DELIVERY: RecordDelivery,
    EventType.FILE_MESSAGE: FileMessage,
    EventType.SUSPECT_DUPLICATE: SuspectDuplicate,
    EventType.TICKET_DUPLICATE_SUSPECTED: TicketDuplicateSuspected,
    EventType.PROBLEM_DETECTED: ProblemDetected,
    EventType.RECORD_CSAT_ANSWER: RecordCsatAnswer,
    EventType.REFRESH_LISTS: RefreshLists,
    EventType.COMMAND_OUTCOME: CommandOutcome,
    EventType.SLA_WARNING: SlaTargetEvent,
    EventType.SLA_BREACHED: SlaTargetEvent,
    EventType.SLA_MET: SlaTargetEvent,
    EventType.DEAD_LETTER: DeadLetter,
    EventType.SETTINGS_CHANGED: SettingsChanged,
    EventType.WEBHOOK_DISABLED: WebhookDisabled,
}


# ---------------------------------------------------------------- records per topic (for the AsyncAPI document)


def _record(name: str, doc: str, types: tuple[str, ...]) -> type[CloudEvent]:
    models = tuple(dict.fromkeys(EVENT_TYPES[t] for t in types))
    data_type = models[0] if len(models) == 1 else Union[models]  # noqa: UP007
    # the Literal and the Union are built at run time from `types`: no static type form can say so
    return create_model(name, __base__=CloudEvent, __doc__=doc, type=(Literal[types], ...), data=(data_type, ...))  # type: ignore[arg-type]


MessageReceivedRecord = _record(
    "MessageReceivedRecord",
    "A normalised inbound channel message, or a provider's delivery report for a "
    "message we sent, on `ingest.messages`.",
    (EventType.MESSAGE_RECEIVED, EventType.DELIVERY_REPORTED),
)
TicketEventRecord = _record(
    "TicketEventRecord",
    "A ticket change on `tickets.events`; `subject` is the ticket id (for `deskstream.customer.*`, the customer id).",
    tuple(t for t in EVENT_TYPES if t.startswith(("deskstream.ticket.", "deskstream.customer."))),
)
TicketCommandRecord = _record(
    "TicketCommandRecord",
    "A command for the tickets service on `tickets.commands`; key = ticket id.",
    tuple(t for t in EVENT_TYPES if t.startswith("deskstream.command.") and t != EventType.COMMAND_OUTCOME),
)
RoutingDispatchRecord = _record(
    "RoutingDispatchRecord",
    "A change of who carries which ticket, for routing's dispatcher on `routing.dispatch`.",
    tuple(t for t in EVENT_TYPES if t.startswith("deskstream.routing.")),
)
CommandOutcomeRecord = _record(
    "CommandOutcomeRecord",
    "How a command sent by a tickets API instance ended, on `tickets.outcomes`.",
    (EventType.COMMAND_OUTCOME,),
)
SlaEventRecord = _record(
    "SlaEventRecord",
    "An SLA warning, breach or met target on `sla.events`; `subject` is the ticket id.",
    (EventType.SLA_WARNING, EventType.SLA_BREACHED, EventType.SLA_MET),
)
SettingsChangedRecord = _record(
    "SettingsChangedRecord",
    "Settings an admin changed, on `settings.changes`: every process of the service re-reads them.",
    (EventType.SETTINGS_CHANGED,),
)
PrivacyErasureRecord = _record(
    "PrivacyErasureRecord",
    "Files no ticket refers to any more, to delete wherever they are kept, on `privacy.erasures`.",
    (EventType.ERASE_BLOBS,),
)
WebhookDisabledRecord = _record(
    "WebhookDisabledRecord",
    "A webhook subscription switched off after failing for the whole retry period, on "
    "`tickets.events`; key and `subject` are the webhook id.",
    (EventType.WEBHOOK_DISABLED,),
)
ProblemDetectedRecord = _record(
    "ProblemDetectedRecord",
    "A recurring problem (tickets of different customers about one product and fault) passed the detection "
    "threshold, on `tickets.events`; key and `subject` are the problem id.",
    (EventType.PROBLEM_DETECTED,),
)
DeadLetterRecord = _record(
    "DeadLetterRecord", "A record that could not be processed, on `deadletter`.", (EventType.DEAD_LETTER,)
)
