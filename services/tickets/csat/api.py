"""The page a customer answers a confirmation request on, and the admin's settings for it.

`GET /v1/csat/{token}` is a small HTML form that works without script; `POST` takes the form or JSON
and sends the answer as a command to the process owning the ticket (as agents' changes go), which
closes or reopens the ticket. A link this deployment did not issue is refused before anything is
read or sent."""

from __future__ import annotations

import html
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError

from services.tickets.commands import CommandBus, Unavailable
from services.tickets.csat.rules import CsatSettings, CsatSettingsChange, Surveys
from services.tickets.csat.store import CsatStore
from services.tickets.domain import CSAT_UPDATE_WINDOW, CsatStatus, Ticket
from services.tickets.store import Purged, TicketStore
from services.tickets.views import load_ticket
from shared.events import EventType, RecordCsatAnswer, stable_id, utcnow
from shared.http import ApiError

MAX_ANSWER_BYTES = 16 * 1024


class CsatAnswer(BaseModel):
    solved: bool
    rating: int = Field(ge=1, le=5)
    comment: str | None = Field(None, max_length=2000)


class InvalidAnswer(Exception):
    pass


def answer_of(content_type: str, body: bytes) -> CsatAnswer:
    """The answer from a JSON body or the page's form (`solved=yes|no`, `rating=1..5`, `comment`)."""
    try:
        if content_type.startswith("application/json"):
            data = json.loads(body or b"null")
            if not isinstance(data, dict):
                raise InvalidAnswer("the body must be a JSON object")
        elif content_type.startswith("application/x-www-form-urlencoded"):
            from urllib.parse import parse_qs

            form = {k: v[-1] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
            if form.get("solved") not in ("yes", "no", "true", "false"):
                raise InvalidAnswer("please say whether your request was solved")
            if not form.get("rating"):
                raise InvalidAnswer("please choose a rating from 1 to 5")
            data = {
                "solved": form["solved"] in ("yes", "true"),
                "rating": form["rating"],
                "comment": form.get("comment") or None,
            }
        else:
            raise InvalidAnswer("send the answer as JSON or as the page's form")
        return CsatAnswer.model_validate(data)
    except (ValueError, UnicodeDecodeError) as exc:  # ValidationError and JSONDecodeError included
        if isinstance(exc, InvalidAnswer):
            raise
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "body"
            raise InvalidAnswer(f"{where}: {first.get('msg')}") from exc
        raise InvalidAnswer("the body is not valid JSON or form data") from exc


# ---------------------------------------------------------------- the page


def page(title: str, body: str, *, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;"
        "line-height:1.5}fieldset{margin:1rem 0;border:1px solid #999;padding:.5rem 1rem}"
        "label{margin-right:1rem;display:inline-block;padding:.25rem 0}textarea{width:100%}"
        "button{font-size:1rem;padding:.5rem 1.5rem}.error{color:#a00000;font-weight:bold}</style>"
        f"</head><body><main>{body}</main></body></html>",
        status_code=status,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def form_page(ticket: Ticket, *, error: str | None = None, status: int = 200) -> HTMLResponse:
    csat = ticket.csat
    assert csat is not None
    solved, rating, comment = csat.solved, csat.rating, csat.comment or ""

    def checked(on: bool) -> str:
        return " checked" if on else ""

    note = ""
    if csat.status == CsatStatus.answered and csat.answered_at is not None:
        until = (csat.answered_at + CSAT_UPDATE_WINDOW).strftime("%d %B %Y")
        note = f"<p>Thank you, we have your answer. You can change it until {html.escape(until)}.</p>"
    ratings = "".join(
        f'<label><input type="radio" name="rating" value="{n}" required{checked(rating == n)}> {n}'
        f"{' (poor)' if n == 1 else ' (excellent)' if n == 5 else ''}</label>"
        for n in range(1, 6)
    )
    body = (
        "<h1>Was your request solved?</h1>"
        f"<p>Request #{html.escape(ticket.id)}"
        f"{(': ' + html.escape(ticket.subject)) if ticket.subject else ''}</p>"
        f"{note}"
        + (f'<p class="error" role="alert">{html.escape(error)}</p>' if error else "")
        + '<form method="post">'
        "<fieldset><legend>Was it solved?</legend>"
        f'<label><input type="radio" name="solved" value="yes" required{checked(solved is True)}> Yes</label>'
        f'<label><input type="radio" name="solved" value="no"{checked(solved is False)}> No, not yet</label>'
        "</fieldset>"
        f"<fieldset><legend>How would you rate our help? (1 = poor, 5 = excellent)</legend>{ratings}</fieldset>"
        '<p><label for="comment">Anything you would like to add? (optional)</label><br>'
        f'<textarea id="comment" name="comment" rows="4" maxlength="2000">{html.escape(comment)}</textarea></p>'
        '<p><button type="submit">Send my answer</button></p>'
        "</form>"
    )
    return page("Was your request solved?", body, status=status)


def thanks_page(ticket_id: str, answer: CsatAnswer) -> HTMLResponse:
    follow = (
        "We are glad it is solved; your request is now closed."
        if answer.solved
        else "We are sorry it is not solved yet: your request is open again and an agent will get back to you."
    )
    return page(
        "Thank you",
        f"<h1>Thank you for your answer</h1><p>Request #{html.escape(ticket_id)}: {follow}</p>"
        f"<p>Your rating: {answer.rating} out of 5.</p>",
    )


NOT_VALID = "This link is not valid (any more). If you still need help, just write to us again."


# ---------------------------------------------------------------- the routes


def build_csat_router(
    *,
    bus: CommandBus,
    store: TicketStore,
    surveys: Surveys,
    settings_store: CsatStore,
    auth: Any,
    announce: Callable[[], Awaitable[None]],
) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["customer confirmation"])

    def wants_html(request: Request) -> bool:
        """A browser (it asks for HTML) gets a page; any other client our JSON error."""
        return "text/html" in request.headers.get("accept", "")

    def refused(request: Request, status: int, code: str, message: str, ticket: Ticket | None = None) -> HTMLResponse:
        if not wants_html(request):
            raise ApiError(status, code, message)
        if ticket is not None and ticket.csat is not None and status == 422:
            return form_page(ticket, error=message, status=status)
        return page(
            "Link not valid" if status in (404, 410) else "Please try again",
            f"<p>{html.escape(message)}</p>",
            status=status,
        )

    async def current(token: str) -> tuple[Ticket | None, str | None]:
        """The ticket and survey a link names, when the link is ours and its survey the ticket's current one."""
        named = surveys.read(token)
        if named is None:
            return None, None
        ticket_id, survey_id = named
        try:
            ticket = await load_ticket(store, ticket_id)
        except Purged:
            return None, None
        if ticket is None or ticket.csat is None or ticket.csat.survey_id != survey_id:
            return None, None
        return ticket, survey_id

    @router.get(
        "/csat/{token}",
        response_class=HTMLResponse,
        summary="The customer's confirmation page: was it solved, a rating from 1 to 5 (a form, no script)",
    )
    async def csat_page(token: str, request: Request) -> HTMLResponse:
        ticket, _ = await current(token)
        if ticket is None:
            if not wants_html(request):
                raise ApiError(404, "not_found", NOT_VALID)
            return page("Link not valid", f"<h1>Link not valid</h1><p>{NOT_VALID}</p>", status=404)
        csat = ticket.csat
        if csat is not None and csat.answered_at is not None and utcnow() - csat.answered_at > CSAT_UPDATE_WINDOW:
            if not wants_html(request):
                raise ApiError(410, "gone", "this answer can no longer be changed")
            return page(
                "Thank you",
                f"<h1>Thank you</h1><p>We have your answer for request #{html.escape(ticket.id)}; "
                "it can no longer be changed.</p>",
                status=410,
            )
        return form_page(ticket)

    @router.post(
        "/csat/{token}",
        summary="The customer's answer: solved closes the ticket, not solved reopens it",
        description='JSON `{"solved": bool, "rating": 1-5, "comment"?}` (answered in JSON) or the page\'s '
        "form (answered with a page). A second answer within 7 days replaces the first. A link that is not "
        "the ticket's current one → 404; an answer older than 7 days → 410.",
        openapi_extra={
            "requestBody": {
                "content": {
                    "application/json": {"schema": CsatAnswer.model_json_schema()},
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "solved": {"type": "string", "enum": ["yes", "no"]},
                                "rating": {"type": "integer", "minimum": 1, "maximum": 5},
                                "comment": {"type": "string", "maxLength": 2000},
                            },
                            "required": ["solved", "rating"],
                        }
                    },
                }
            }
        },
    )
    async def csat_answer(token: str, request: Request) -> Response:
        named = surveys.read(token)
        if named is None:
            return refused(request, 404, "not_found", NOT_VALID)
        ticket_id, survey_id = named
        body = await request.body()
        if len(body) > MAX_ANSWER_BYTES:
            raise ApiError(413, "too_large", f"an answer is at most {MAX_ANSWER_BYTES} bytes")
        try:
            answer = answer_of(request.headers.get("content-type", ""), body)
        except InvalidAnswer as exc:
            ticket = (await current(token))[0] if wants_html(request) else None
            return refused(request, 422, "invalid_answer", str(exc), ticket)
        try:
            outcome = await bus.send(
                EventType.RECORD_CSAT_ANSWER,
                RecordCsatAnswer(
                    command_id=stable_id("csat-answer", token, uuid.uuid4().hex, size=24),
                    ticket_id=ticket_id,
                    survey_id=survey_id,
                    solved=answer.solved,
                    rating=answer.rating,
                    comment=answer.comment,
                ),
            )
        except Unavailable as exc:
            raise ApiError(503, "unavailable", str(exc)) from exc
        if outcome.status >= 400:
            message = NOT_VALID if outcome.status == 404 else (outcome.message or "the answer was refused")
            return refused(request, outcome.status, outcome.code or "refused", message)
        if wants_html(request):
            return thanks_page(ticket_id, answer)
        return JSONResponse(
            {"ticket_id": ticket_id, "status": outcome.result.get("status"), "csat": outcome.result.get("csat")}
        )

    @router.get(
        "/settings/csat",
        dependencies=[auth.admin],
        summary="Customer confirmation settings: the channels it is on for, and the delay after resolution",
    )
    async def get_settings() -> dict[str, Any]:
        return (await settings_store.settings()).model_dump(mode="json")

    @router.put(
        "/settings/csat",
        dependencies=[auth.admin],
        summary="Switch customer confirmation on or off per channel, and set its delay after resolution",
    )
    async def put_settings(body: CsatSettingsChange) -> dict[str, Any]:
        merged: CsatSettings = (await settings_store.settings()).merged(body)
        await settings_store.put(merged)
        await announce()
        return merged.model_dump(mode="json")

    return router
