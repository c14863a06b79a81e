"""The inbound webhooks served without FastAPI's per-request machinery.

Every ingest endpoint reads its own body from a plain `Request` (services/ingest/bodies.py), so
FastAPI's per-request work — its OpenTelemetry check (environment lookups on every request),
five middlewares, route matching, dependency solving with its exit stacks, query parsing —
bought these endpoints nothing and cost about as much as a chat message's own handling
(py-spy; ~200 µs vs ~100 µs in-process). FastAPI still owns everything else: these routes stay
declared on its router, so the OpenAPI document is generated from them as before, and what is
not served here (`/healthz`, `/metrics`, `/docs`, a wrong method, a trailing slash, lifespan)
goes to it unchanged."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from shared.bodylimit import body_limit

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Any], Response | Awaitable[Response]]  # as Starlette keeps them: sync or async
Gate = Callable[[Scope], None]  # raises to refuse a request before anything reads it
log = logging.getLogger(__name__)


def _takes_only_the_request(route: APIRoute) -> bool:
    d = route.dependant
    return bool(d.request_param_name) and not (
        d.path_params or d.query_params or d.header_params or d.cookie_params or d.body_params or d.dependencies
    )


class DirectRoutes:
    """The ASGI app uvicorn serves: a request for one of `routes` goes straight to its endpoint,
    an error it raises to the FastAPI app's handler for it (an unexpected one is a 500, then
    raised for the server to log, as FastAPI's ServerErrorMiddleware does); anything else to
    `fastapi`. Its `state` and `openapi()` are the FastAPI app's. `gate` sees every HTTP request
    first, whichever way it goes (the per-address rate limit); what it raises is answered by the
    FastAPI app's handler for it, like an endpoint's error."""

    def __init__(self, fastapi: FastAPI, routes: Iterable[Any], *, gate: Gate | None = None) -> None:
        self.fastapi = fastapi
        self.gate = gate
        self.endpoints: dict[tuple[str, str], Endpoint] = {}
        for route in routes:
            if not isinstance(route, APIRoute):
                continue
            if not _takes_only_the_request(route):
                # it would get none of the parameters FastAPI resolves for it
                raise ValueError(f"{route.path} takes parameters besides the request: serve it through FastAPI")
            for method in route.methods or ():
                self.endpoints[(method, route.path)] = route.endpoint
            # each reads its own body with its own limit (bodies.read_body), also when FastAPI serves
            # it (a root_path): the agent/admin API's default limit (shared/bodylimit.py) is not theirs
            body_limit(None)(route.endpoint)
        self.handlers: Mapping[Any, Handler] = fastapi.exception_handlers  # the app's own: later additions count

    @property
    def state(self) -> State:
        return self.fastapi.state

    def openapi(self) -> dict[str, Any]:
        return self.fastapi.openapi()

    def _handler_for(self, exc: Exception) -> Handler | None:
        for cls in type(exc).__mro__:  # the nearest class with a handler, as Starlette looks them up
            if cls in self.handlers:
                return self.handlers[cls]
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.gate is not None:
            try:
                self.gate(scope)
            except Exception as exc:
                await self._refuse(scope, receive, send, exc)
                return
        if scope["type"] == "http" and not scope.get("root_path") and not self.fastapi.root_path:
            endpoint = self.endpoints.get((scope["method"], scope["path"]))
            if endpoint is not None:
                scope["app"] = self.fastapi
                try:
                    response = await endpoint(Request(scope, receive, send))
                except Exception as exc:
                    await self._refuse(scope, receive, send, exc)
                    return
                await response(scope, receive, send)
                return
        await self.fastapi(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        handler = self._handler_for(exc)
        if handler is None:
            await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send)
            raise exc
        scope["app"] = self.fastapi
        result = handler(Request(scope, receive, send), exc)
        response = result if isinstance(result, Response) else await result
        await response(scope, receive, send)
