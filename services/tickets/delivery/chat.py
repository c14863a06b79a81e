"""Chat replies reach the customer's widget: a server-sent event stream it holds open, and
a poll endpoint for widgets that cannot hold one.

Every tickets instance reads `tickets.events` as a broadcast (no consumer group, from the
newest record), so a reply reaches the widget whichever instance it is connected to; on
(re)connect the stream first replays what the widget has not seen (`Last-Event-ID`).
A widget reads its session with the chat token its first message was answered with
(`Authorization: Bearer <chat_token>`, or `?token=` where EventSource cannot send headers): the
token names the visitor who opened the session (shared/credentials.py). No token or a wrong one
→ 403; a session whose conversation is not filed (yet) → 404."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any

from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse

from services.tickets.delivery.service import DeliveryService
from services.tickets.domain import DeliveryState, Direction, Message, Ticket
from services.tickets.store import Purged, TicketStore
from services.tickets.views import load_ticket
from shared.credentials import ChatTokens
from shared.events import MessageSummary
from shared.http import ApiError

log = logging.getLogger(__name__)
QUEUE_BOUND = 256


class ChatHub:
    """The widgets connected to this instance, by ticket; replies are fanned out to them."""

    def __init__(self) -> None:
        self._listeners: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)

    @contextlib.contextmanager
    def listen(self, ticket_id: str) -> Iterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_BOUND)
        self._listeners[ticket_id].add(queue)
        try:
            yield queue
        finally:
            self._listeners[ticket_id].discard(queue)
            if not self._listeners[ticket_id]:
                del self._listeners[ticket_id]

    def publish(self, ticket_id: str, item: dict[str, Any]) -> int:
        reached = 0
        for queue in list(self._listeners.get(ticket_id, ())):
            with contextlib.suppress(asyncio.QueueFull):  # a stalled widget catches up on reconnect
                queue.put_nowait(item)
                reached += 1
        return reached

    @property
    def connected(self) -> int:
        return sum(len(q) for q in self._listeners.values())


def chat_item(message: Message | MessageSummary) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "direction": message.direction.value,
        "text": message.text,
        "html": getattr(message, "html", None),
        "author": message.author,
        "at": message.at.isoformat(),
    }


def _after(messages: list[Message], last_seen: str | None) -> list[Message]:
    ids = [m.message_id for m in messages]
    return messages[ids.index(last_seen) + 1 :] if last_seen in ids else messages


_background: set[asyncio.Task[None]] = set()


def background(work: Coroutine[Any, Any, None]) -> None:
    """Run `work` to the end even if the request that started it goes away."""
    task = asyncio.create_task(work)
    _background.add(task)
    task.add_done_callback(_background.discard)


def build_chat_router(
    hub: ChatHub, store: TicketStore, delivery: DeliveryService, tokens: ChatTokens, *, ping_s: float = 15.0
) -> APIRouter:
    router = APIRouter(prefix="/v1/chat", tags=["chat"])

    def visitor(request: Request, session_id: str, token: str | None, visitor_id: str | None) -> str:
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        offered = bearer.strip() if scheme.lower() == "bearer" and bearer.strip() else token
        if not offered:
            raise ApiError(403, "forbidden", "this needs the session's chat_token (Authorization: Bearer, or ?token=)")
        found = tokens.visitor_of(session_id, offered)
        if found is None or (visitor_id is not None and visitor_id != found):
            raise ApiError(403, "forbidden", "the chat_token is not valid for this session")
        return found

    async def session_ticket(session_id: str, visitor_id: str) -> Ticket:
        ticket_id = await store.thread_ticket(f"chat:{session_id}")
        ticket = None
        if ticket_id:
            with contextlib.suppress(Purged):
                ticket = await load_ticket(store, ticket_id)
        if ticket is None or f"chat:{visitor_id}" not in (*ticket.customer.identities, *ticket.customer.hints):
            raise ApiError(404, "not_found", "no such chat session")
        return ticket

    async def delivered(ticket_id: str, messages: list[Message], how: str) -> None:
        for m in messages:
            if m.direction == Direction.outbound and (
                m.delivery is None or m.delivery.state != DeliveryState.delivered
            ):
                try:
                    await delivery.mark_delivered(ticket_id, m.message_id, how)
                except Exception:  # the customer has it; recording that can wait for the next look
                    log.exception("could not record chat delivery of %s", m.message_id)

    @router.get("/sessions/{session_id}/messages", summary="The session's conversation (poll fallback)")
    async def poll(
        request: Request,
        session_id: str,
        token: str | None = Query(None, max_length=1000, description="the chat token (or Authorization)"),
        visitor_id: str | None = Query(None, max_length=200, description="optional; must match the token's"),
        after: str | None = Query(None, max_length=200, description="the last message id the widget has"),
    ) -> dict[str, Any]:
        ticket = await session_ticket(session_id, visitor(request, session_id, token, visitor_id))
        fresh = _after(ticket.messages, after)
        await delivered(ticket.id, fresh, "fetched by the chat widget")
        return {
            "session_id": session_id,
            "ticket_id": ticket.id,
            "status": ticket.status,
            "items": [chat_item(m) for m in fresh],
        }

    @router.get(
        "/sessions/{session_id}/stream",
        summary="Agents' replies as server-sent events",
        response_class=EventSourceResponse,
        responses={
            200: {
                "content": {"text/event-stream": {}},
                "description": "`event: message`, `id:` the message id, `data:` the message as JSON",
            }
        },
    )
    async def stream(
        request: Request,
        session_id: str,
        token: str | None = Query(None, max_length=1000, description="the chat token (EventSource)"),
        visitor_id: str | None = Query(None, max_length=200, description="optional; must match"),
        last_event_id: str | None = Header(None, max_length=200),
    ) -> EventSourceResponse:
        ticket = await session_ticket(session_id, visitor(request, session_id, token, visitor_id))

        async def events() -> AsyncIterator[dict[str, Any]]:
            with hub.listen(ticket.id) as live:
                # listening first, then reading the backlog: nothing falls in between
                current = await load_ticket(store, ticket.id) or ticket
                backlog = [m for m in _after(current.messages, last_event_id) if m.direction == Direction.outbound]
                seen = {m.message_id for m in current.messages}
                # recorded alongside the push, not after it: a widget that hangs up at once
                # (the generator is then cancelled at its next step) still got the message
                background(delivered(ticket.id, backlog, "pushed to the chat widget"))
                for m in backlog:
                    yield {"event": "message", "id": m.message_id, "data": chat_item(m)}
                while True:
                    item = await live.get()
                    if item["message_id"] in seen:
                        continue
                    seen.add(item["message_id"])
                    background(
                        delivered(
                            ticket.id,
                            [Message.model_validate({**item, "channel": ticket.channel})],
                            "pushed to the chat widget",
                        )
                    )
                    yield {"event": "message", "id": item["message_id"], "data": item}

        async def encoded() -> AsyncIterator[dict[str, Any]]:
            async for event in events():
                yield {**event, "data": json.dumps(event["data"], ensure_ascii=False)}

        return EventSourceResponse(encoded(), ping=ping_s)

    return router
