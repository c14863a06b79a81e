"""The agent and admin HTTP API of the tickets service."""
from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Literal

import nh3
from fastapi import APIRouter, Header, Query
from pydantic import BaseModel, Field, StringConstraints, ValidationError

from services.tickets.delivery.store import DeliveryStore
from services.tickets.domain import CustomStatus, LifecycleError, Priority, Status, query_terms
from services.tickets.service import NotFound, TicketService, UnknownStatus
from services.tickets.store import SORTS, TicketStore, VersionConflict
from shared.events import Attachment, Channel, utcnow
from shared.http import ApiError


MAX_REPLY_FILES_BYTES = 10 * 1024 * 1024


class ReplyFile(BaseModel):
    filename: str = Field(min_length=1, max_length=255)
    media_type: str = Field("application/octet-stream", max_length=127, pattern=r"^[\w.+-]+/[\w.+-]+$")
    content_base64: str = Field(min_length=1, max_length=(MAX_REPLY_FILES_BYTES // 3 + 1) * 4)


class ReplyRequest(BaseModel):
    agent_id: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=100_000, description="the plain-text body (every channel)")
    html: str | None = Field(None, max_length=500_000,
                             description="an HTML body for mail (sanitised; the text stays the alternative)")
    attachments: list[ReplyFile] = Field(default_factory=list, max_length=10,
                                         description="files sent with a mail reply, 10 MB in all")


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
    tier: str | None = Field(None, max_length=50, pattern=r"^[\w-]+$",
                             description="the customer's service tier (e.g. vip); null clears it")


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
    ticket_ids: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(min_length=1, max_length=500)
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
    return [Attachment(filename=f.filename, media_type=f.media_type, size=len(data),
                       sha256=(sha := await deliveries.put_blob(data, f.media_type, f.filename, now)),
                       content_ref=f"blob:{sha}") for f, data in decoded]


def build_router(service: TicketService, store: TicketStore, deliveries: DeliveryStore, auth) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["tickets"], dependencies=[auth.agent])

    @router.get("/messages/{message_id}", summary="Which ticket a message was filed into")
    async def get_message(message_id: str) -> dict[str, str]:
        ticket_id = await store.ticket_of_message(message_id)
        if ticket_id is None:
            raise ApiError(404, "not_found", f"message {message_id} has not been filed (yet)")
        return {"message_id": message_id, "ticket_id": ticket_id}

    @router.get("/tickets/{ticket_id}", summary="One ticket with its messages and timeline")
    async def get_ticket(ticket_id: str) -> dict[str, Any]:
        doc = await store.get_view(ticket_id)
        if doc is None:
            raise ApiError(404, "not_found", f"ticket {ticket_id} does not exist")
        return ticket_view(doc)

    @router.get("/tickets", summary="Tickets with filters, text search, sorting and cursor pagination")
    async def list_tickets(
        status: str | None = Query(None, pattern=r"^[a-z][a-z0-9_-]{1,39}$", description="a built-in or custom status"),
        assignee: str | None = Query(None, max_length=200),
        customer: str | None = Query(None, max_length=200), channel: Channel | None = None,
        tag: str | None = Query(None, max_length=200), team: str | None = Query(None, max_length=200),
        priority: Priority | None = None,
        sla: Literal["warning", "breached", "met"] | None = Query(None, description="any SLA target in this state"),
        q: str | None = Query(None, max_length=200, description="words that must all appear (subject, messages, name)"),
        sort: Literal[tuple(SORTS)] = Query("-created_at", description="field, `-` for descending"),  # type: ignore[valid-type]
        limit: int = Query(50, ge=1, le=500), cursor: str | None = Query(None, max_length=500),
    ) -> dict[str, Any]:
        # every value is a plain string by validation, so no operator can be injected
        filters: dict[str, Any] = {}
        for field, value in (("assignee", assignee), ("channel", channel), ("tags", tag), ("team", team),
                             ("priority", priority), ("sla_states", sla)):
            if value is not None:
                filters[field] = str(value)
        if status is not None:
            filters["status" if status in Status.__members__ else "substatus"] = str(status)
        if q is not None and (terms := query_terms(q)):
            filters["search"] = {"$all": terms}
        if customer is not None:
            profile = await store.current_customer(customer)
            ids = [profile["_id"], *profile.get("merged_ids", [])] if profile else [customer]
            filters["customer.id"] = {"$in": [str(i) for i in ids]}
        try:
            docs, next_cursor = await store.list_view(filters=filters, limit=limit, cursor=cursor, sort=sort)
        except ValueError as exc:
            raise ApiError(400, "invalid_cursor", str(exc)) from exc
        return {"items": [ticket_view(d) for d in docs], "next_cursor": next_cursor}

    @router.post("/tickets/{ticket_id}/replies", status_code=201, summary="An agent answers the customer")
    async def reply(ticket_id: str, body: ReplyRequest,
                    idempotency_key: str | None = Header(None, max_length=200)) -> dict[str, Any]:
        files = await stored_files(body.attachments, deliveries)
        html = nh3.clean(body.html) if body.html else None
        ticket = await _act(service.reply(ticket_id, agent_id=body.agent_id, text=body.text, html=html,
                                          attachments=files, request_id=idempotency_key))
        return {"ticket_id": ticket.id, "status": ticket.status, "message": ticket.messages[-1].model_dump(mode="json")}

    @router.post("/tickets/{ticket_id}/status", summary="Change a ticket's status")
    async def change_status(ticket_id: str, body: StatusRequest) -> dict[str, Any]:
        ticket = await _act(service.change_status(ticket_id, status=body.status, actor=body.actor or "agent",
                                                  until=body.until))
        return {"ticket_id": ticket.id, "status": ticket.status}

    @router.post("/tickets/{ticket_id}/merge", summary="Fold another ticket into this one")
    async def merge_ticket(ticket_id: str, body: MergeTicketRequest) -> dict[str, Any]:
        await _act(service.merge(ticket_id, body.ticket_id, actor=body.actor or "agent"))
        return ticket_view(await store.get_view(ticket_id))

    @router.post("/tickets/{ticket_id}/split", status_code=201,
                 summary="Move a customer message into a new ticket of its own")
    async def split_ticket(ticket_id: str, body: SplitRequest) -> dict[str, Any]:
        new = await _act(service.split(ticket_id, body.message_id, actor=body.actor or "agent"))
        return {"ticket_id": new.id, "split_from": ticket_id, "message_id": body.message_id}

    @router.post("/tickets/bulk", summary="One change applied to many tickets (each reported on its own)")
    async def bulk(body: BulkRequest) -> dict[str, Any]:
        actor = body.actor or "agent"
        results = []
        for ticket_id in dict.fromkeys(body.ticket_ids):
            try:
                if body.status:
                    await _act(service.change_status(ticket_id, status=body.status, actor=actor, until=None))
                if body.priority:
                    await _act(service.set_priority(ticket_id, priority=body.priority, actor=actor))
                if body.add_tags or body.remove_tags:
                    await _act(service.change_tags(ticket_id, add=body.add_tags, remove=body.remove_tags, actor=actor))
                if body.assignee:
                    await _act(service.assign(ticket_id, agent_id=body.assignee, actor=actor))
                results.append({"ticket_id": ticket_id, "ok": True})
            except ApiError as exc:
                results.append({"ticket_id": ticket_id, "ok": False, "error": exc.code, "message": exc.message})
        return {"results": results, "ok": sum(r["ok"] for r in results), "failed": sum(not r["ok"] for r in results)}

    @router.get("/statuses", summary="Every status: the built-in ones and those admins added")
    async def statuses() -> dict[str, Any]:
        return {"builtin": [s.value for s in Status],
                "custom": [c.model_dump(mode="json") for c in await store.custom_statuses()]}

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
    async def add_note(ticket_id: str, body: NoteRequest,
                       idempotency_key: str | None = Header(None, max_length=200)) -> dict[str, Any]:
        ticket = await _act(service.note(ticket_id, author=body.author, text=body.text, request_id=idempotency_key))
        return {"ticket_id": ticket.id, "note": ticket.notes[-1].model_dump(mode="json")}

    @router.put("/tickets/{ticket_id}/priority", summary="Set the priority (low, normal, high, urgent)")
    async def set_priority(ticket_id: str, body: PriorityRequest) -> dict[str, Any]:
        ticket = await _act(service.set_priority(ticket_id, priority=body.priority, actor=body.actor or "agent"))
        return {"ticket_id": ticket.id, "priority": ticket.priority}

    @router.post("/tickets/{ticket_id}/tags", summary="Add and remove tags")
    async def change_tags(ticket_id: str, body: TagsRequest) -> dict[str, Any]:
        ticket = await _act(service.change_tags(ticket_id, add=body.add, remove=body.remove,
                                                actor=body.actor or "agent"))
        return {"ticket_id": ticket.id, "tags": ticket.tags}

    @router.put("/tickets/{ticket_id}/assignee", summary="Assign the ticket to an agent")
    async def assign(ticket_id: str, body: AssigneeRequest) -> dict[str, Any]:
        ticket = await _act(service.assign(ticket_id, agent_id=body.agent_id, actor=body.actor or "agent"))
        return {"ticket_id": ticket.id, "assignee": ticket.assignee}

    @router.delete("/tickets/{ticket_id}/assignee", summary="Take the ticket off its agent")
    async def unassign(ticket_id: str) -> dict[str, Any]:
        ticket = await _act(service.unassign(ticket_id, actor="agent"))
        return {"ticket_id": ticket.id, "assignee": ticket.assignee}

    @router.post("/tickets/{ticket_id}/purge", dependencies=[auth.admin], status_code=202,
                 summary="Remove a deleted or spam ticket's data for good (a purged event remains)")
    async def purge(ticket_id: str) -> dict[str, Any]:
        await _act(service.purge(ticket_id, actor="admin"))
        return {"ticket_id": ticket_id, "status": "purged"}

    @router.get("/customers/{customer_id}", summary="A customer with every identity and every ticket")
    async def get_customer(customer_id: str) -> dict[str, Any]:
        view = await store.customer_view(customer_id)
        if view is None:
            raise ApiError(404, "not_found", f"customer {customer_id} does not exist")
        return view

    @router.put("/customers/{customer_id}/tier", dependencies=[auth.admin],
                summary="Set the customer's service tier (SLA policies and routing can match on it)")
    async def set_tier(customer_id: str, body: TierRequest) -> dict[str, Any]:
        if not await store.set_customer_tier(customer_id, body.tier, now=utcnow()):
            raise ApiError(404, "not_found", f"customer {customer_id} does not exist")
        return await store.customer_view(customer_id)

    @router.post("/customers/{customer_id}/merge", dependencies=[auth.admin], summary="Merge another customer profile into this one")
    async def merge_customer(customer_id: str, body: MergeRequest) -> dict[str, Any]:
        if body.customer_id == customer_id:
            raise ApiError(409, "same_customer", "a customer cannot be merged into itself")
        for cid in (customer_id, body.customer_id):
            if await store.current_customer(cid) is None:
                raise ApiError(404, "not_found", f"customer {cid} does not exist")
        survivor = (await store.current_customer(customer_id))["_id"]
        other = (await store.current_customer(body.customer_id))["_id"]
        await store.merge_customers(survivor, other, now=utcnow(), locks=service.locks)
        return await store.customer_view(survivor)

    return router


async def _act(action):
    try:
        return await action
    except NotFound as exc:
        raise ApiError(404, "not_found", f"ticket {exc} does not exist") from exc
    except LifecycleError as exc:
        raise ApiError(409, "invalid_transition", str(exc)) from exc
    except VersionConflict as exc:
        raise ApiError(409, "conflict", "the ticket changed meanwhile; try again") from exc
    except UnknownStatus as exc:
        raise ApiError(422, "unknown_status", f"{exc} is neither a built-in nor a custom status") from exc
