"""SLA: watches every ticket's clocks and emits warnings, breaches and met targets on `sla.events`."""
from __future__ import annotations

from fastapi import FastAPI

from services.sla import api, handlers
from services.sla.domain import Policy
from services.sla.service import SlaService
from services.sla.settings import SlaSettings
from services.sla.store import SlaStore
from shared import topics
from shared.events import SlaEventRecord
from shared.http import create_http_app, require_token
from shared.outbox import EventClaims
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
    claims = EventClaims(store.decisions, rt.publish)
    service = SlaService(store=store, claims=claims, source=rt.source, default_policy=default,
                         max_sleep_s=settings.scheduler_max_sleep_s)
    rt.broker.include_router(handlers.build_router(service))
    rt.on_start += [store.ensure_indexes, service.install_default_policy]
    rt.loops.append(service.run_scheduler)
    rt.every(2.0, claims.sweep_once, "SLA event(s) left by an earlier crash re-sent")
    return create_http_app(rt, title="deskstream sla",
                           description="SLA policies, clocks, warnings and breaches.",
                           routers=[api.build_router(service, store, require_token(rt))])
