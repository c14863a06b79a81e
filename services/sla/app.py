"""SLA: watches every ticket's clocks and emits warnings, breaches and met targets on `sla.events`."""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI
from prometheus_client import Gauge, Histogram

from services.sla import api
from services.sla.domain import Policy
from services.sla.service import SlaService
from services.sla.settings import SlaSettings
from services.sla.store import SlaStore
from shared import topics
from shared.events import SlaEventRecord, TicketEventRecord
from shared.http import create_http_app, require_token
from shared.runtime import Runtime


def create_app(settings: SlaSettings | None = None) -> FastAPI:
    settings = settings or SlaSettings()
    rt = Runtime("sla", settings)
    rt.publisher(
        topics.SLA_EVENTS, schema=SlaEventRecord, description="deskstream.sla.warning / breached / met, key = ticket id"
    )
    store = SlaStore(rt.storage)
    default = Policy(
        name="Default: first response within six hours",
        first_response_s=settings.default_first_response_s,
        warn_before_s=settings.default_warn_before_s,
        order=100_000,
    )
    service = SlaService(
        store=store,
        producer=rt.producer,
        source=rt.source,
        default_policy=default,
        max_sleep_s=settings.scheduler_max_sleep_s,
        hot_clocks=settings.hot_clocks,
    )
    registry = rt.telemetry.registry
    Gauge("deskstream_sla_timers", "Running SLA clocks this process holds and fires", registry=registry).set_function(
        lambda: len(service.book.due)
    )
    lag = Histogram(
        "deskstream_sla_fire_lag_seconds",
        "From a clock's warning or due time to its event",
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        registry=registry,
    )
    service.observe_lag = lag.observe
    clocks = rt.stream(
        name="clock",
        group_id=topics.GROUP_SLA,
        processor=service,
        types=service.handlers,
        inputs={topics.TICKETS_EVENTS: TicketEventRecord},
        batch_wait_ms=200,
        description="Start, pause, resume and settle SLA clocks from every ticket change, for the "
        "partitions this process owns",
    )
    Gauge(
        "deskstream_sla_loading", "1 while the clocks of newly assigned partitions are being loaded", registry=registry
    ).set_function(lambda: 0 if clocks.ready.is_set() else 1)

    async def learn() -> None:
        service.partitions = await rt.producer.partitions_for(topics.TICKETS_EVENTS)

    for what in store.SETTINGS:
        rt.on_settings_changed(what, partial(store.drop, what))
    rt.on_start.append(service.install_default_policy)
    rt.on_connected.append(learn)
    rt.loops.append(lambda: service.run_scheduler(clocks.exclusive))
    return create_http_app(
        rt,
        title="deskstream sla",
        description="SLA policies, clocks, warnings and breaches.",
        routers=[api.build_router(service, store, require_token(rt), announce=rt.announce_settings)],
    )
