"""The analytics HTTP API: the summary and time series dashboards read, and the live dashboard page."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from services.analytics.service import SERIES, AnalyticsService, SeriesError
from shared.http import ApiError

STATIC = Path(__file__).resolve().parent / "static"
TIME_EXAMPLE = "2026-03-27T00:00:00Z"
# the page runs only its own script and style and talks only to this service: even if ticket
# data carried markup, nothing from it could run (the script also writes text, never HTML)
DASHBOARD_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

Metric = Literal["tickets_created", "first_response_seconds", "resolution_seconds", "sla_compliance"]
Dimension = Literal["none", "channel", "priority", "tag", "agent", "target", "policy"]


# ---------------------------------------------------------------- response shapes (for the OpenAPI document)


class Distribution(BaseModel):
    count: int
    mean_s: float | None
    p50_s: float | None
    p90_s: float | None
    p99_s: float | None


class SlaCompliance(BaseModel):
    target: str
    policy_id: str
    met: int
    breached: int
    warned: int
    compliance: float | None = Field(description="met / (met + breached); null before any outcome")


class Backlog(BaseModel):
    total: int
    by_status: dict[str, int]
    by_age: dict[str, int] = Field(description="time since creation: 0-1h, 1-4h, 4-24h, 1-3d, 3-7d, 7d+")
    oldest_age_s: int | None


class AgentRow(BaseModel):
    agent_id: str
    handled: int = Field(description="tickets ever assigned to the agent")
    open: int = Field(description="tickets assigned now and still owed work")
    first_responses: int
    first_response_mean_s: float | None
    resolved: int
    reopened: int = Field(description="resolutions of the agent's that the ticket came back from")
    reopen_rate: float | None


class TagCount(BaseModel):
    tag: str
    tickets: int


class Window(BaseModel):
    start: datetime | None = Field(None, alias="from")
    to: datetime | None
    days: int


class Last24h(BaseModel):
    tickets_created: int
    by_channel: dict[str, int]


class CsatNumbers(BaseModel):
    responses: int = Field(description="customers' answers to confirmation requests (the latest per request)")
    satisfied: int = Field(description="of those, rated 4 or 5")
    satisfied_pct: float | None = Field(description="CSAT %: ratings of 4-5 of all ratings; null before any")
    solved: int = Field(description="of those, the customer said it was solved")
    mean_rating: float | None = None


class Csat(CsatNumbers):
    by_agent: dict[str, CsatNumbers] = Field(default_factory=dict, description="by the agent who resolved it")
    by_channel: dict[str, CsatNumbers] = Field(default_factory=dict)
    by_team: dict[str, CsatNumbers] = Field(default_factory=dict, description="`none`: tickets of no team")


class Summary(BaseModel):
    as_of: datetime | None = Field(description="when these numbers were read; null before the first read")
    tickets_total: int
    tickets_by_channel: dict[str, int]
    channel_mix: dict[str, float | None]
    tickets_by_status: dict[str, int]
    last_24h: Last24h
    sla: dict[str, dict[str, int]] = Field(description="target → warning / breached / met counts")
    sla_compliance: list[SlaCompliance]
    backlog: Backlog
    window: Window = Field(description="the period first_response, resolution and top_tags cover")
    first_response: Distribution = Field(description="seconds from creation to the first reply, in the window")
    resolution: Distribution = Field(description="seconds from creation to the first resolution, in the window")
    agents: list[AgentRow]
    top_tags: list[TagCount] = Field(description="tickets created in the window per tag, most frequent first")
    csat: Csat = Field(description="customer satisfaction from the answers to confirmation requests")


class Series(BaseModel):
    key: str = Field(description="the dimension's value; 'all' when not split")
    total: int
    values: list[int | float | None] = Field(description="per bucket: a count, the median seconds, or a ratio")
    p90: list[float | None] | None = None
    count: list[int] | None = None
    met: list[int] | None = None
    breached: list[int] | None = None


class SeriesAnswer(BaseModel):
    metric: str
    dimension: str
    bucket: str
    start: datetime = Field(alias="from")
    to: datetime
    unit: str
    buckets: list[datetime] = Field(description="the start of each bucket (UTC)")
    series: list[Series]


def parse_time(name: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    # an unescaped '+' in a query string arrives as a space: "…T18:00:00 03:00" meant "+03:00"
    text = re.sub(r" (\d{2}:?\d{2})$", r"+\1", text.strip())
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(422, "invalid_time", f"'{name}' is not an ISO 8601 date and time, e.g. {TIME_EXAMPLE}") from None
    if moment.tzinfo is None:
        raise ApiError(422, "invalid_time", f"'{name}' has no time zone: add Z or a UTC offset, e.g. {TIME_EXAMPLE}")
    return moment


def build_router(service: AnalyticsService, static_dir: Path = STATIC) -> APIRouter:
    router = APIRouter(tags=["analytics"])
    # read once, at start: a missing file fails the service at once, not a support lead's page later
    page = {name: (static_dir / name).read_bytes() for name in ("dashboard.html", "dashboard.js", "dashboard.css")}

    @router.get(
        "/v1/summary", summary="Headline numbers for dashboards", response_model=Summary, response_model_by_alias=True
    )
    async def summary() -> dict[str, Any]:
        return service.summary()

    @router.get(
        "/v1/series",
        summary="A metric per hour or day, split by a dimension",
        response_model=SeriesAnswer,
        response_model_by_alias=True,
        response_model_exclude_none=True,
        description="Metrics and their dimensions: "
        + "; ".join(f"`{m}` by {', '.join(d)}" for m, d in SERIES.items())
        + ". `from` and `to` are ISO 8601 with a time zone (default: the last 24 hours, or 30 days by day); "
        "buckets are UTC hours or days, `to` exclusive.",
    )
    async def series(
        metric: Metric,
        dimension: Dimension = "none",
        bucket: Literal["hour", "day"] = "hour",
        start: Annotated[str | None, Query(alias="from", examples=[TIME_EXAMPLE])] = None,
        end: Annotated[str | None, Query(alias="to", examples=["2026-03-28T00:00:00Z"])] = None,
    ) -> dict[str, Any]:
        try:
            return await service.series(
                metric=metric,
                dimension=dimension,
                bucket=bucket,
                start=parse_time("from", start),
                end=parse_time("to", end),
            )
        except SeriesError as exc:
            raise ApiError(422, exc.code, str(exc)) from None

    def asset(name: str, media_type: str) -> Response:
        return Response(
            page[name],
            media_type=media_type,
            headers={
                "Content-Security-Policy": DASHBOARD_CSP,
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-cache",
            },
        )

    @router.get("/dashboard", summary="A live page for support leads", response_class=Response)
    async def dashboard() -> Response:
        return asset("dashboard.html", "text/html; charset=utf-8")

    @router.get("/dashboard/app.js", include_in_schema=False)
    async def dashboard_js() -> Response:
        return asset("dashboard.js", "text/javascript; charset=utf-8")

    @router.get("/dashboard/app.css", include_in_schema=False)
    async def dashboard_css() -> Response:
        return asset("dashboard.css", "text/css; charset=utf-8")

    return router
