"""Routing: assigns tickets to agents by skill, language, channel and free capacity."""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI

from services.routing import api
from services.routing.dispatch import Dispatcher
from services.routing.processor import RoutingProcessor
from services.routing.settings import RoutingSettings
from services.routing.store import RoutingStore
from shared import topics
from shared.events import RoutingDispatchRecord, SlaEventRecord, TicketCommandRecord, TicketEventRecord
from shared.http import create_http_app, require_token
from shared.runtime import Runtime


def create_app(settings: RoutingSettings | None = None) -> FastAPI:
    settings = settings or RoutingSettings()
    rt = Runtime("routing", settings)
    rt.publisher(
        topics.TICKETS_COMMANDS,
        schema=TicketCommandRecord,
        description="deskstream.command.assign_ticket: put an agent on a ticket; "
        "deskstream.command.apply_automation: rules, knowledge-base answers and escalations; "
        "key = ticket id",
    )
    rt.publisher(
        topics.ROUTING_DISPATCH,
        schema=RoutingDispatchRecord,
        description="Every change of who carries which ticket, for the dispatcher (one partition)",
    )
    store = RoutingStore(rt.storage)
    reader = RoutingProcessor(store=store, producer=rt.producer, source=rt.source)
    rt.stream(
        name="route",
        group_id=topics.GROUP_ROUTING,
        processor=reader,
        types=reader.handlers,
        inputs={topics.TICKETS_EVENTS: TicketEventRecord, topics.SLA_EVENTS: SlaEventRecord},
        description="Run automation rules and the knowledge base on new tickets; tell the dispatcher what "
        "needs an agent, what frees one, and SLA warnings and breaches to escalate",
    )
    dispatcher = Dispatcher(
        store=store,
        producer=rt.producer,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        source=rt.source,
        offline_grace_s=settings.offline_grace_s,
        hot=settings.hot_tickets,
    )
    dispatching = rt.stream(
        name="dispatch",
        group_id=topics.GROUP_ROUTING_DISPATCH,
        processor=dispatcher,
        types=dispatcher.handlers,
        inputs={topics.ROUTING_DISPATCH: RoutingDispatchRecord},
        description="Decide who carries which ticket, in order, in the one process that owns "
        "the partition: assignments, the queue, escalations, agents' presence",
    )

    async def tick() -> int:
        async with dispatching.exclusive():
            return await dispatcher.tick()

    async def publish_view() -> None:
        async with dispatching.exclusive():
            await dispatcher.publish_view()

    for what in store.SETTINGS:
        rt.on_settings_changed(what, partial(store.drop, what))
    rt.every(1.0, tick, "ticket(s) assigned from the queue or moved off offline agents")
    rt.every(0.1, publish_view, "")  # writes only when asked for, or changed and due
    return create_http_app(
        rt,
        title="deskstream routing",
        description="Agents, skills, capacity, presence and assignment; automation rules, "
        "the knowledge base and SLA escalations.",
        routers=[api.build_router(store, rt, require_token(rt))],
    )
