"""Analytics use cases: record facts from events, keep a cached summary for readers."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from services.analytics.domain import sla_fact, ticket_fact
from services.analytics.store import AnalyticsStore
from shared.events import CloudEvent, utcnow

log = logging.getLogger(__name__)


class AnalyticsService:
    def __init__(self, *, store: AnalyticsStore, refresh_s: float = 2.0) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self.by_channel: dict[str, int] = {}
        self.sla: dict[str, dict[str, int]] = {}
        self.refreshed_at = None

    async def apply(self, event: CloudEvent) -> None:
        if fact := ticket_fact(event):
            await self.store.record("tickets", fact)
        elif fact := sla_fact(event):
            await self.store.record("sla", fact)

    async def refresh(self) -> None:
        self.by_channel = await self.store.tickets_by_channel()
        self.sla = await self.store.sla_counts()
        self.refreshed_at = utcnow()

    async def refresh_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("refreshing the summary failed")
            await asyncio.sleep(self.refresh_s)

    def summary(self) -> dict[str, Any]:
        return {"tickets_total": sum(self.by_channel.values()), "tickets_by_channel": dict(self.by_channel),
                "sla": self.sla, "as_of": self.refreshed_at}

    def register_metrics(self, registry: CollectorRegistry) -> None:
        registry.register(_SummaryCollector(self))


class _SummaryCollector:
    """Exposes the stored aggregates (not process-local counters), so the numbers survive
    restarts and are not inflated by redelivered events."""

    def __init__(self, service: AnalyticsService) -> None:
        self.service = service

    def describe(self):
        return []

    def collect(self):
        created = CounterMetricFamily("deskstream_tickets_created", "Tickets created, by channel",
                                      labels=["channel"])
        for channel, n in sorted(self.service.by_channel.items()):
            created.add_metric([channel], n)
        yield created
        sla = GaugeMetricFamily("deskstream_sla_events", "SLA targets warned, breached or met",
                                labels=["target", "kind"])
        for target, kinds in sorted(self.service.sla.items()):
            for kind, n in sorted(kinds.items()):
                sla.add_metric([target, kind], n)
        yield sla
