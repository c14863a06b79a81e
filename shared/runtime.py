"""What every service process holds: settings, telemetry, the database, the broker and
its publishers, background loops, and readiness. Built unconnected; started by the
HTTP app's lifespan (shared/http.py)."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from faststream.kafka import KafkaBroker

from shared.broker import create_broker, ensure_topics
from shared import topics
from shared.events import DeadLetterRecord
from shared.mongo import Mongo
from shared.settings import ServiceSettings
from shared.telemetry import Telemetry, configure_logging

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[Any]]


class Runtime:
    def __init__(self, service: str, settings: ServiceSettings) -> None:
        self.service = service
        self.settings = settings
        self.telemetry = Telemetry(service)
        self.mongo = Mongo(settings.mongodb_url, settings.mongodb_database, app_name=f"deskstream-{service}",
                           registry=self.telemetry.registry)
        self.broker: KafkaBroker = create_broker(
            bootstrap_servers=settings.kafka_bootstrap_servers, service=service,
            telemetry=self.telemetry, retry_backoff_s=settings.retry_backoff_s)
        self.source = f"deskstream/{service}"
        self.on_start: list[Hook] = []  # after the database answers, before consuming
        self.loops: list[Hook] = []  # long-running background loops (sweepers, schedulers)
        self.on_stop: list[Hook] = []  # closing what the service opened (HTTP clients)
        self.broker_started = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._publishers: dict[str, Any] = {}
        self.publisher(topics.DEADLETTER, schema=DeadLetterRecord,
                       description="Records this service could not process, whole, with where they came from and why")

    def publisher(self, topic: str, *, schema: Any, description: str):
        """A declared publisher: it is what publishes, and what the AsyncAPI document shows."""
        pub = self.broker.publisher(topic, schema=schema, description=description,
                                    title=f"{self.service}:{topic}")
        self._publishers[topic] = pub
        return pub

    async def publish(self, topic: str, event: dict[str, Any], key: str) -> None:
        """Publish a CloudEvent (JSON-ready dict) through this service's declared publisher."""
        await self._publishers[topic].publish(
            event, key=key.encode(), headers={"content-type": "application/cloudevents+json"})

    def every(self, interval_s: float, job: Callable[[], Awaitable[Any]], what: str) -> None:
        """Run `job` every `interval_s` seconds once connected (sweepers, wake-ups); a failing
        round is logged and the next one runs; a truthy result is logged as a count of `what`."""
        async def loop() -> None:
            while True:
                try:
                    if result := await job():
                        log.info("%s %s", result, what)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s: a round failed; retrying", what)
                await asyncio.sleep(interval_s)

        self.loops.append(loop)

    async def start(self) -> None:
        configure_logging(self.service, self.settings.log_level)
        if self.settings.api_token is None:
            log.warning("DESKSTREAM_API_TOKEN is not set: agent and admin endpoints are open")
        self._tasks.append(asyncio.create_task(self._connect(), name=f"{self.service}-connect"))

    async def _connect(self) -> None:
        """Keep trying until Kafka and MongoDB answer; /healthz says 503 meanwhile."""
        delay = 0.5
        while True:
            try:
                if not await self.mongo.ping(timeout=3):
                    raise ConnectionError("MongoDB does not answer")
                await self.mongo.detect()
                for hook in self.on_start:
                    await hook()
                if made := await self.mongo.index_lookups():
                    log.info("added the _id lookup index FerretDB's SQLite backend lacks to %d collection(s)", made)
                await ensure_topics(self.settings.kafka_bootstrap_servers)
                await self.broker.start()
                self.broker_started = True
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("not connected yet (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay)
                try:
                    await self.broker.stop()
                except Exception:
                    pass
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        for loop in self.loops:
            self._tasks.append(asyncio.create_task(self._guard(loop), name=f"{self.service}-loop"))
        log.info("%s connected to Kafka and MongoDB", self.service)

    async def _guard(self, loop: Hook) -> None:
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background loop crashed; restarting it")
                await asyncio.sleep(1)

    async def ready(self) -> dict[str, bool]:
        kafka = self.broker_started and await self.broker.ping(timeout=2)
        mongo = await self.mongo.ping(timeout=2)
        self.telemetry.up.set(1 if kafka and mongo else 0)
        return {"kafka": bool(kafka), "mongodb": mongo}

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.broker_started:
            await self.broker.stop()
        for hook in self.on_stop:
            try:
                await hook()
            except Exception:
                log.exception("a shutdown step failed")
        self.mongo.close()
