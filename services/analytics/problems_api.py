"""The recurring problems' HTTP API (GET /v1/problems, /v1/problems/{id}) and their Prometheus gauges."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import BaseModel, Field

from services.analytics.recurring import SimilarTickets
from shared.http import ApiError

TOP = 5  # problems the metrics name (bounded labels)


class ProblemView(BaseModel):
    id: str
    label: str = Field(description="generated: the product (code and name) and the kind of fault")
    product: str = Field(description="the product code (SKU) the messages give, or the product they name")
    fault: str = Field(description="not_working, leaking, damaged, late_delivery, wrong_item, missing, …")
    tickets: int = Field(description="tickets in the window")
    tickets_today: int = Field(description="of which created in the last 24 hours")
    customers: int
    ticket_ids: list[str] = Field(description="a sample (the latest 10) in the list; all of them for one problem")
    first_seen: datetime
    last_seen: datetime
    channels: list[str]
    languages: list[str]
    products: list[str] = Field(description="the products the messages name")
    skus: list[str]
    order_ids: list[str]
    detected: bool = Field(description="it passed the threshold and deskstream.problem.detected was sent")


class Problems(BaseModel):
    problems: list[ProblemView]


def build_router(similar: SimilarTickets) -> APIRouter:
    router = APIRouter(tags=["problems"])

    @router.get(
        "/v1/problems",
        summary="Recurring problems: tickets of different customers about one product and fault",
        response_model=Problems,
        description="Active problems of the sliding window (7 days by default), most tickets first: a problem is "
        "listed once it has 3 tickets of at least 2 customers. Built live from ticket events.",
    )
    async def problems() -> dict[str, Any]:
        return {"problems": similar.listing()}

    @router.get(
        "/v1/problems/{problem_id}", summary="One recurring problem with all its tickets", response_model=ProblemView
    )
    async def problem(problem_id: str) -> dict[str, Any]:
        found = similar.problem(problem_id)
        if found is None:
            raise ApiError(404, "not_found", f"problem {problem_id} is not an active problem")
        return found

    return router


class _ProblemsCollector:
    def __init__(self, similar: SimilarTickets) -> None:
        self.similar = similar

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[Metric]:
        top = GaugeMetricFamily(
            "deskstream_problem_tickets_today",
            f"Tickets created in the last 24 hours of the {TOP} recurring problems with most of them",
            labels=["problem", "label"],
        )
        for view in self.similar.top_today(TOP):
            top.add_metric([view["id"], view["label"]], view["tickets_today"])
        yield top
        active = GaugeMetricFamily("deskstream_problems_active", "Recurring problems listed now")
        active.add_metric([], len(self.similar.problems.active()))
        yield active
        suspected = CounterMetricFamily(
            "deskstream_duplicates_suspected", "New tickets this instance marked as a likely duplicate since it started"
        )
        suspected.add_metric([], self.similar.suspected)
        yield suspected


def register_metrics(similar: SimilarTickets, registry: CollectorRegistry) -> None:
    registry.register(_ProblemsCollector(similar))
