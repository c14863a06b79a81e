"""The request-body size limit of every HTTP endpoint: 413 before a body too big is read into memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# what no agent or admin request comes near (a reply's text, a rule, a calendar, a bulk change
# of a thousand tickets are tens of KB at most); endpoints that take more say so with body_limit
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
_MARK = "max_body_bytes"
F = TypeVar("F", bound=Callable[..., Any])


def body_limit(max_bytes: int | None) -> Callable[[F], F]:
    """Gives an endpoint its own limit instead of the default: a larger one (a reply carrying
    attachments), or None for one that reads and limits its body itself (the inbound doors)."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, _MARK, max_bytes)
        return endpoint

    return mark


class BodyTooLarge(HTTPException):
    """Raised where the endpoint reads its body; answered 413 with the JSON error like any HTTPException."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is larger than this endpoint takes ({limit} bytes)")


class BodyLimit:
    """ASGI middleware: an endpoint that reads its body gets `BodyTooLarge` instead of the first
    byte when the request says it is longer than the endpoint's limit (Content-Length), or as
    soon as the bytes streamed in pass it (chunked, or more than it said). Nothing is buffered
    here, and an endpoint that reads no body costs nothing.

    The limit is looked up when the body is first read: routing has put the endpoint in the
    scope by then (Starlette's `scope["endpoint"]`), whatever routers are nested."""

    def __init__(self, app: ASGIApp, *, default: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.default = default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit: int | object | None = _UNKNOWN
        received = 0

        async def counted() -> Message:
            nonlocal limit, received
            if limit is _UNKNOWN:
                limit = getattr(scope.get("endpoint"), _MARK, self.default)
                declared = _content_length(scope)
                if isinstance(limit, int) and declared is not None and declared > limit:
                    raise BodyTooLarge(limit)
            message = await receive()
            if isinstance(limit, int) and message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


_UNKNOWN = object()


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
