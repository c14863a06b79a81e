"""HTTP plumbing every service shares: the FastAPI app around a Runtime, `/healthz`,
`/metrics`, JSON errors (`{"error": {"code", "message"}}`) and bearer-token auth."""

from __future__ import annotations

import gc
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import State
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from shared.bodylimit import DEFAULT_MAX_BODY_BYTES, BodyLimit
from shared.credentials import TOKEN_PREFIX, AgentTokens, Principal, check_start, secret_of
from shared.runtime import Runtime
from shared.telemetry import PROMETHEUS_CONTENT_TYPE

VERSION = "0.1.0"


class ApiError(Exception):
    """An error a client caused or should know about, answered as JSON with `status`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


MAX_ID_LENGTH = 200


def check_id(value: str, what: str) -> None:
    """Ids an admin chooses (agents, rules, policies, calendars): 1 to 200 characters."""
    if not value or len(value) > MAX_ID_LENGTH:
        raise ApiError(400, f"invalid_{what}_id", f"{what} ids are 1 to {MAX_ID_LENGTH} characters")


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


class Auth:
    """Bearer-token roles for agent and admin endpoints (shared/credentials.py).

    `DESKSTREAM_API_TOKEN` is the admin token (it may do everything). A personal agent token (created by
    an admin, `POST /v1/agents/{agent_id}/tokens` on tickets) may do what agents do — read, answer,
    change tickets, set its own presence — and acts as its agent: `acting()` refuses a body naming
    someone else. The shared `DESKSTREAM_AGENT_TOKEN`, when set, may do what agents do too, acting as
    whoever the body names (actor `agent-token` when it names none), as before personal tokens.
    Neither may do what admins do (configure agents, rules, SLA policies and calendars; purge; erase;
    merge customers). Without an admin token (only with DESKSTREAM_INSECURE_DEV=1, checked at start)
    the endpoints are open."""

    def __init__(self, rt: Runtime) -> None:
        settings = rt.settings
        self.admin_token = secret_of(settings.api_token) or None
        self.agent_token = secret_of(getattr(settings, "agent_token", None)) or None
        mongo = getattr(rt, "mongo", None)
        self.tokens = AgentTokens(mongo) if mongo is not None else None
        self.agent = Depends(self._check("agent"))
        self.admin = Depends(self._check("admin"))

    async def principal_of(self, token: str) -> Principal | None:
        if self.admin_token and secrets.compare_digest(token.encode(), self.admin_token.encode()):
            return ADMIN
        if self.agent_token and secrets.compare_digest(token.encode(), self.agent_token.encode()):
            return SHARED_AGENT
        if self.tokens is not None and token.startswith(TOKEN_PREFIX):
            try:
                return await self.tokens.check(token)
            except Exception as exc:
                raise ApiError(503, "unavailable", "credentials cannot be checked right now") from exc
        return None

    def _check(self, needed: str) -> Callable[[Request], Awaitable[None]]:
        async def check(request: Request) -> None:
            if self.admin_token is None:
                request.state.principal = ADMIN
                return
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise ApiError(401, "unauthorized", "missing bearer token")
            principal = await self.principal_of(token.strip())
            if principal is None:
                raise ApiError(401, "unauthorized", "invalid bearer token")
            if needed == "admin" and principal.role != "admin":
                raise ApiError(403, "forbidden", "this needs the admin token")
            request.state.principal = principal

        return check


ADMIN = Principal("admin")
SHARED_AGENT = Principal("agent")


def principal(request: Request) -> Principal:
    """Who the request acts as (set by the route's auth dependency); a FastAPI dependency."""
    return getattr(request.state, "principal", ADMIN)


def acting(who: Principal, claimed: str | None, *, default: str) -> str:
    """The agent a change is recorded as: a personal token's own agent (a body naming another → 403),
    else whoever the body names, else `default` (`agent-token` for the shared agent token)."""
    if who.personal:
        if claimed and claimed != who.agent_id:
            raise ApiError(403, "forbidden", f"this token acts as agent {who.agent_id}, not {claimed}")
        return str(who.agent_id)
    if who is SHARED_AGENT:
        return claimed or "agent-token"
    return claimed or default


def require_token(rt: Runtime) -> Auth:
    return Auth(rt)


def create_http_app(
    rt: Runtime, *, title: str, description: str, routers: list[APIRouter], max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await rt.start()
        try:
            yield
        finally:
            await rt.stop()

    app = FastAPI(title=title, description=description, version=VERSION, lifespan=lifespan)
    app.state.runtime = rt
    # every endpoint: 413 before a body over its limit is read (shared/bodylimit.py)
    app.add_middleware(BodyLimit, default=max_body_bytes)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
        return JSONResponse(error_body("invalid_request", "the request is not valid", details=details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> JSONResponse:
        checks = await rt.ready()
        ok = all(checks.values())
        return JSONResponse(
            {
                "service": rt.service,
                "instance": rt.settings.instance,
                "status": "ok" if ok else "unavailable",
                "checks": checks,
            },
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", tags=["operations"])
    async def metrics() -> Response:
        return Response(rt.telemetry.exposition(), media_type=PROMETHEUS_CONTENT_TYPE)

    for router in routers:
        app.include_router(router)
    return app


def listening(host: str, port: int, *, shared: bool) -> socket.socket:
    """A listening socket; `shared`: other processes of the same service listen on the same port
    (SO_REUSEPORT: the kernel spreads the connections over them)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class Servable(Protocol):
    """What `serve` runs: an ASGI app with the FastAPI app's `state` (the app, or ingest's DirectRoutes)."""

    @property
    def state(self) -> State: ...

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


KEEP_ALIVE_S = 75


def serve(app: Servable, *, host: str, port: int, log_level: str = "info", instance_port: int | None = None) -> None:
    """Run one service process until SIGTERM/SIGINT (uvicorn shuts the lifespan down cleanly): on the
    service's port, shared with its other instances, and on `instance_port`, its own, when given.
    A process whose API token would leave it open exits first, saying why (shared/credentials.py)."""
    check_start(app.state.runtime.settings)
    gc.freeze()  # what start-up made stays (shared/boot.py turned the collector off for it)
    gc.enable()
    config = uvicorn.Config(
        app,
        log_level=log_level.lower(),
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
        # an idle keep-alive connection is closed only after this: a client (or a load balancer) that
        # sends on one just as the server closes it gets a reset and no answer (the "unanswered" requests
        # of the bench's open loop were exactly that, at uvicorn's default of 5 s). Longer than the idle
        # timeout of common load balancers (60 s), as their guides ask of the servers behind them.
        timeout_keep_alive=KEEP_ALIVE_S,
        loop="uvloop",
        http="httptools",
    )
    sockets = [listening(host, port, shared=True)]
    instance_port = instance_port or int(os.environ.get("DESKSTREAM_INSTANCE_PORT") or 0)  # (until ingest passes it)
    if instance_port:
        sockets.append(listening(host, instance_port, shared=False))
    uvicorn.Server(config).run(sockets=sockets)
