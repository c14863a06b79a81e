"""Inbound channel webhooks. Each answers 202 {"message_id"} once the message is durable."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.ingest.domain import ChatInbound, normalise_chat
from services.ingest.service import IngestService, NotDurable
from shared.events import utcnow
from shared.http import error_body



def build_router(service: IngestService) -> APIRouter:
    router = APIRouter(prefix="/v1/inbound", tags=["inbound channels"])

    async def accept(message) -> JSONResponse:
        try:
            message_id = await service.accept(message)
        except NotDurable as exc:
            return JSONResponse(error_body("unavailable", str(exc)), status_code=503,
                                headers={"Retry-After": "2"})
        return JSONResponse({"message_id": message_id}, status_code=202)

    @router.post("/chat", status_code=202, summary="A web-chat message",
                 responses={202: {"description": "accepted: {\"message_id\": ...}"}})
    async def inbound_chat(payload: ChatInbound) -> JSONResponse:
        return await accept(normalise_chat(payload, received_at=utcnow()))

    return router
