"""Analytics: turns ticket and SLA events into the numbers support leads and dashboards read."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi import FastAPI
from prometheus_client import Gauge

from services.analytics import api, duplicate_rules, problems_api
from services.analytics.duplicate_rules import DuplicateSettings, DuplicateSettingsStore
from services.analytics.duplicates import DuplicateIndex
from services.analytics.problems import ProblemBook
from services.analytics.recurring import SimilarTickets
from services.analytics.service import AnalyticsService
from services.analytics.settings import AnalyticsSettings
from services.analytics.store import AnalyticsStore
from shared import topics
from shared.events import ProblemDetectedRecord, SlaEventRecord, TicketCommandRecord, TicketEventRecord
from shared.http import create_http_app, require_token
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

    similar = SimilarTickets(
        producer=rt.producer,
        source=rt.source,
        duplicates=DuplicateIndex(
            window=timedelta(days=settings.duplicates_window_days),
            threshold=settings.duplicates_threshold,
            max_tickets=settings.duplicates_max_tickets,
        ),
        problems=ProblemBook(
            window=timedelta(days=settings.problems_window_days),
            min_tickets=settings.problems_min_tickets,
            detect_at=settings.problems_detect_at,
        ),
        merge_above=settings.duplicates_merge_above,
    )
    # the admin's rule (PUT /v1/settings/duplicates) over the environment's defaults: read on start, again
    # as soon as any analytics process announces a change, and every minute in case an announcement was missed
    merge_default = settings.duplicates_merge_above
    rules = DuplicateSettingsStore(
        rt.mongo,
        DuplicateSettings(
            suspect_above=settings.duplicates_threshold,
            merge_above=None if merge_default is None else max(merge_default, settings.duplicates_threshold),
        ),
    )

    async def read_rules() -> None:
        similar.apply(await rules.settings())

    rereads: set[asyncio.Task] = set()

    def rules_changed() -> None:
        task = asyncio.get_running_loop().create_task(read_rules())
        rereads.add(task)
        task.add_done_callback(rereads.discard)

    rt.on_connected.append(read_rules)
    rt.on_settings_changed("duplicates", rules_changed)
    rt.every(60.0, read_rules, "")
    if settings.recurring:
        rt.replica(
            name="similar",
            processor=similar,
            inputs={topics.TICKETS_EVENTS: TicketEventRecord},
            types=similar.types,
            commit_group=f"analytics-similar-{settings.instance}",
            description="New tickets and what becomes of them, read whole by every analytics instance: duplicate "
            "suspicion (same customer) and recurring problems (many customers), beside the ticket flow",
        )
    rt.publisher(
        topics.TICKETS_COMMANDS,
        schema=TicketCommandRecord,
        description="deskstream.command.suspect_duplicate (and, above the auto-merge score, merge_ticket and "
        "close_merged_ticket) for the tickets process owning the new ticket; key = ticket id",
    )
    rt.spec.publisher(
        topics.TICKETS_EVENTS,
        schema=ProblemDetectedRecord,
        title="analytics:tickets.events:problem-detected",
        description="deskstream.problem.detected once a recurring problem passes the threshold, key = problem id",
    )
    problems_api.register_metrics(similar, rt.telemetry.registry)
    rt.loops.append(service.refresh_forever)
    rt.every(settings.snapshot_s, snapshot, "")
    return create_http_app(
        rt,
        title="deskstream analytics",
        description="Metrics, the summary API and the dashboard.",
        routers=[
            api.build_router(service),
            problems_api.build_router(similar),
            duplicate_rules.build_router(
                store=rules,
                auth=require_token(rt),
                apply=similar.apply,
                announce=lambda: rt.announce_settings("duplicates"),
            ),
        ],
    )
