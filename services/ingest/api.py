"""Inbound channel webhooks. Each answers 202 {"message_id"} once the message is durable."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import SecretStr
from starlette.concurrency import run_in_threadpool

from services.ingest.bodies import body_schema, form_pairs, multipart_form, parse_json, read_body, validate
from services.ingest.channels.chat import ChatInbound, normalise_chat
from services.ingest.channels.mail import normalise_email
from services.ingest.channels.receipts import twilio_report
from services.ingest.channels.sms import normalise_sms
from services.ingest.channels.social import SocialInbound, normalise_social
from services.ingest.channels.voice import VoiceInbound, normalise_voice
from services.ingest.channels.webform import WebformInbound, normalise_webform
from services.ingest.channels.whatsapp import WhatsAppWebhook, normalise_whatsapp, reports_of
from services.ingest.chat_sessions import ChatSessions, Forbidden
from services.ingest.domain import Blob, Normalised, Rejected
from services.ingest.ratelimit import RateLimited, RateLimiter, retry_after
from services.ingest.service import IngestService, NotDurable
from services.ingest.settings import IngestSettings
from services.ingest.signatures import meta_valid, twilio_valid
from services.ingest.verification import mail_sender_passed, trusted_ids, verified
from shared.events import MessageReceived, utcnow
from shared.http import ApiError, error_body

log = logging.getLogger(__name__)

# A mail this small is read on the event loop (~0.6 ms for a typical 1 KB mail, up to ~5 ms with
# HTML). A thread would not read it sooner (the GIL), would cost a hand-off each way, and would
# hold the GIL for up to the interpreter's 5 ms switch interval at a time anyway, so the loop
# would wait as long. Larger mails still go to a thread, which at least takes turns.
INLINE_MAIL_BYTES = 16 * 1024

ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"description": 'accepted: {"message_id": "msg_..."}'},
    413: {"description": "the body is larger than this endpoint takes"},
    422: {"description": "the payload cannot become a message; the error names the problem"},
    429: {
        "description": "this sender sent more than INGEST_RATE_LIMIT_PER_MIN on this channel, or "
        "this client address more than INGEST_IP_RATE_LIMIT_PER_MIN to the doors: "
        "retry after `Retry-After` seconds"
    },
    503: {"description": "not durable yet (Kafka or the store is down): retry"},
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(NotDurable)
    async def unavailable(_: Request, exc: NotDurable) -> JSONResponse:
        return JSONResponse(error_body("unavailable", str(exc)), status_code=503, headers={"Retry-After": "2"})

    @app.exception_handler(RateLimited)
    async def rate_limited(_: Request, exc: RateLimited) -> JSONResponse:
        return JSONResponse(
            error_body("rate_limited", str(exc)), status_code=429, headers={"Retry-After": retry_after(exc.wait_s)}
        )


def accepted_response(message_id: str) -> Response:
    """`JSONResponse({"message_id": message_id}, status_code=202)`, the same bytes and headers,
    without building a JSON encoder for one string on the hottest path."""
    return Response(
        b'{"message_id":' + json.dumps(message_id, ensure_ascii=False).encode() + b"}",
        status_code=202,
        media_type="application/json",
    )


def normalise(channel: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A payload that breaks a normaliser is the sender's problem to hear about (422), never a 5xx."""
    try:
        return fn(*args, **kwargs)
    except Rejected as exc:
        raise ApiError(422, exc.code, exc.message) from exc
    except Exception as exc:
        log.exception("could not normalise a %s message", channel)
        problem = f"the {channel} message cannot be read: {type(exc).__name__}: {exc}"
        raise ApiError(422, "unreadable", problem[:500]) from exc


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() or None if value else None


def source_of(message: MessageReceived) -> str:
    """Who a message counts against: its channel and the sender's first identity."""
    identity = message.customer.identities[0]
    return f"{message.channel}:{identity.kind}:{identity.value}"


def build_router(service: IngestService, settings: IngestSettings, sessions: ChatSessions) -> APIRouter:
    trusted_relays = trusted_ids(settings.trusted_authserv_ids)
    router = APIRouter(prefix="/v1/inbound", tags=["inbound channels"])
    limiter = (
        RateLimiter(settings.rate_limit_per_min, settings.rate_limit_burst) if settings.rate_limit_per_min > 0 else None
    )

    def within_limit(*messages: MessageReceived) -> None:
        """All of a webhook's messages pass, or none does (its sender retries the whole webhook)."""
        if limiter is None or not messages:
            return
        costs: dict[str, int] = {}
        for message in messages:
            costs[source_of(message)] = costs.get(source_of(message), 0) + 1
        if wait := limiter.take(costs):
            raise RateLimited(wait)

    async def twilio_form(request: Request) -> list[tuple[str, str]]:
        """A Twilio webhook's form fields, its X-Twilio-Signature checked when TWILIO_AUTH_TOKEN is set."""
        pairs = form_pairs(await read_body(request, settings.max_json_bytes))
        token = _secret(settings.twilio_auth_token)
        if token:
            url = settings.public_url.rstrip("/") + request.url.path
            url += f"?{request.url.query}" if request.url.query else ""
            if not twilio_valid(token, url, pairs, request.headers.get("x-twilio-signature")):
                raise ApiError(403, "invalid_signature", "X-Twilio-Signature is missing or does not match")
        return pairs

    async def accept(message: MessageReceived, blobs: tuple[Blob, ...] = (), claim: Blob | None = None) -> str:
        try:
            return await service.accept(message, blobs, claim)
        except Rejected as exc:
            raise ApiError(422, exc.code, exc.message) from exc

    async def accepted(item: Normalised) -> Response:
        within_limit(item.message)
        return accepted_response(await accept(item.message, item.blobs, item.claim))

    @router.post(
        "/chat",
        status_code=202,
        summary="A web-chat message: 202 {message_id, chat_token}",
        description="The first message of a session opens it for its visitor and is answered with "
        "a `chat_token`; every later message of the session carries it (`chat_token` in "
        "the body), and the widget reads replies with it (tickets' chat endpoints). "
        "Another visitor, or a wrong token: 403.",
        responses={
            **ACCEPTED,
            403: {"description": "the session belongs to another visitor, or chat_token is missing or wrong"},
        },
        openapi_extra=body_schema(ChatInbound),
    )
    async def inbound_chat(request: Request) -> Response:
        payload = parse_json(await read_body(request, settings.max_json_bytes), ChatInbound)
        message = normalise("chat", normalise_chat, payload, received_at=utcnow())
        within_limit(message)
        try:
            token = await sessions.admit(
                payload.session_id, payload.customer.visitor_id, payload.message_id, payload.chat_token
            )
        except Forbidden as exc:
            raise ApiError(403, "forbidden", str(exc)) from exc
        except Exception as exc:
            raise NotDurable(f"the chat session store did not answer: {type(exc).__name__}") from exc
        message_id = await accept(message)
        return Response(
            orjson.dumps({"message_id": message_id, "chat_token": token}),
            status_code=202,
            media_type="application/json",
        )

    @router.post(
        "/email",
        status_code=202,
        responses=ACCEPTED,
        summary="One raw RFC 5322 mail (Content-Type: message/rfc822)",
        description="Quoted history and signatures are left out of the text agents read; the "
        "original and every attachment are kept in `ingest_blobs` (`blob:<sha256>`). "
        "The sender is looked for as robust parsers do (a broken header block is read on; "
        "From, Sender, Reply-To, Return-Path, an mbox `From ` line); a mail with no address "
        'anywhere is filed for a customer "unknown sender" (identity kind `unknown`, no '
        "reply possible). Only what is not a mail at all is refused (422). A different mail "
        "reusing a Message-ID is a message of its own; the same bytes again are not.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"message/rfc822": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def inbound_email(request: Request) -> Response:
        raw = await read_body(request, settings.max_email_bytes)
        if len(raw) <= INLINE_MAIL_BYTES:
            item = normalise(
                "email", normalise_email, raw, received_at=utcnow(), max_blob_bytes=settings.max_blob_bytes
            )
        else:  # a large mail takes a while to read: off the event loop, so other webhooks keep flowing
            item = await run_in_threadpool(
                normalise, "email", normalise_email, raw, received_at=utcnow(), max_blob_bytes=settings.max_blob_bytes
            )
        sender = item.message.customer.identities[0]
        if trusted_relays and sender.kind == "email" and mail_sender_passed(raw, sender.value, trusted_relays):
            item = Normalised(verified(item.message), item.blobs, item.claim)
        return await accepted(item)

    @router.post(
        "/sms",
        status_code=202,
        responses={**ACCEPTED, 403: {"description": "bad X-Twilio-Signature"}},
        summary="Twilio Messaging webhook (form-encoded)",
        description="With TWILIO_AUTH_TOKEN set, X-Twilio-Signature must match, computed over "
        "INGEST_PUBLIC_URL + the request path.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "required": ["MessageSid", "From", "To"],
                            "additionalProperties": {"type": "string"},
                        }
                    }
                },
            }
        },
    )
    async def inbound_sms(request: Request) -> Response:
        pairs = await twilio_form(request)
        message = normalise("sms", normalise_sms, dict(pairs), received_at=utcnow())
        if _secret(settings.twilio_auth_token):  # the signature was checked: Twilio vouches for the number
            message = verified(message)
        return await accepted(Normalised(message))

    @router.post(
        "/sms/status",
        status_code=202,
        responses={403: {"description": "bad X-Twilio-Signature"}},
        summary="Twilio status callback for a message we sent (set TWILIO_STATUS_CALLBACK_URL to it)",
        description="`MessageStatus` sent, delivered, read, undelivered, failed or canceled is passed "
        "to the tickets service; earlier states (queued, sending…) are acknowledged and "
        "dropped. Signed like the SMS webhook.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "required": ["MessageSid", "MessageStatus"],
                            "additionalProperties": {"type": "string"},
                        }
                    }
                },
            }
        },
    )
    async def sms_status(request: Request) -> JSONResponse:
        pairs = await twilio_form(request)
        report = twilio_report(dict(pairs), received_at=utcnow())
        return JSONResponse({"reported": report is not None and bool(await service.report(report))}, status_code=202)

    @router.post(
        "/whatsapp",
        status_code=202,
        responses={
            **ACCEPTED,
            200: {"description": 'statuses only, nothing to file: {"message_id": null, "message_ids": []}'},
            403: {"description": "bad X-Hub-Signature-256"},
        },
        summary="WhatsApp Cloud API webhook: 202 {message_id, message_ids}; statuses only: 200",
        description="Every message in the webhook is published; `message_id` is the first, "
        "`message_ids` all of them. A webhook carrying only delivery statuses "
        "answers 200 with `message_id` null and no ids. With META_APP_SECRET set, "
        "X-Hub-Signature-256 must match the raw body.",
        openapi_extra=body_schema(WhatsAppWebhook),
    )
    async def inbound_whatsapp(request: Request) -> JSONResponse:
        raw = await read_body(request, settings.max_json_bytes)
        secret = _secret(settings.meta_app_secret)
        if secret and not meta_valid(secret, raw, request.headers.get("x-hub-signature-256")):
            raise ApiError(403, "invalid_signature", "X-Hub-Signature-256 is missing or does not match")
        payload = parse_json(raw, WhatsAppWebhook)
        messages = normalise("whatsapp", normalise_whatsapp, payload, received_at=utcnow())
        if secret:  # the signature was checked: Meta vouches for the numbers
            messages = [verified(m) for m in messages]
        within_limit(*messages)
        ids = [await accept(message) for message in messages]
        reports = [await service.report(r) for r in reports_of(payload, received_at=utcnow())]
        return JSONResponse(
            {"message_id": ids[0] if ids else None, "message_ids": ids, "reports": len(reports)},
            status_code=202 if ids else 200,
        )

    @router.get(
        "/whatsapp",
        summary="Meta's subscription check: echoes hub.challenge when hub.verify_token matches META_VERIFY_TOKEN",
        response_class=PlainTextResponse,
    )
    async def verify_whatsapp(request: Request) -> PlainTextResponse:
        token, query = _secret(settings.meta_verify_token), request.query_params
        offered = query.get("hub.verify_token", "")
        if (
            query.get("hub.mode") != "subscribe"
            or not token
            or not secrets.compare_digest(offered.encode(), token.encode())
        ):
            raise ApiError(403, "forbidden", "hub.verify_token does not match")
        return PlainTextResponse(query.get("hub.challenge", ""))

    @router.post(
        "/social",
        status_code=202,
        summary="A social media post or direct message",
        responses=ACCEPTED,
        openapi_extra=body_schema(SocialInbound),
    )
    async def inbound_social(request: Request) -> Response:
        payload = parse_json(await read_body(request, settings.max_json_bytes), SocialInbound)
        return await accepted(Normalised(normalise("social", normalise_social, payload, received_at=utcnow())))

    @router.post(
        "/webform",
        status_code=202,
        responses=ACCEPTED,
        summary="A web form submission (JSON, urlencoded or multipart; files become attachments)",
        openapi_extra=body_schema(
            WebformInbound, ("application/json", "application/x-www-form-urlencoded", "multipart/form-data")
        ),
    )
    async def inbound_webform(request: Request) -> Response:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        files: list[Blob] = []
        if kind == "multipart/form-data":
            fields, files = await multipart_form(request, await read_body(request, settings.max_form_upload_bytes))
            payload = validate(fields, WebformInbound)
        elif kind == "application/x-www-form-urlencoded":
            payload = validate(dict(form_pairs(await read_body(request, settings.max_json_bytes))), WebformInbound)
        else:
            payload = parse_json(await read_body(request, settings.max_json_bytes), WebformInbound)
        return await accepted(
            normalise(
                "webform",
                normalise_webform,
                payload,
                received_at=utcnow(),
                files=files,
                max_blob_bytes=settings.max_blob_bytes,
            )
        )

    @router.post(
        "/voice",
        status_code=202,
        summary="A finished phone call (transcript or recording)",
        responses=ACCEPTED,
        openapi_extra=body_schema(VoiceInbound),
    )
    async def inbound_voice(request: Request) -> Response:
        payload = parse_json(await read_body(request, settings.max_json_bytes), VoiceInbound)
        return await accepted(Normalised(normalise("voice", normalise_voice, payload, received_at=utcnow())))

    return router
