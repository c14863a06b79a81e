"""Replay `tickets.events` and `sla.events` from the beginning into fresh numbers.

    python -m services.analytics.replay [--database NAME] [--drop] [--json]

Reads every record Kafka still holds (up to the end offsets seen at start) with a plain
consumer outside any group, applies each one exactly as the live reader does, and prints the
summary: what a replay gives beside the live numbers. With `--drop` the analytics snapshots of the
database are deleted too, so an analytics process started afterwards rebuilds its numbers from
the topics the same way."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.analytics.service import AnalyticsService
from services.analytics.settings import AnalyticsSettings
from services.analytics.store import AnalyticsStore
from shared import topics
from shared.events import CloudEvent
from shared.mongo import Mongo
from shared.storage import Storage

log = logging.getLogger(__name__)
TOPICS = (topics.TICKETS_EVENTS, topics.SLA_EVENTS)


async def replay(service: AnalyticsService, bootstrap_servers: str, *, idle_timeout_s: float = 10.0) -> dict[str, int]:
    """Apply every record of the two topics, partition by partition in order, up to the end
    offsets as they were when the replay began. Returns counts of what was read."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, client_id="deskstream-analytics-replay"
    )
    await consumer.start()
    counts = {"records": 0, "applied": 0, "unreadable": 0}
    try:
        partitions = await _partitions(bootstrap_servers)
        if not partitions:
            return counts
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        pending = {tp for tp in partitions if ends[tp] > await consumer.position(tp)}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=int(idle_timeout_s * 1000))
            if not batch:
                raise TimeoutError(f"no records for {idle_timeout_s} s with {len(pending)} partitions unfinished")
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    counts["records"] += 1
                    try:
                        event = CloudEvent.model_validate_json(record.value or b"")
                        service.apply(event)
                    except ValueError:  # pydantic's ValidationError among them
                        counts["unreadable"] += 1  # what the live subscriber dead-letters
                        continue
                    counts["applied"] += 1
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        return counts
    finally:
        await consumer.stop()


async def _partitions(bootstrap_servers: str) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="deskstream-analytics-replay")
    await admin.start()
    try:
        described = await admin.describe_topics(list(TOPICS))
    finally:
        await admin.close()
    return [
        TopicPartition(t["topic"], p["partition"])
        for t in described
        if not t.get("error_code")
        for p in sorted(t["partitions"], key=lambda p: p["partition"])
    ]


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", help="the database to rebuild into (default: MONGODB_DATABASE)")
    parser.add_argument("--drop", action="store_true", help="empty the analytics collections first")
    parser.add_argument("--json", action="store_true", help="print only the summary, as JSON")
    args = parser.parse_args(argv)
    settings = AnalyticsSettings()
    mongo = Mongo(settings.mongodb_url, args.database or settings.mongodb_database, app_name="deskstream-replay")
    store = AnalyticsStore(Storage(mongo))
    try:
        if args.drop:
            await store.drop()
        service = AnalyticsService(store=store, window_days=settings.window_days)
        started = time.perf_counter()
        counts = await replay(service, settings.kafka_bootstrap_servers)
        await service.refresh()
        summary: dict[str, Any] = service.summary()
        if not args.json:
            print(
                f"replayed {counts['records']} records ({counts['unreadable']} unreadable) "
                f"in {time.perf_counter() - started:.1f} s into {mongo.db.name}",
                file=sys.stderr,
            )
        print(json.dumps(summary, default=str, indent=None if args.json else 2))
        return 0
    finally:
        mongo.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(asyncio.run(main()))
