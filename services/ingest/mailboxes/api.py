"""`PUT/GET/DELETE /v1/mailboxes/{mailbox_id}` (admin): the mailboxes ingest polls, passwords never shown."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from services.ingest.bodies import parse_json, read_body
from services.ingest.mailboxes.config import MAILBOX_ID, MailboxPut, address_of
from services.ingest.mailboxes.store import MailboxStore
from shared.credentials import Vault
from shared.http import ApiError, Auth

MAX_BODY = 16 * 1024


def _checked(mailbox_id: str) -> str:
    if not MAILBOX_ID.fullmatch(mailbox_id):
        raise ApiError(400, "invalid_mailbox_id", "mailbox ids are 1-64 letters, digits, '.', '_' or '-'")
    return mailbox_id


def build_router(store: MailboxStore, vault: Vault, auth: Auth) -> APIRouter:
    router = APIRouter(prefix="/v1/mailboxes", tags=["mailboxes"], dependencies=[auth.admin])

    async def shown(mailbox_id: str, config: dict[str, Any]) -> dict[str, Any]:
        state = await store.state(mailbox_id)
        address = address_of(config["url_shown"])
        return {
            "mailbox_id": mailbox_id,
            "url": address.shown(),
            "poll_s": config["poll_s"],
            "after": config["after"],
            "trusted_authserv_ids": config.get("trusted_authserv_ids", []),
            "filed": state.filed,
            "refused": state.refused,
            "last_poll": state.last_poll.isoformat() if state.last_poll else None,
            "last_error": state.last_error,
            "last_uid": state.last_uid,
            "uidvalidity": state.uidvalidity,
            "polled_by": await store.holder(mailbox_id),
        }

    @router.put(
        "/{mailbox_id}",
        summary="Configure a mailbox to poll (IMAP or IMAPS); the password is stored "
        "encrypted with DESKSTREAM_SECRET_KEY and never shown",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": MailboxPut.model_json_schema()}},
            }
        },
    )
    async def put_mailbox(mailbox_id: str, request: Request) -> JSONResponse:
        _checked(mailbox_id)
        body = parse_json(await read_body(request, MAX_BODY), MailboxPut)
        address = address_of(body.url)
        config = {
            "address": {
                "tls": address.tls,
                "host": address.host,
                "port": address.port,
                "user": address.user,
                "folder": address.folder,
            },
            "url_shown": address.shown(),
            "password": vault.seal(address.password),
            "poll_s": body.poll_s,
            "after": body.after,
            "trusted_authserv_ids": body.trusted_authserv_ids,
        }
        await store.put(mailbox_id, config)
        return JSONResponse(await shown(mailbox_id, config))

    @router.get("/{mailbox_id}", summary="A mailbox's configuration (without its password) and polling state")
    async def get_mailbox(mailbox_id: str) -> JSONResponse:
        config = await store.get(_checked(mailbox_id))
        if config is None:
            raise ApiError(404, "not_found", f"no mailbox {mailbox_id}")
        return JSONResponse(await shown(mailbox_id, config))

    @router.delete("/{mailbox_id}", status_code=204, summary="Stop polling a mailbox and forget it")
    async def delete_mailbox(mailbox_id: str) -> Response:
        if not await store.delete(_checked(mailbox_id)):
            raise ApiError(404, "not_found", f"no mailbox {mailbox_id}")
        return Response(status_code=204)

    return router
