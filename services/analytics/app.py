"""Analytics: turns ticket and SLA events into the numbers support leads and dashboards read."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import Gauge

from services.analytics import api
from services.analytics.service import AnalyticsService
from services.analytics.settings import AnalyticsSettings
from services.analytics.store import AnalyticsStore
from shared import topics
from shared.events import SlaEventRecord, TicketEventRecord
from shared.http import create_http_app
from shared.runtime import Runtime


def create_app(settings: AnalyticsSettings | None = None) -> FastAPI:
    settings = settings or AnalyticsSettings()
    rt = Runtime("analytics", settings)
    store = AnalyticsStore(rt.storage)
    service = AnalyticsService(
        store=store,
        refresh_s=settings.refresh_s,
        min_refresh_s=settings.min_refresh_s,
        window_days=settings.window_days,
        instance=settings.instance,
    )
    service.register_metrics(rt.telemetry.registry)
    reader = rt.replica(
        name="count",
        processor=service,
        inputs={topics.TICKETS_EVENTS: TicketEventRecord, topics.SLA_EVENTS: SlaEventRecord},
        description="Every ticket and SLA event, read whole by every analytics instance, into the numbers it serves",
    )
    Gauge(
        "deskstream_analytics_lag_records",
        "Events on the topics this instance has not counted yet",
        registry=rt.telemetry.registry,
    ).set_function(lambda: reader.lag)

    async def snapshot() -> int:
        if not reader.ready.is_set():
            return 0  # still replaying: a snapshot now would only slow that down
        async with reader.exclusive():
            return await service.snapshot()

    rt.loops.append(service.refresh_forever)
    rt.every(settings.snapshot_s, snapshot, "")
    return create_http_app(
        rt,
        title="deskstream analytics",
        description="Metrics, the summary API and the dashboard.",
        routers=[api.build_router(service)],
    )
