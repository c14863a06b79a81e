"""HTTP plumbing every service shares: the FastAPI app around a Runtime, `/healthz`,
`/metrics`, JSON errors (`{"error": {"code", "message"}}`) and bearer-token auth."""
from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

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
    """Bearer-token roles for agent and admin endpoints. `DESKSTREAM_API_TOKEN` is the admin
    token (it may do everything); `DESKSTREAM_AGENT_TOKEN`, when set, may do what agents do
    (read, answer, change tickets) but not what admins do (configure agents, rules, SLA
    policies and calendars; purge; merge customers). With no admin token set the
    endpoints are open (development; a warning is logged at start)."""

    def __init__(self, rt: Runtime) -> None:
        settings = rt.settings
        self.admin_token = settings.api_token.get_secret_value() if settings.api_token else None
        self.agent_token = settings.agent_token.get_secret_value() if settings.agent_token else None
        self.agent = Depends(self._check("agent"))
        self.admin = Depends(self._check("admin"))

    def _role_of(self, token: str) -> str | None:
        if self.admin_token and secrets.compare_digest(token.encode(), self.admin_token.encode()):
            return "admin"
        if self.agent_token and secrets.compare_digest(token.encode(), self.agent_token.encode()):
            return "agent"
        return None

    def _check(self, needed: str):
        async def check(request: Request) -> None:
            if self.admin_token is None:
                return
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise ApiError(401, "unauthorized", "missing bearer token")
            role = self._role_of(token.strip())
            if role is None:
                raise ApiError(401, "unauthorized", "invalid bearer token")
            if needed == "admin" and role != "admin":
                raise ApiError(403, "forbidden", "this needs the admin token")

        return check


def require_token(rt: Runtime) -> Auth:
    return Auth(rt)


def create_http_app(rt: Runtime, *, title: str, description: str,
                    routers: list[APIRouter]) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await rt.start()
        try:
            yield
        finally:
            await rt.stop()

    app = FastAPI(title=title, description=description, version=VERSION, lifespan=lifespan)
    app.state.runtime = rt

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
        return JSONResponse(error_body("invalid_request", "the request is not valid", details=details),
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> JSONResponse:
        checks = await rt.ready()
        ok = all(checks.values())
        return JSONResponse({"service": rt.service, "instance": rt.settings.instance,
                             "status": "ok" if ok else "unavailable", "checks": checks},
                            status_code=200 if ok else 503)

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


def serve(app: FastAPI, *, host: str, port: int, log_level: str = "info", instance_port: int | None = None) -> None:
    """Run one service process until SIGTERM/SIGINT (uvicorn shuts the lifespan down cleanly): on the
    service's port, shared with its other instances, and on `instance_port`, its own, when given."""
    config = uvicorn.Config(app, log_level=log_level.lower(), access_log=False, lifespan="on",
                            timeout_graceful_shutdown=10, loop="uvloop", http="httptools")
    sockets = [listening(host, port, shared=True)]
    instance_port = instance_port or int(os.environ.get("DESKSTREAM_INSTANCE_PORT") or 0)  # (until ingest passes it)
    if instance_port:
        sockets.append(listening(host, instance_port, shared=False))
    uvicorn.Server(config).run(sockets=sockets)
