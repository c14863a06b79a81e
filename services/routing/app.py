"""Routing: assigns tickets to agents by skill, language, channel and free capacity."""
from __future__ import annotations

from fastapi import FastAPI

from services.routing import api, handlers
from services.routing.service import RoutingService
from services.routing.settings import RoutingSettings
from services.routing.store import RoutingStore
from shared import topics
from shared.events import TicketCommandRecord
from shared.http import create_http_app, require_token
from shared.runtime import Runtime


def create_app(settings: RoutingSettings | None = None) -> FastAPI:
    settings = settings or RoutingSettings()
    rt = Runtime("routing", settings)
    rt.publisher(topics.TICKETS_COMMANDS, schema=TicketCommandRecord,
                 description="deskstream.command.assign_ticket: put an agent on a ticket; "
                             "deskstream.command.apply_automation: rules, knowledge-base answers and escalations; "
                             "key = ticket id")
    store = RoutingStore(rt.mongo)
    service = RoutingService(store=store, publish=rt.publish, source=rt.source,
                             offline_grace_s=settings.offline_grace_s)
    rt.broker.include_router(handlers.build_router(service))
    rt.on_start.append(store.ensure_indexes)
    rt.loops.append(service.run_drainer)
    rt.every(2.0, service.reroute_offline, "ticket(s) of offline agents re-routed")
    rt.every(settings.queue_sweep_s, service.drain_if_waiting, "queued ticket(s) assigned (shifts began)")
    rt.every(settings.reconcile_s, service.reconcile, "slot(s) and load(s) healed")
    return create_http_app(rt, title="deskstream routing",
                           description="Agents, skills, capacity, presence and assignment; automation rules, "
                                       "the knowledge base and SLA escalations.",
                           routers=[api.build_router(service, store, require_token(rt))])
