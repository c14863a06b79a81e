"""The agent and admin HTTP API of the tickets service.

Reads come from the database (services/tickets/views.py); every change is a command to the
process owning the ticket (services/tickets/commands.py), answered once it is journaled."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import nh3
from fastapi import APIRouter, Depends, Header, Query
from pydantic import BaseModel, Field, StringConstraints, ValidationError

from services.tickets.commands import CommandBus, Pending, Unavailable
from services.tickets.customers import CustomerBook, canonical
from services.tickets.delivery.store import DeliveryStore
from services.tickets.domain import (
    CustomStatus,
    LifecycleError,
    Priority,
    Status,
    Ticket,
    customer_id_for,
    query_terms,
)
from services.tickets.store import SORTS, Purged, TicketStore
from services.tickets.views import load_ticket, ticket_json
from shared.bodylimit import body_limit
from shared.credentials import Principal
from shared.events import (
    AddTicketNote,
    AssignTicket,
    Attachment,
    ChangeTicketStatus,
    ChangeTicketTags,
    Channel,
    CloseMergedTicket,
    CommandOutcome,
    CustomerChanged,
    EventType,
    MergeTicket,
    PurgeTicket,
    ReplyToTicket,
    SetTicketPriority,
    SplitTicket,
    TicketCommand,
    UnassignTicket,
    stable_id,
    utcnow,
)
from shared.http import ApiError, Auth, acting, principal

Who = Annotated[Principal, Depends(principal)]

MAX_REPLY_FILES_BYTES = 10 * 1024 * 1024
# a reply's JSON: its files in base64 (4 bytes for every 3), and room for its text and HTML
REPLY_MAX_BODY_BYTES = (MAX_REPLY_FILES_BYTES // 3 + 1) * 4 + 4 * 1024 * 1024


class ReplyFile(BaseModel):
    filename: str = Field(min_length=1, max_length=255)
    media_type: str = Field("application/octet-stream", max_length=127, pattern=r"^[\w.+-]+/[\w.+-]+$")
    content_base64: str = Field(min_length=1, max_length=(MAX_REPLY_FILES_BYTES // 3 + 1) * 4)


class ReplyRequest(BaseModel):
    agent_id: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=100_000, description="the plain-text body (every channel)")
    html: str | None = Field(
        None, max_length=500_000, description="an HTML body for mail (sanitised; the text stays the alternative)"
    )
    attachments: list[ReplyFile] = Field(
        default_factory=list, max_length=10, description="files sent with a mail reply, 10 MB in all"
    )


class NoteRequest(BaseModel):
    author: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=100_000)


class PriorityRequest(BaseModel):
    priority: Priority
    actor: str | None = Field(None, max_length=200)


TagName = Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]


class TagsRequest(BaseModel):
    add: list[TagName] = Field(default_factory=list, max_length=100)
    remove: list[TagName] = Field(default_factory=list, max_length=100)
    actor: str | None = Field(None, max_length=200)


class AssigneeRequest(BaseModel):
    agent_id: str = Field(min_length=1, max_length=200)
    actor: str | None = Field(None, max_length=200)


class TierRequest(BaseModel):
    tier: str | None = Field(
        None, max_length=50, pattern=r"^[\w-]+$", description="the customer's service tier (e.g. vip); null clears it"
    )


class IdentityRequest(BaseModel):
    identity: str = Field(
        min_length=3,
        max_length=320,
        pattern=r"^[a-z_]+:\S+$",
        description="kind:value, e.g. email:ana@example.com or phone:+966501234567",
    )


class SplitCustomerRequest(BaseModel):
    identities: list[Annotated[str, StringConstraints(min_length=3, max_length=320)]] = Field(
        min_length=1, max_length=50
    )


class MergeRequest(BaseModel):
    customer_id: str = Field(min_length=1, max_length=200, description="the customer folded into this one")


StatusName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{1,39}$")]


class StatusRequest(BaseModel):
    status: StatusName = Field(description="a built-in status or one an admin defined")
    until: datetime | None = None
    actor: str | None = Field(None, max_length=200)


class StatusDefinition(BaseModel):
    category: Status = Field(description="the built-in status it counts as for SLA and analytics")
    label: str = Field(min_length=1, max_length=100)


class MergeTicketRequest(BaseModel):
    ticket_id: str = Field(min_length=1, max_length=200, description="the ticket folded into this one")
    actor: str | None = Field(None, max_length=200)


class SplitRequest(BaseModel):
    message_id: str = Field(min_length=1, max_length=200, description="the customer message that starts a new ticket")
    actor: str | None = Field(None, max_length=200)


class BulkRequest(BaseModel):
    ticket_ids: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=500
    )
    status: StatusName | None = None
    priority: Priority | None = None
    add_tags: list[TagName] = Field(default_factory=list, max_length=100)
    remove_tags: list[TagName] = Field(default_factory=list, max_length=100)
    assignee: str | None = Field(None, min_length=1, max_length=200)
    actor: str | None = Field(None, max_length=200)


def ticket_view(doc: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in doc.items() if k != "_id"}
    view["id"] = doc["_id"]
    return view


async def stored_files(files: list[ReplyFile], deliveries: DeliveryStore) -> list[Attachment]:
    decoded = []
    for f in files:
        try:
            decoded.append((f, base64.b64decode(f.content_base64, validate=True)))
        except (binascii.Error, ValueError) as exc:
            raise ApiError(400, "invalid_attachment", f"{f.filename}: content_base64 is not base64") from exc
    if sum(len(data) for _, data in decoded) > MAX_REPLY_FILES_BYTES:
        raise ApiError(413, "attachments_too_large", "a reply's files may be 10 MB in all")
    now = utcnow()
    return [
        Attachment(
            filename=f.filename,
            media_type=f.media_type,
            size=len(data),
            sha256=(sha := await deliveries.put_blob(data, f.media_type, f.filename, now)),
            content_ref=f"blob:{sha}",
        )
        for f, data in decoded
    ]


def profile_name(tickets: list[dict[str, Any]]) -> str | None:
    """The name a profile shows: the newest one a verified message gave, else the first one given —
    so a claim (a chat, a web form) never renames a customer."""
    named = sorted(
        (t for t in tickets if (t.get("customer") or {}).get("name")), key=lambda t: str(t.get("created_at"))
    )
    proven = [t for t in named if t["customer"].get("verified")]
    chosen = proven[-1] if proven else (named[0] if named else None)
    return chosen["customer"]["name"] if chosen else None


def request_key(*parts: str | None) -> str:
    """A command id: from the client's Idempotency-Key when it sent one (a retry is the same command)."""
    return stable_id(*(p or uuid.uuid4().hex for p in parts), size=24)


def outcome_of(outcome: CommandOutcome) -> dict[str, Any]:
    if outcome.status >= 400:
        raise ApiError(outcome.status, outcome.code or "error", outcome.message or "the change was refused")
    return outcome.result


def build_router(
    store: TicketStore,
    deliveries: DeliveryStore,
    bus: CommandBus,
    customers: CustomerBook,
    auth: Auth,
    *,
    publish_customer: Callable[[CustomerChanged], Awaitable[None]],
) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["tickets"], dependencies=[auth.agent])

    async def send(type_: str, command: TicketCommand) -> dict[str, Any]:
        try:
            return outcome_of(await bus.send(type_, command))
        except Unavailable as exc:
            raise ApiError(503, "unavailable", str(exc)) from exc

    async def load(ticket_id: str) -> Ticket:
        try:
            ticket = await load_ticket(store, ticket_id)
        except Purged:
            ticket = None
        if ticket is None:
            raise ApiError(404, "not_found", f"ticket {ticket_id} does not exist")
        return ticket

    def assignee(who: Principal, agent_id: str) -> str:
        """A personal token takes tickets for its own agent only (another agent's name → 403)."""
        return acting(who, agent_id, default=agent_id)

    async def change_status(
        ticket_id: str, status: str, actor: str, until: datetime | None, key: str | None = None
    ) -> dict[str, Any]:
        if status in Status.__members__:
            base, substatus = Status(status), None
        elif custom := await store.custom_status(status):
            base, substatus = custom.category, custom.name
        else:
            raise ApiError(422, "unknown_status", f"{status} is neither a built-in nor a custom status")
        if base == Status.postponed and until is None:
            raise ApiError(409, "invalid_transition", "postponing needs 'until'")
        return await send(
            EventType.CHANGE_TICKET_STATUS,
            ChangeTicketStatus(
                command_id=request_key("status", ticket_id, key),
                ticket_id=ticket_id,
                status=base.value,
                substatus=substatus,
                until=until,
                actor=actor,
            ),
        )

    @router.get("/messages/{message_id}", summary="Which ticket a message was filed into")
    async def get_message(message_id: str) -> dict[str, str]:
        entry = await store.entry(message_id)
        if entry is None or not entry.get("messages"):
            raise ApiError(404, "not_found", f"message {message_id} has not been filed (yet)")
        return {"message_id": message_id, "ticket_id": entry["ticket_id"]}

    @router.get("/tickets/{ticket_id}", summary="One ticket with its messages and timeline")
    async def get_ticket(ticket_id: str) -> dict[str, Any]:
        ticket = await load(ticket_id)
        view = ticket_json(ticket)
        view["customer"]["id"] = customers.current(ticket.customer.id)
        return view

    @router.get(
        "/tickets",
        summary="Tickets with filters, text search, sorting and cursor pagination",
        description="A list shows every change acknowledged before it was asked for.",
    )
    async def list_tickets(
        status: str | None = Query(None, pattern=r"^[a-z][a-z0-9_-]{1,39}$", description="a built-in or custom status"),
        assignee: str | None = Query(None, max_length=200),
        customer: str | None = Query(None, max_length=200),
        channel: Channel | None = None,
        tag: str | None = Query(None, max_length=200),
        team: str | None = Query(None, max_length=200),
        priority: Priority | None = None,
        sla: Literal["warning", "breached", "met"] | None = Query(None, description="any SLA target in this state"),
        q: str | None = Query(None, max_length=200, description="words that must all appear (subject, messages, name)"),
        # a Literal built from SORTS at run time (for the OpenAPI enum): not a static type
        sort: Literal[tuple(SORTS)] = Query("-created_at", description="field, `-` for descending"),  # type: ignore[valid-type]
        limit: int = Query(50, ge=1, le=500),
        cursor: str | None = Query(None, max_length=500),
    ) -> dict[str, Any]:
        # every value is a plain string by validation, so no operator can be injected
        filters: dict[str, Any] = {}
        for field, value in (
            ("assignee", assignee),
            ("channel", channel),
            ("tags", tag),
            ("team", team),
            ("priority", priority),
            ("sla_states", sla),
        ):
            if value is not None:
                filters[field] = str(value)
        if status is not None:
            filters["status" if status in Status.__members__ else "substatus"] = str(status)
        if q is not None and (terms := query_terms(q)):
            filters["search"] = {"$all": terms}
        if customer is not None:
            filters["customer.id"] = {"$in": await customer_ids(customer)}
        await bus.refresh_lists()
        try:
            docs, next_cursor = await store.list_view(filters=filters, limit=limit, cursor=cursor, sort=sort)
        except ValueError as exc:
            raise ApiError(400, "invalid_cursor", str(exc)) from exc
        return {"items": [ticket_view(d) for d in docs], "next_cursor": next_cursor}

    @router.post("/tickets/{ticket_id}/replies", status_code=201, summary="An agent answers the customer")
    @body_limit(REPLY_MAX_BODY_BYTES)
    async def reply(
        ticket_id: str, body: ReplyRequest, who: Who, idempotency_key: str | None = Header(None, max_length=200)
    ) -> dict[str, Any]:
        agent_id = acting(who, body.agent_id, default=body.agent_id)
        files = await stored_files(body.attachments, deliveries)
        html = nh3.clean(body.html) if body.html else None
        message_id = "out_" + stable_id(ticket_id, idempotency_key or uuid.uuid4().hex, agent_id, size=24)
        try:
            result = outcome_of(
                await bus.send(
                    EventType.REPLY_TO_TICKET,
                    ReplyToTicket(
                        command_id=message_id,
                        ticket_id=ticket_id,
                        message_id=message_id,
                        agent_id=agent_id,
                        text=body.text,
                        html=html,
                        attachments=files,
                    ),
                )
            )
        except Pending:
            # on Kafka, so it will be applied and sent: a retry would answer the customer twice
            return {
                "ticket_id": ticket_id,
                "status": None,
                "pending": True,
                "message": {"message_id": message_id, "direction": "outbound", "author": agent_id, "text": body.text},
            }
        except Unavailable as exc:
            raise ApiError(503, "unavailable", str(exc)) from exc
        entry = await store.entry(message_id)
        message = next((m for m in (entry or {}).get("messages", ()) if m["message_id"] == message_id), None)
        return {"ticket_id": ticket_id, "status": result["status"], "message": message}

    @router.post("/tickets/{ticket_id}/status", summary="Change a ticket's status")
    async def set_status(ticket_id: str, body: StatusRequest, who: Who) -> dict[str, Any]:
        result = await change_status(ticket_id, body.status, acting(who, body.actor, default="agent"), body.until)
        return {"ticket_id": ticket_id, "status": result["status"]}

    @router.post("/tickets/{ticket_id}/merge", summary="Fold another ticket into this one")
    async def merge_ticket(ticket_id: str, body: MergeTicketRequest, who: Who) -> dict[str, Any]:
        if ticket_id == body.ticket_id:
            raise ApiError(409, "invalid_transition", "a ticket cannot be merged into itself")
        survivor, other = await load(ticket_id), await load(body.ticket_id)
        if other.merged_into and other.merged_into != survivor.id:
            raise ApiError(409, "invalid_transition", f"{other.id} was already merged into {other.merged_into}")
        actor = acting(who, body.actor, default="agent")
        key = request_key("merge", ticket_id, other.id)
        await send(
            EventType.MERGE_TICKET,
            MergeTicket(
                command_id=key,
                ticket_id=survivor.id,
                other_id=other.id,
                other_tags=other.tags,
                other_merged_from=other.merged_from,
                other_inbound=other.inbound_count,
                moved_message_ids=[m.message_id for m in other.messages],
                actor=actor,
            ),
        )
        await send(
            EventType.CLOSE_MERGED_TICKET,
            CloseMergedTicket(command_id=key + ":close", ticket_id=other.id, survivor_id=survivor.id, actor=actor),
        )
        return await get_ticket(ticket_id)

    @router.post(
        "/tickets/{ticket_id}/split", status_code=201, summary="Move a customer message into a new ticket of its own"
    )
    async def split_ticket(ticket_id: str, body: SplitRequest, who: Who) -> dict[str, Any]:
        original = await load(ticket_id)
        message = next((m for m in original.messages if m.message_id == body.message_id), None)
        if message is None:
            raise ApiError(409, "invalid_transition", f"message {body.message_id} is not on ticket {ticket_id}")
        result = await send(
            EventType.SPLIT_TICKET,
            SplitTicket(
                command_id=request_key("split", ticket_id, body.message_id),
                ticket_id=ticket_id,
                message=message.model_dump(mode="json"),
                actor=acting(who, body.actor, default="agent"),
            ),
        )
        return {"ticket_id": result["new_ticket_id"], "split_from": ticket_id, "message_id": body.message_id}

    @router.post("/tickets/bulk", summary="One change applied to many tickets (each reported on its own)")
    async def bulk(body: BulkRequest, who: Who) -> dict[str, Any]:
        actor = acting(who, body.actor, default="agent")
        target = assignee(who, body.assignee) if body.assignee else None
        results = []
        for ticket_id in dict.fromkeys(body.ticket_ids):
            try:
                if body.status:
                    await change_status(ticket_id, body.status, actor, None)
                if body.priority:
                    await send(
                        EventType.SET_TICKET_PRIORITY,
                        SetTicketPriority(
                            command_id=request_key("priority", ticket_id, None),
                            ticket_id=ticket_id,
                            priority=body.priority.value,
                            actor=actor,
                        ),
                    )
                if body.add_tags or body.remove_tags:
                    await send(
                        EventType.CHANGE_TICKET_TAGS,
                        ChangeTicketTags(
                            command_id=request_key("tags", ticket_id, None),
                            ticket_id=ticket_id,
                            add=body.add_tags,
                            remove=body.remove_tags,
                            actor=actor,
                        ),
                    )
                if target:
                    await send(
                        EventType.ASSIGN_TICKET,
                        AssignTicket(
                            command_id=request_key("assign", ticket_id, None),
                            ticket_id=ticket_id,
                            agent_id=target,
                            actor=actor,
                        ),
                    )
                results.append({"ticket_id": ticket_id, "ok": True})
            except ApiError as exc:
                results.append({"ticket_id": ticket_id, "ok": False, "error": exc.code, "message": exc.message})
        return {"results": results, "ok": sum(r["ok"] for r in results), "failed": sum(not r["ok"] for r in results)}

    @router.get("/statuses", summary="Every status: the built-in ones and those admins added")
    async def statuses() -> dict[str, Any]:
        return {
            "builtin": [s.value for s in Status],
            "custom": [c.model_dump(mode="json") for c in await store.custom_statuses()],
        }

    @router.put("/statuses/{name}", dependencies=[auth.admin], summary="Add or change a custom status")
    async def put_status(name: str, body: StatusDefinition) -> dict[str, Any]:
        try:
            custom = CustomStatus(name=name, category=body.category, label=body.label)
            custom.check()
        except ValidationError as exc:
            raise ApiError(422, "invalid_status", "status names are 2-40 lowercase letters, digits, - or _") from exc
        except LifecycleError as exc:
            raise ApiError(422, "invalid_status", str(exc)) from exc
        await store.put_status(custom)
        return custom.model_dump(mode="json")

    @router.delete("/statuses/{name}", dependencies=[auth.admin], status_code=204, summary="Remove a custom status")
    async def delete_status(name: str) -> None:
        if not await store.delete_status(name):
            raise ApiError(404, "not_found", f"there is no custom status {name}")

    @router.post("/tickets/{ticket_id}/notes", status_code=201, summary="An internal note (never sent to the customer)")
    async def add_note(
        ticket_id: str, body: NoteRequest, who: Who, idempotency_key: str | None = Header(None, max_length=200)
    ) -> dict[str, Any]:
        author = acting(who, body.author, default=body.author)
        note_id = "note_" + stable_id(ticket_id, idempotency_key or uuid.uuid4().hex, author, size=20)
        await send(
            EventType.ADD_TICKET_NOTE,
            AddTicketNote(command_id=note_id, ticket_id=ticket_id, note_id=note_id, author=author, text=body.text),
        )
        entry = await store.entry(f"{note_id}:{ticket_id}")
        note = next((n for n in (entry or {}).get("notes", ()) if n["note_id"] == note_id), None)
        return {"ticket_id": ticket_id, "note": note}

    @router.put("/tickets/{ticket_id}/priority", summary="Set the priority (low, normal, high, urgent)")
    async def set_priority(ticket_id: str, body: PriorityRequest, who: Who) -> dict[str, Any]:
        result = await send(
            EventType.SET_TICKET_PRIORITY,
            SetTicketPriority(
                command_id=request_key("priority", ticket_id, None),
                ticket_id=ticket_id,
                priority=body.priority.value,
                actor=acting(who, body.actor, default="agent"),
            ),
        )
        return {"ticket_id": ticket_id, "priority": result["priority"]}

    @router.post("/tickets/{ticket_id}/tags", summary="Add and remove tags")
    async def change_tags(ticket_id: str, body: TagsRequest, who: Who) -> dict[str, Any]:
        result = await send(
            EventType.CHANGE_TICKET_TAGS,
            ChangeTicketTags(
                command_id=request_key("tags", ticket_id, None),
                ticket_id=ticket_id,
                add=body.add,
                remove=body.remove,
                actor=acting(who, body.actor, default="agent"),
            ),
        )
        return {"ticket_id": ticket_id, "tags": result["tags"]}

    @router.put("/tickets/{ticket_id}/assignee", summary="Assign the ticket to an agent")
    async def assign(ticket_id: str, body: AssigneeRequest, who: Who) -> dict[str, Any]:
        result = await send(
            EventType.ASSIGN_TICKET,
            AssignTicket(
                command_id=request_key("assign", ticket_id, None),
                ticket_id=ticket_id,
                agent_id=assignee(who, body.agent_id),
                actor=acting(who, body.actor, default="agent"),
            ),
        )
        return {"ticket_id": ticket_id, "assignee": result["assignee"]}

    @router.delete("/tickets/{ticket_id}/assignee", summary="Take the ticket off its agent")
    async def unassign(ticket_id: str, who: Who) -> dict[str, Any]:
        result = await send(
            EventType.UNASSIGN_TICKET,
            UnassignTicket(
                command_id=request_key("unassign", ticket_id, None),
                ticket_id=ticket_id,
                actor=acting(who, None, default="agent"),
            ),
        )
        return {"ticket_id": ticket_id, "assignee": result["assignee"]}

    @router.post(
        "/tickets/{ticket_id}/purge",
        dependencies=[auth.admin],
        status_code=202,
        summary="Remove a deleted or spam ticket's data for good (a purged event remains)",
    )
    async def purge(ticket_id: str) -> dict[str, Any]:
        await send(
            EventType.PURGE_TICKET,
            PurgeTicket(command_id=request_key("purge", ticket_id, None), ticket_id=ticket_id, actor="admin"),
        )
        return {"ticket_id": ticket_id, "status": "purged"}

    # ------------------------------------------------------------ customers
    async def customer_ids(customer_id: str) -> list[str]:
        """The customer and every profile merged into it."""
        current = customers.current(customer_id)
        return [current, *(c for c in customers.merged if customers.current(c) == current and c != current)]

    async def profile(customer_id: str) -> dict[str, Any] | None:
        ids = await customer_ids(customer_id)
        current = ids[0]
        await bus.refresh_lists()
        tickets = await store.tickets_of_customers(ids)
        doc = await store.customer_doc(current)
        if not tickets and doc is None:
            return None
        identities: dict[str, None] = {}
        hints: dict[str, None] = {}
        for t in sorted(tickets, key=lambda t: str(t.get("created_at"))):
            who = t.get("customer") or {}
            identities.update(dict.fromkeys(who.get("identities") or ()))
            hints.update(dict.fromkeys(who.get("hints") or ()))
        identities.update(dict.fromkeys(k for k, c in customers.links.items() if customers.current(c) == current))
        return {
            "id": current,
            "name": (doc or {}).get("name") or profile_name(tickets),
            "tier": customers.tiers.get(current),
            "identities": list(identities),
            "merged_ids": ids[1:],
            "unconfirmed_identities": [k for k in hints if k not in identities],
            "created_at": min((t.get("created_at") for t in tickets if t.get("created_at")), default=None, key=str),
            "tickets": [
                {"id": t["_id"], **{k: t.get(k) for k in ("status", "channel", "subject", "created_at")}}
                for t in tickets
            ],
        }

    async def existing_profile(customer_id: str) -> dict[str, Any]:
        view = await profile(customer_id)
        if view is None:
            raise ApiError(404, "not_found", f"customer {customer_id} does not exist")
        return view

    @router.get("/customers/{customer_id}", summary="A customer with every identity and every ticket")
    async def get_customer(customer_id: str) -> dict[str, Any]:
        return await existing_profile(customer_id)

    @router.post(
        "/customers/{customer_id}/identities",
        summary="Confirm an identity as this customer's",
        description="An agent who checked that an address or number is the customer's (e.g. one a chat or "
        "web form only claimed) attaches it: messages from it join this profile from now on, "
        "replies may go to it, and the tickets it had on a profile of its own come along.",
    )
    async def confirm_identity(customer_id: str, body: IdentityRequest) -> dict[str, Any]:
        if await profile(customer_id) is None:
            raise ApiError(404, "not_found", f"customer {customer_id} does not exist")
        current, key = customers.current(customer_id), canonical(body.identity)
        await publish_customer(CustomerChanged(customer_id=current, identities=[key], at=utcnow()))
        own = customer_id_for(key)  # the profile the identity had of its own: its tickets come along
        if customers.current(own) != current:
            await publish_customer(CustomerChanged(customer_id=own, merged_into=current, at=utcnow()))
        return await existing_profile(current)

    @router.put(
        "/customers/{customer_id}/tier",
        dependencies=[auth.admin],
        summary="Set the customer's service tier (SLA policies and routing can match on it)",
    )
    async def set_tier(customer_id: str, body: TierRequest) -> dict[str, Any]:
        if await profile(customer_id) is None:
            raise ApiError(404, "not_found", f"customer {customer_id} does not exist")
        current = customers.current(customer_id)
        await publish_customer(CustomerChanged(customer_id=current, tier=body.tier, tier_set=True, at=utcnow()))
        return await existing_profile(current)

    @router.post(
        "/customers/{customer_id}/split",
        dependencies=[auth.admin],
        status_code=201,
        summary="Undo a link or merge: named identities go back to profiles of their own",
        description="Each named identity leads to its own profile again (`customer_id` of the identity), with "
        "the tickets that profile had before it was merged or confirmed into this one. Tickets "
        "filed on this profile meanwhile stay here (split them per ticket).",
    )
    async def split_customer(customer_id: str, body: SplitCustomerRequest) -> dict[str, Any]:
        view = await profile(customer_id)
        if view is None:
            raise ApiError(404, "not_found", f"customer {customer_id} does not exist")
        current = view["id"]
        keys = [canonical(k) for k in dict.fromkeys(body.identities)]
        if missing := [k for k in keys if k not in {canonical(i) for i in view["identities"]}]:
            raise ApiError(409, "not_this_customers", f"not identities of {current}: {', '.join(missing)}")
        if any(customer_id_for(k) == current for k in keys):
            raise ApiError(409, "own_identity", "the identity the profile is named after stays; split the others")
        made = []
        for key in keys:
            own = customer_id_for(key)
            await publish_customer(CustomerChanged(customer_id=own, identities=[key], merged_into=own, at=utcnow()))
            made.append(own)
        return {"customer": await profile(current), "split_into": list(dict.fromkeys(made))}

    @router.post(
        "/customers/{customer_id}/merge",
        dependencies=[auth.admin],
        summary="Merge another customer profile into this one",
    )
    async def merge_customer(customer_id: str, body: MergeRequest) -> dict[str, Any]:
        if body.customer_id == customer_id:
            raise ApiError(409, "same_customer", "a customer cannot be merged into itself")
        for cid in (customer_id, body.customer_id):
            if await profile(cid) is None:
                raise ApiError(404, "not_found", f"customer {cid} does not exist")
        survivor, other = customers.current(customer_id), customers.current(body.customer_id)
        if survivor != other:
            moved = [canonical(k) for k in (await profile(other) or {}).get("identities", ())]
            await publish_customer(CustomerChanged(customer_id=other, merged_into=survivor, at=utcnow()))
            await publish_customer(CustomerChanged(customer_id=survivor, identities=moved, at=utcnow()))
        return await existing_profile(survivor)

    return router
