"""The inbound webhooks served without FastAPI's per-request machinery.

Every ingest endpoint reads its own body from a plain `Request` (services/ingest/bodies.py), so
FastAPI's dependency solving, its exit stacks, query-parameter parsing and route matching
bought nothing but cost ~0.2 ms a request (py-spy: more than the endpoint's own work for a
chat message). FastAPI still owns everything else: these routes stay declared on its router,
so the OpenAPI document is generated from them as before, and paths and methods not served
here (`/healthz`, `/metrics`, `/docs`, a wrong method, a trailing slash) fall through to it."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Exception], Awaitable[Response]]


def _takes_only_the_request(route: APIRoute) -> bool:
    d = route.dependant
    return bool(d.request_param_name) and not (d.path_params or d.query_params or d.header_params
                                                or d.cookie_params or d.body_params or d.dependencies)


class DirectRoutes:
    """ASGI middleware: a request for one of `routes` goes straight to its endpoint, and an error
    it raises to the app's handler for it. Added with `app.add_middleware`, so it runs inside
    FastAPI's ServerErrorMiddleware: an unexpected error is still a logged 500, as before."""

    def __init__(self, app: ASGIApp, *, routes: Iterable[Any], exception_handlers: Mapping[Any, Handler]) -> None:
        self.app = app
        self.endpoints: dict[tuple[str, str], Endpoint] = {}
        for route in routes:
            if not isinstance(route, APIRoute):
                continue
            if not _takes_only_the_request(route):
                # it would get none of the parameters FastAPI resolves for it
                raise ValueError(f"{route.path} takes parameters besides the request: serve it through FastAPI")
            for method in route.methods:
                self.endpoints[(method, route.path)] = route.endpoint
        self.handlers = exception_handlers  # the app's own dict: handlers added later are seen too

    def _handler_for(self, exc: Exception) -> Handler | None:
        for cls in type(exc).__mro__:  # the nearest class with a handler, as Starlette looks them up
            if cls in self.handlers:
                return self.handlers[cls]
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            endpoint = self.endpoints.get((scope["method"], scope["path"]))
            if endpoint is not None:
                request = Request(scope, receive, send)
                try:
                    response = await endpoint(request)
                except Exception as exc:
                    handler = self._handler_for(exc)
                    if handler is None:
                        raise
                    response = await handler(request, exc)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
