"""HTTP plumbing every service shares: the FastAPI app around a Runtime, `/healthz`,
`/metrics`, JSON errors (`{"error": {"code", "message"}}`) and bearer-token auth."""
from __future__ import annotations

import secrets
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


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def require_token(rt: Runtime):
    """Dependency for agent and admin endpoints: `Authorization: Bearer <DESKSTREAM_API_TOKEN>`."""
    expected = rt.settings.api_token.get_secret_value() if rt.settings.api_token else None

    async def check(request: Request) -> None:
        if expected is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "unauthorized", "missing bearer token")
        if not secrets.compare_digest(token.strip().encode(), expected.encode()):
            raise ApiError(401, "unauthorized", "invalid bearer token")

    return Depends(check)


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
        return JSONResponse({"service": rt.service, "status": "ok" if ok else "unavailable", "checks": checks},
                            status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"])
    async def metrics() -> Response:
        return Response(rt.telemetry.exposition(), media_type=PROMETHEUS_CONTENT_TYPE)

    for router in routers:
        app.include_router(router)
    return app


def serve(app: FastAPI, *, host: str, port: int, log_level: str = "info") -> None:
    """Run one service process until SIGTERM/SIGINT (uvicorn shuts the lifespan down cleanly)."""
    uvicorn.run(app, host=host, port=port, log_level=log_level.lower(), access_log=False,
                lifespan="on", timeout_graceful_shutdown=10)
