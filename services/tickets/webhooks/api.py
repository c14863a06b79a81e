"""The admin API of webhook subscriptions: `PUT/GET/DELETE /v1/webhooks/{id}`, the delivery log
and replays. The secret is shown once, when deskstream generated it; never read back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from services.tickets.webhooks.rules import Refused, check_addresses, check_url, new_secret, secret_key
from services.tickets.webhooks.service import matching_since, queue_doc
from services.tickets.webhooks.store import WebhookStore
from shared.credentials import Vault
from shared.events import utcnow
from shared.http import ApiError, Auth, check_id

Pattern = str


class WebhookRequest(BaseModel):
    url: str = Field(min_length=1, max_length=2000, description="an http(s) URL the events are POSTed to")
    events: list[Pattern] | None = Field(
        None,
        max_length=100,
        description="fnmatch-style patterns over CloudEvents types "
        "(`deskstream.ticket.*`, `deskstream.sla.breached`); default every event",
    )
    secret: str | None = Field(
        None,
        max_length=200,
        description="`whsec_<base64>`; generated (and shown once) when a new subscription has none",
    )
    active: bool = True


class ReplayRequest(BaseModel):
    since: datetime = Field(description="re-send every event the subscription wants from this time on")


def public(doc: dict[str, Any], *, secret: str | None = None) -> dict[str, Any]:
    shown = {
        "id": doc["_id"],
        "url": doc["url"],
        "events": doc.get("events") or ["*"],
        "active": doc.get("active", True),
        "created_at": doc.get("created_at"),
        "updated_at": doc.get("updated_at"),
    }
    if doc.get("disabled_reason") and not shown["active"]:
        shown.update(disabled_reason=doc["disabled_reason"], disabled_at=doc.get("disabled_at"))
    if secret:
        shown["secret"] = secret
    return shown


def build_webhooks_router(
    store: WebhookStore,
    auth: Auth,
    *,
    allow_private: bool,
    bootstrap_servers: str,
    partitions: Callable[[str], Awaitable[int]],
    announce: Callable[[], Awaitable[None]],
    vault: Vault,
) -> APIRouter:
    router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], dependencies=[auth.admin])

    async def existing(webhook_id: str) -> dict[str, Any]:
        doc = await store.get(webhook_id)
        if doc is None:
            raise ApiError(404, "not_found", f"no webhook {webhook_id}")
        return doc

    async def check_target(url: str) -> None:
        try:
            host = check_url(url)
            if not allow_private:
                try:
                    infos = await asyncio.get_running_loop().getaddrinfo(host, None)
                except OSError as exc:
                    raise Refused(f"{host} does not resolve") from exc
                check_addresses({str(i[4][0]) for i in infos}, allow_private=False)  # (the address: str for IP)
        except Refused as exc:
            raise ApiError(400, "invalid_url", str(exc)) from exc

    @router.put(
        "/{webhook_id}",
        summary="Subscribe a URL to events (signed, Standard Webhooks)",
        description="The answer carries `secret` only when deskstream generated it: keep it, it is not "
        "shown again. Without `secret`, an existing subscription keeps its own.",
    )
    async def put_webhook(webhook_id: str, body: WebhookRequest) -> dict[str, Any]:
        check_id(webhook_id, "webhook")
        await check_target(body.url)
        if body.secret is not None:
            try:
                secret_key(body.secret)
            except ValueError as exc:
                raise ApiError(400, "invalid_secret", str(exc)) from exc
        before = await store.get(webhook_id)
        generated = new_secret() if body.secret is None and not (before and before.get("secret")) else None
        now = utcnow()
        fields = {
            "url": body.url,
            "events": body.events or ["*"],
            "active": body.active,
            "updated_at": now,
            "disabled_reason": None,
            "disabled_at": None,
        }
        if secret := body.secret or generated:
            fields["secret"] = vault.seal(secret)  # kept sealed: a copy of the database signs nothing
        doc = await store.put(webhook_id, fields, created_at=now)
        await announce()
        return public(doc, secret=generated)

    @router.get("/{webhook_id}", summary="A subscription (never its secret)")
    async def get_webhook(webhook_id: str) -> dict[str, Any]:
        return public(await existing(webhook_id))

    @router.delete(
        "/{webhook_id}", status_code=204, summary="Unsubscribe: nothing more is sent, queued events are dropped"
    )
    async def delete_webhook(webhook_id: str) -> None:
        if not await store.delete(webhook_id):
            raise ApiError(404, "not_found", f"no webhook {webhook_id}")
        await announce()

    @router.get(
        "/{webhook_id}/deliveries",
        summary="Recent delivery attempts, newest first",
        description="Each with the event id and type, the ticket, the status code (null when no answer "
        "came), latency, error, `outcome` (delivered, retrying, failed) and the next attempt.",
    )
    async def deliveries(webhook_id: str, limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        await existing(webhook_id)
        return {"webhook_id": webhook_id, "deliveries": await store.recent(webhook_id, limit)}

    @router.post(
        "/{webhook_id}/replay",
        status_code=202,
        summary="Re-send every event the subscription wants since a time (read again from Kafka)",
        description="Queued behind what is already queued for each ticket, in order per ticket, with "
        "the events' own ids as `webhook-id` (receivers that kept them drop them).",
    )
    async def replay(webhook_id: str, body: ReplayRequest) -> dict[str, Any]:
        doc = await existing(webhook_id)
        since = body.since if body.since.tzinfo else body.since.replace(tzinfo=utcnow().tzinfo)
        found = await matching_since(bootstrap_servers, partitions, doc.get("events") or ["*"], since)
        replay_id, now = uuid.uuid4().hex[:12], utcnow()
        await store.enqueue(
            [
                queue_doc(
                    webhook_id,
                    event,
                    raw,
                    ticket=key or "",
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    queued_at=now,
                    replay_id=replay_id,
                )
                for topic, partition, offset, key, raw, event in found
            ]
        )
        await announce()
        return {"webhook_id": webhook_id, "replay_id": replay_id, "since": since, "queued": len(found)}

    return router
