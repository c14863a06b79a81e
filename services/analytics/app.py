"""Analytics: turns ticket and SLA events into the numbers support leads and dashboards read."""
from __future__ import annotations

from fastapi import FastAPI

from services.analytics import api, handlers
from services.analytics.service import AnalyticsService
from services.analytics.settings import AnalyticsSettings
from services.analytics.store import AnalyticsStore
from shared.http import create_http_app
from shared.runtime import Runtime


def create_app(settings: AnalyticsSettings | None = None) -> FastAPI:
    settings = settings or AnalyticsSettings()
    rt = Runtime("analytics", settings)
    store = AnalyticsStore(rt.mongo)
    service = AnalyticsService(store=store, refresh_s=settings.refresh_s, min_refresh_s=settings.min_refresh_s,
                               window_days=settings.window_days)
    service.register_metrics(rt.telemetry.registry)
    rt.broker.include_router(handlers.build_router(service))
    rt.on_start.append(service.load)  # the numbers are in memory before the first event is consumed
    rt.loops.append(service.refresh_forever)
    return create_http_app(rt, title="deskstream analytics",
                           description="Metrics, the summary API and the dashboard.",
                           routers=[api.build_router(service)])
