"""SLA: watches every ticket's clocks and emits warnings, breaches and met targets on `sla.events`."""
from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import Gauge, Histogram

from services.sla import api, handlers
from services.sla.decisions import SlaClaims
from services.sla.domain import Policy
from services.sla.service import SlaService
from services.sla.settings import SlaSettings
from services.sla.store import SlaStore
from shared import topics
from shared.events import SlaEventRecord
from shared.http import create_http_app, require_token
from shared.runtime import Runtime


def create_app(settings: SlaSettings | None = None) -> FastAPI:
    settings = settings or SlaSettings()
    rt = Runtime("sla", settings)
    rt.publisher(topics.SLA_EVENTS, schema=SlaEventRecord,
                 description="deskstream.sla.warning / breached / met, key = ticket id")
    store = SlaStore(rt.mongo)
    default = Policy(name="Default: first response within six hours",
                     first_response_s=settings.default_first_response_s,
                     warn_before_s=settings.default_warn_before_s, order=100_000)
    claims = SlaClaims(store.decisions, store.sent, rt.publish)
    service = SlaService(store=store, claims=claims, source=rt.source, default_policy=default,
                         max_sleep_s=settings.scheduler_max_sleep_s)
    registry = rt.telemetry.registry
    Gauge("deskstream_sla_timers", "Running SLA clocks this process holds and fires",
          registry=registry).set_function(lambda: len(service.book.due))
    Gauge("deskstream_sla_loading", "1 while the clocks of newly assigned partitions are being loaded",
          registry=registry).set_function(lambda: 0 if service.ready.is_set() else 1)
    lag = Histogram("deskstream_sla_fire_lag_seconds", "From a clock's warning or due time to its event",
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=registry)
    service.observe_lag = lag.observe
    rt.broker.include_router(handlers.build_router(service))
    rt.on_start += [store.ensure_indexes, store.move_unsharded_clocks, service.install_default_policy]
    rt.loops.append(service.run_scheduler)
    rt.every(2.0, claims.sweep_once, "SLA event(s) not published at first sent")
    return create_http_app(rt, title="deskstream sla",
                           description="SLA policies, clocks, warnings and breaches.",
                           routers=[api.build_router(service, store, require_token(rt))])
