"""Analytics use cases: keep the numbers every ticket and SLA event contributes to in memory, answer
summaries and series, and keep snapshots so a restart replays only what came after the last one.

Every analytics instance reads every partition (shared/stream.py `Replica`): each holds all the
numbers, so a summary is whole whichever instance answers it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from services.analytics.domain import (
    AGE_BUCKETS,
    BACKLOG_STATUSES,
    BUCKETS,
    DURATION_BUCKETS,
    bucket_starts,
    contribution,
    cumulative,
    distribution,
    floor_time,
    ratio,
    satisfied,
    utc,
)
from services.analytics.store import AnalyticsStore
from services.analytics.tally import TOP_TAGS, Numbers, Tally
from shared.events import Channel, CloudEvent, SlaTarget, utcnow
from shared.stream import Batch

log = logging.getLogger(__name__)

# metric → the dimensions it can be split by ("none": one series, key "all")
SERIES = {
    "tickets_created": ("none", "channel", "priority", "tag"),
    "first_response_seconds": ("none", "channel", "agent"),
    "resolution_seconds": ("none", "channel", "agent"),
    "sla_compliance": ("none", "target", "policy"),
}
MAX_BUCKETS = {"hour": 31 * 24, "day": 366}
REFRESH_DUTY = 20  # a refresh may take at most 1/20 of the time (5 % of a core)
DEFAULT_BUCKETS = {"hour": 24, "day": 30}


class SeriesError(ValueError):
    """A time-series request that cannot be answered as asked (HTTP 422)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class AnalyticsService:
    def __init__(
        self,
        *,
        store: AnalyticsStore,
        refresh_s: float = 2.0,
        min_refresh_s: float = 0.5,
        window_days: int = 7,
        series_cache_s: float = 2.0,
        instance: str = "1",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.instance = instance
        self.positions: dict[tuple[str, int], int] = {}  # the offsets the numbers hold
        self.refresh_s = refresh_s
        self.min_refresh_s = min(min_refresh_s, refresh_s)
        self.window = timedelta(days=window_days)
        self.series_cache_s = series_cache_s
        self.clock = clock
        self.tally = Tally()
        self.numbers = Numbers()
        self.loaded = False
        self._dirty = asyncio.Event()
        self._series_cache: dict[tuple, tuple[float, dict[str, Any]]] = {}
        # process-local on purpose: how late events reach this consumer, not a business number
        self.lag = Histogram(
            "deskstream_analytics_event_lag_seconds",
            "Seconds from an event's time to analytics recording it",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=None,
        )

    # ------------------------------------------------------------ writes

    async def load(self) -> dict[tuple[str, int], int]:
        """The newest snapshot's numbers, and the offsets to replay from (every offset, with none)."""
        started = time.perf_counter()
        found = await self.store.newest()
        self.tally, self.positions = (Tally.restore(found[0]), dict(found[1])) if found else (Tally(), {})
        self.loaded = True
        self._refresh_now()
        log.info(
            "analytics loaded a snapshot of %d tickets in %.1f s; replaying from %d offset(s)",
            len(self.tally.tickets),
            time.perf_counter() - started,
            len(self.positions),
        )
        return dict(self.positions)

    async def process(self, batch: Batch) -> None:
        for record in batch.records:
            try:
                self.apply(CloudEvent.model_validate(record.event))
            except ValueError as exc:  # pydantic's ValidationError included
                batch.reject(record, f"{type(exc).__name__}: {exc}"[:2000])

    def apply(self, event: CloudEvent) -> None:
        """Add what `event` contributes (idempotent: the tally counts each fact once per key)."""
        c = contribution(event)
        if c.ticket_id is None:
            return
        for fact in c.facts:
            self.tally.add_fact(fact)
        if c.sla:
            self.tally.add_sla(c.sla)
        if c.csat:
            self.tally.add_csat(c.csat)
        if c.state:
            self.tally.add_state(c.state)
        self.lag.observe(max(0.0, (self.clock() - utc(event.time)).total_seconds()))
        self._dirty.set()

    async def snapshot(self) -> int:
        """Write the numbers with the offsets they hold (the caller holds the reader's exclusive lock)."""
        return await self.store.save(self.instance, self.tally.dump(), self.positions, self.clock())

    # ------------------------------------------------------------ the numbers readers see

    async def refresh(self) -> None:
        self._refresh_now()

    def _refresh_now(self) -> None:
        started = time.perf_counter()
        numbers = self.tally.numbers(self.clock(), self.window)
        numbers.refresh_s = time.perf_counter() - started
        self.numbers = numbers  # one assignment: readers never see half a refresh

    async def refresh_forever(self) -> None:
        while True:
            try:
                self._refresh_now()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("refreshing the summary failed")
            # soon after something was recorded, and at least every `refresh_s` (ages move on); but a
            # refresh reads every ticket held, so it waits REFRESH_DUTY times as long as the last one
            # took: with a long history the numbers lag a little more instead of the refreshes taking
            # the CPU the events need (bench: 60,000 tickets, 2x 2 refreshes a second, 1.3 ms a message)
            pause = max(self.min_refresh_s, self.numbers.refresh_s * REFRESH_DUTY)
            await asyncio.sleep(pause)
            self._dirty.clear()
            try:
                await asyncio.wait_for(self._dirty.wait(), max(0.0, self.refresh_s - pause))
            except TimeoutError:
                pass

    def summary(self) -> dict[str, Any]:
        n = self.numbers
        total = sum(n.created_by_channel.values())
        sla_kinds: dict[str, dict[str, int]] = {}
        compliance: dict[tuple[str, str], dict[str, int]] = {}
        for row in n.sla:
            kinds = sla_kinds.setdefault(row["target"], {})
            kinds[row["kind"]] = kinds.get(row["kind"], 0) + row["n"]
            c = compliance.setdefault((row["target"], row["policy_id"]), {"met": 0, "breached": 0, "warning": 0})
            c[row["kind"]] = c.get(row["kind"], 0) + row["n"]
        return {
            "as_of": n.as_of,
            "tickets_total": total,
            "tickets_by_channel": dict(sorted(n.created_by_channel.items())),
            "channel_mix": {ch: ratio(v, total) for ch, v in sorted(n.created_by_channel.items())},
            "tickets_by_status": dict(sorted(n.by_status.items())),
            "last_24h": {
                "tickets_created": sum(n.created_last_24h.values()),
                "by_channel": dict(sorted(n.created_last_24h.items())),
            },
            "sla": sla_kinds,
            "sla_compliance": [
                {
                    "target": target,
                    "policy_id": policy,
                    "met": c["met"],
                    "breached": c["breached"],
                    "warned": c["warning"],
                    "compliance": ratio(c["met"], c["met"] + c["breached"]),
                }
                for (target, policy), c in sorted(compliance.items())
            ],
            "backlog": {
                "total": sum(n.backlog_by_status.values()),
                "by_status": n.backlog_by_status,
                "by_age": n.backlog_by_age,
                "oldest_age_s": None if n.oldest_backlog_age_s is None else round(n.oldest_backlog_age_s),
            },
            "window": {"from": n.window_start, "to": n.as_of, "days": self.window.days},
            "first_response": n.window_durations.get("first_response", distribution([])),
            "resolution": n.window_durations.get("resolution", distribution([])),
            "agents": self._agent_table(),
            "top_tags": [{"tag": tag, "tickets": count} for tag, count in n.top_tags],
            "csat": n.csat or {"responses": 0, "satisfied": 0, "satisfied_pct": None, "solved": 0},
        }

    def csat_cells(self) -> dict[tuple[str, str, str], tuple[int, int]]:
        """(channel, team, agent) → (responses, satisfied), for /metrics (labels bounded like the agents')."""
        cells: dict[tuple[str, str, str], tuple[int, int]] = {}
        for a in list(self.tally.csat.values()):
            key = (a["channel"], a.get("team") or "", a.get("agent") or "")
            responses, happy = cells.get(key, (0, 0))
            cells[key] = (responses + 1, happy + satisfied(a["rating"]))
        return cells

    def _agent_table(self) -> list[dict[str, Any]]:
        n = self.numbers
        rows = []
        for agent in sorted(set(n.agents) | set(n.open_by_agent)):
            kinds = n.agents.get(agent, {})
            first, first_s = kinds.get("first_response", (0, 0.0))
            resolved, _ = kinds.get("resolved", (0, 0.0))
            reopened, _ = kinds.get("reopened", (0, 0.0))
            rows.append(
                {
                    "agent_id": agent,
                    "handled": kinds.get("assigned", (0, 0.0))[0],
                    "open": n.open_by_agent.get(agent, 0),
                    "first_responses": first,
                    "first_response_mean_s": round(first_s / first, 1) if first else None,
                    "resolved": resolved,
                    "reopened": reopened,
                    "reopen_rate": ratio(reopened, resolved),
                }
            )
        return rows

    # ------------------------------------------------------------ time series

    async def series(
        self,
        *,
        metric: str,
        dimension: str = "none",
        bucket: str = "hour",
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> dict[str, Any]:
        if metric not in SERIES:
            raise SeriesError("invalid_metric", f"metric must be one of {', '.join(SERIES)}")
        if dimension not in SERIES[metric]:
            raise SeriesError(
                "invalid_dimension", f"{metric} can be split by {', '.join(SERIES[metric])}, not {dimension!r}"
            )
        if bucket not in BUCKETS:
            raise SeriesError("invalid_bucket", "bucket must be hour or day")
        for name, at in (("from", start), ("to", end)):
            if at is not None and at.tzinfo is None:
                raise SeriesError("invalid_time", f"'{name}' needs a time zone, e.g. 2026-03-27T18:00:00Z")
        try:
            starts = _bucket_range(start, end, bucket, self.clock())
            start, end = starts[0], starts[-1] + BUCKETS[bucket]
        except OverflowError:
            raise SeriesError("invalid_range", "'from' and 'to' must lie within years 1 to 9999") from None
        key = (metric, dimension, bucket, start, end)
        cached = self._series_cache.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        dim = None if dimension == "none" else dimension
        if metric == "tickets_created":
            series = self.tally.created_series(starts, bucket, dim)
        elif metric == "sla_compliance":
            series = self.tally.compliance_series(starts, bucket, dim)
        else:
            kind = "first_response" if metric == "first_response_seconds" else "resolution"
            series = self.tally.duration_series(kind, starts, bucket, dim)
        answer = {
            "metric": metric,
            "dimension": dimension,
            "bucket": bucket,
            "from": start,
            "to": end,
            "unit": {"tickets_created": "tickets", "sla_compliance": "ratio"}.get(metric, "seconds"),
            "buckets": starts,
            "series": series,
        }
        if len(self._series_cache) > 64:
            self._series_cache.clear()
        self._series_cache[key] = (time.monotonic() + self.series_cache_s, answer)
        return answer

    # ------------------------------------------------------------ Prometheus

    def register_metrics(self, registry: CollectorRegistry) -> None:
        registry.register(_NumbersCollector(self))
        registry.register(self.lag)


def _bucket_range(start: datetime | None, end: datetime | None, bucket: str, now: datetime) -> list[datetime]:
    """The starts of the whole buckets covering [start, end): by default the last day by hour
    or the last 30 days by day, up to and including the bucket `now` is in."""
    step = BUCKETS[bucket]
    end = utc(end) if end else floor_time(now, bucket) + step
    start = utc(start) if start else end - DEFAULT_BUCKETS[bucket] * step
    if start >= end:
        raise SeriesError("invalid_range", "'from' must be before 'to'")
    # checked before the buckets are listed, so a range of centuries costs nothing
    if end - floor_time(start, bucket) > MAX_BUCKETS[bucket] * step:
        raise SeriesError("invalid_range", f"at most {MAX_BUCKETS[bucket]} {bucket} buckets per request")
    return bucket_starts(start, end, bucket)


class _NumbersCollector:
    """Exposes the tally of the stored rows (read back at start), not process-local counters:
    the numbers survive restarts and are not inflated by redeliveries or replays.
    Labels are bounded: channels, statuses, SLA targets and policies, agents, top tags —
    never a ticket or a customer."""

    def __init__(self, service: AnalyticsService) -> None:
        self.service = service

    def describe(self) -> list[Metric]:
        return []  # the families are built from data on every scrape

    def collect(self) -> Iterator[Metric]:
        n = self.service.numbers
        created = CounterMetricFamily("deskstream_tickets_created", "Tickets created, by channel", labels=["channel"])
        for channel in sorted(set(n.created_by_channel) | {c.value for c in Channel}):
            created.add_metric([channel], n.created_by_channel.get(channel, 0))
        yield created

        by_status = GaugeMetricFamily("deskstream_tickets", "Tickets now in each status", labels=["status"])
        for status, count in sorted(n.by_status.items()):
            by_status.add_metric([status], count)
        yield by_status
        backlog = GaugeMetricFamily(
            "deskstream_backlog_tickets", "Tickets still owed work, by status", labels=["status"]
        )
        for status in BACKLOG_STATUSES:
            backlog.add_metric([status], n.backlog_by_status.get(status, 0))
        yield backlog
        by_age = GaugeMetricFamily(
            "deskstream_backlog_tickets_by_age",
            "Tickets still owed work, by time since they were created",
            labels=["age"],
        )
        for _, label in AGE_BUCKETS:
            by_age.add_metric([label], n.backlog_by_age.get(label, 0))
        yield by_age
        oldest = GaugeMetricFamily(
            "deskstream_backlog_oldest_age_seconds", "Age of the oldest ticket still owed work (0 when there is none)"
        )
        oldest.add_metric([], n.oldest_backlog_age_s or 0.0)
        yield oldest

        for kind, help_ in (
            ("first_response", "Seconds from a ticket's creation to its first agent reply"),
            ("resolution", "Seconds from a ticket's creation to its first resolution"),
        ):
            hist = HistogramMetricFamily(f"deskstream_{kind}_seconds", help_, labels=["channel"])
            for channel, (counts, total) in sorted(n.histograms.get(kind, {}).items()):
                buckets = [(floatToGoString(le), n) for le, n in cumulative(counts, DURATION_BUCKETS[kind])]
                hist.add_metric([channel], buckets, total)
            yield hist

        sla_events = CounterMetricFamily(
            "deskstream_sla_events", "SLA warnings, breaches and met targets", labels=["target", "kind"]
        )
        sla_outcomes = CounterMetricFamily(
            "deskstream_sla_outcomes", "SLA targets met or breached, per policy", labels=["target", "policy", "outcome"]
        )
        per_kind: dict[tuple[str, str], int] = defaultdict(int)
        for sla_target in SlaTarget:
            for kind in ("warning", "breached", "met"):
                per_kind[(sla_target.value, kind)] += 0
        for row in n.sla:
            per_kind[(row["target"], row["kind"])] += row["n"]
            if row["kind"] in ("met", "breached"):
                sla_outcomes.add_metric([row["target"], row["policy_id"], row["kind"]], row["n"])
        for (target, kind), count in sorted(per_kind.items()):
            sla_events.add_metric([target, kind], count)
        yield sla_events
        yield sla_outcomes

        agent_metrics = (
            ("assigned", "deskstream_agent_tickets_assigned", "Tickets assigned to the agent"),
            ("first_response", "deskstream_agent_first_responses", "First replies the agent sent"),
            ("resolved", "deskstream_agent_resolutions", "Resolutions of tickets the agent held"),
            ("reopened", "deskstream_agent_reopens", "Tickets reopened after the agent resolved them"),
        )
        for kind, name, help_ in agent_metrics:
            family = CounterMetricFamily(name, help_, labels=["agent"])
            for agent, kinds in sorted(n.agents.items()):
                family.add_metric([agent], kinds.get(kind, (0, 0.0))[0])
            yield family
        open_tickets = GaugeMetricFamily(
            "deskstream_agent_open_tickets", "Tickets still owed work, per assignee", labels=["agent"]
        )
        for agent, count in sorted(n.open_by_agent.items()):
            open_tickets.add_metric([agent], count)
        yield open_tickets

        csat_responses = GaugeMetricFamily(
            "deskstream_csat_responses",
            "Customers' answers to confirmation requests (the latest per request), by who held the ticket "
            "when it was resolved and its channel",
            labels=["channel", "team", "agent"],
        )
        csat_satisfied = GaugeMetricFamily(
            "deskstream_csat_satisfied_responses",
            "Of those, the ones rated 4 or 5 (CSAT % = satisfied / responses)",
            labels=["channel", "team", "agent"],
        )
        for (channel, team, agent), (responses, happy) in sorted(self.service.csat_cells().items()):
            csat_responses.add_metric([channel, team, agent], responses)
            csat_satisfied.add_metric([channel, team, agent], happy)
        yield csat_responses
        yield csat_satisfied
        csat_pct = GaugeMetricFamily(
            "deskstream_csat_satisfied_percent", "Share of ratings that are 4 or 5, of all ratings (NaN: none yet)"
        )
        pct = (n.csat or {}).get("satisfied_pct")
        csat_pct.add_metric([], float("nan") if pct is None else pct)
        yield csat_pct

        tags = GaugeMetricFamily(
            "deskstream_recurring_tag_tickets",
            f"Tickets created in the last {self.service.window.days} days per tag (the {TOP_TAGS} most frequent)",
            labels=["tag"],
        )
        for tag, count in n.top_tags:
            tags.add_metric([tag], count)
        yield tags

        refreshed = GaugeMetricFamily(
            "deskstream_analytics_last_refresh_timestamp_seconds",
            "When the numbers above were last read from the store (Unix time)",
        )
        refreshed.add_metric([], n.as_of.timestamp() if n.as_of else 0.0)
        yield refreshed
        duration = GaugeMetricFamily(
            "deskstream_analytics_refresh_duration_seconds", "How long the last read of the numbers from the store took"
        )
        duration.add_metric([], n.refresh_s)
        yield duration
