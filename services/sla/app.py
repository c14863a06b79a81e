"""SLA: watches every ticket's clocks and emits warnings, breaches and met targets on `sla.events`."""
from __future__ import annotations

from fastapi import FastAPI

from services.sla import api, handlers
from services.sla.domain import Policy
from services.sla.service import SlaService
from services.sla.settings import SlaSettings
from services.sla.store import SlaStore
from shared import topics
from shared.events import CloudEvent
from shared.http import create_http_app, require_token
from shared.outbox import Outbox
from shared.runtime import Runtime


def create_app(settings: SlaSettings | None = None) -> FastAPI:
    settings = settings or SlaSettings()
    rt = Runtime("sla", settings)
    rt.publisher(topics.SLA_EVENTS, schema=CloudEvent,
                 description="deskstream.sla.warning / breached / met, key = ticket id")
    store = SlaStore(rt.mongo)
    default = Policy(name="Default: first response within six hours",
                     first_response_s=settings.default_first_response_s,
                     warn_before_s=settings.default_warn_before_s, order=100_000)
    service = SlaService(store=store, outbox=Outbox(store.clocks, rt.publish), source=rt.source,
                         default_policy=default, lease_s=settings.lease_s,
                         max_sleep_s=settings.scheduler_max_sleep_s)
    rt.broker.include_router(handlers.build_router(service))
    rt.on_start += [store.ensure_indexes, service.install_default_policy]
    rt.loops += [service.run_scheduler, service.outbox.sweep_forever]
    return create_http_app(rt, title="deskstream sla",
                           description="SLA policies, clocks, warnings and breaches.",
                           routers=[api.build_router(service, store, require_token(rt))])
