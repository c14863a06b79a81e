"""What every service process holds: settings, telemetry, the database, the Kafka producer, its
stream processors and background loops, and readiness. Built unconnected; started by the HTTP
app's lifespan (shared/http.py).

The message path runs on aiokafka (shared/stream.py, shared/kafka.py): a FastStream handler costs
~0.9 ms a record on this project's machine (`make bench`'s FastStream yardstick: ~1,100 hops a
second), several times what a batch processor spends per record. FastStream describes the topics:
every processor's inputs and every publisher are declared on `spec`, a broker that is never started,
from which `make docs` generates the AsyncAPI document."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from faststream.kafka import KafkaBroker

from shared import topics
from shared.credentials import problems
from shared.events import DeadLetterRecord, EventType, SettingsChanged, SettingsChangedRecord, utcnow
from shared.kafka import Outgoing, Producer, ensure_topics, event
from shared.mongo import Mongo
from shared.settings import ServiceSettings
from shared.storage import Storage
from shared.stream import Processor, Replica, StreamMetrics, StreamRunner, Tail
from shared.telemetry import Telemetry, configure_logging

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[Any]]


class Runtime:
    def __init__(self, service: str, settings: ServiceSettings) -> None:
        self.service = service
        self.settings = settings
        self.telemetry = Telemetry(service)
        self.mongo = Mongo(
            settings.mongodb_url,
            settings.mongodb_database,
            app_name=f"deskstream-{service}",
            registry=self.telemetry.registry,
        )
        self.storage = Storage(self.mongo)
        self.producer = Producer(settings.kafka_bootstrap_servers, client_id=f"deskstream-{service}")
        self.spec = KafkaBroker(settings.kafka_bootstrap_servers, logger=None)  # described, never started
        self.source = f"deskstream/{service}"
        self.streams: list[StreamRunner] = []
        self.stream_metrics = StreamMetrics(self.telemetry.registry)
        self.on_start: list[Hook] = []  # after the database answers, before Kafka
        self.on_connected: list[Hook] = []  # once Kafka answers too, before consuming
        self.loops: list[Hook] = []  # long-running background loops (processors, schedulers)
        self.on_stop: list[Hook] = []  # closing what the service opened (HTTP clients)
        self.connected = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._settings_handlers: dict[str, list[Callable[[], Any]]] = {}
        self.publisher(
            topics.DEADLETTER,
            schema=DeadLetterRecord,
            description="Records this service could not process, whole, with where they came from and why",
        )

    @property
    def broker(self) -> KafkaBroker:
        """The broker the AsyncAPI document is generated from."""
        return self.spec

    @property
    def broker_started(self) -> bool:
        return self.connected

    # ------------------------------------------------------------ declaring
    def publisher(self, topic: str, *, schema: Any, description: str) -> Publisher:
        """A topic this service writes to (as the AsyncAPI document shows it), and a way to send one
        record to it and wait for Kafka's acknowledgement."""
        self.spec.publisher(topic, schema=schema, description=description, title=f"{self.service}:{topic}")
        return Publisher(self.producer, topic)

    def _describe_input(self, topic: str, group: str | None, schema: Any, description: str, name: str) -> None:
        async def handler(event: Any) -> None:  # documentation only: the processor does the work
            return None

        handler.__annotations__ = {"event": schema, "return": None}  # the record's model, for the document
        handler.__name__ = name
        self.spec.subscriber(topic, group_id=group, description=description, title=f"{self.service}:{topic}:{name}")(
            handler
        )

    def stream(
        self,
        *,
        name: str,
        inputs: dict[str, Any],
        group_id: str,
        processor: Processor,
        description: str,
        types: Iterable[str] | None = None,
        max_records: int = 500,
        batch_wait_ms: int = 0,
    ) -> StreamRunner:
        """A batch processor consuming `inputs` ({topic: record schema}) as a member of `group_id`;
        `batch_wait_ms` > 0 for one off the path anyone waits on (see fetch_pacing)."""
        runner = StreamRunner(
            name=name,
            service=self.service,
            inputs=tuple(inputs),
            group_id=group_id,
            processor=processor,
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            producer=self.producer,
            metrics=self.stream_metrics,
            max_records=max_records,
            retry_backoff_s=self.settings.retry_backoff_s,
            batch_wait_ms=batch_wait_ms,
            types=frozenset(types) if types is not None else None,
            group_instance_id=f"{group_id}-{self.settings.instance}" if self.settings.names_instance else None,
        )
        for topic, schema in inputs.items():
            self._describe_input(topic, group_id, schema, description, name)
        self.streams.append(runner)
        self.loops.append(runner.run)
        return runner

    def replica(
        self,
        *,
        name: str,
        inputs: dict[str, Any],
        processor: Any,
        description: str,
        types: Iterable[str] | None = None,
        commit_group: str | None = None,
    ) -> Replica:
        """Every partition of `inputs`, read whole by every instance into a read model of its own
        (`types`: the CloudEvent types it reads, the others skipped by their header)."""
        reader = Replica(
            name=f"{self.service}-{name}",
            service=self.service,
            inputs=tuple(inputs),
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            processor=processor,
            producer=self.producer,
            metrics=self.stream_metrics,
            commit_group=commit_group or f"{self.service}-{self.settings.instance}",
            types=frozenset(types) if types is not None else None,
        )
        for topic, schema in inputs.items():
            self._describe_input(topic, None, schema, description, name)
        self.loops.append(reader.run)
        return reader

    def tail(
        self,
        *,
        name: str,
        topic: str,
        schema: Any,
        handlers: dict[str, Callable[[dict[str, Any]], Any]],
        description: str,
    ) -> Tail:
        """What every instance reads of `topic` from its end while it runs (no group)."""
        tail = Tail(
            name=f"{self.service}-{name}",
            topic=topic,
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            handlers=handlers,
        )
        self._describe_input(topic, None, schema, description, name)
        self.loops.append(tail.run)
        return tail

    # ------------------------------------------------------------ settings every process caches
    def on_settings_changed(self, what: str, drop: Callable[[], Any]) -> None:
        """`drop` (a cache's invalidate) runs in every process of this service as soon as any of them
        announces that `what` changed (`announce_settings`): an admin's change applies at once on
        every process, not when each one's cache expires."""
        if not self._settings_handlers:
            self.publisher(
                topics.SETTINGS_CHANGES,
                schema=SettingsChangedRecord,
                description="Settings an admin changed through this service's API",
            )
            self.tail(
                name="settings",
                topic=topics.SETTINGS_CHANGES,
                schema=SettingsChangedRecord,
                handlers={EventType.SETTINGS_CHANGED: self._settings_changed},
                description="Settings changed through any process of this service: caches dropped",
            )
        self._settings_handlers.setdefault(what, []).append(drop)

    def _settings_changed(self, data: dict[str, Any]) -> None:
        change = SettingsChanged.model_validate(data)
        if change.service == self.service:
            for drop in self._settings_handlers.get(change.what, ()):
                drop()

    async def announce_settings(self, what: str) -> None:
        """Tell every process of this service that `what` changed (after the change is stored)."""
        change = SettingsChanged(service=self.service, what=what)
        await self.producer.send_many(
            [
                event(
                    topics.SETTINGS_CHANGES,
                    self.service,
                    EventType.SETTINGS_CHANGED,
                    change,
                    source=self.source,
                    subject=what,
                    id_=uuid.uuid4().hex,
                    time=utcnow(),
                )
            ]
        )

    # ------------------------------------------------------------ sending
    async def send(self, records: Iterable[Outgoing]) -> None:
        await self.producer.send_many(records)

    def every(self, interval_s: float, job: Callable[[], Awaitable[Any]], what: str) -> None:
        """Run `job` every `interval_s` seconds once connected (sweepers, wake-ups); a failing
        round is logged and the next one runs; a truthy result is logged as a count of `what`."""

        async def loop() -> None:
            while True:
                try:
                    if (result := await job()) and what:
                        log.info("%s %s", result, what)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s: a round failed; retrying", what)
                await asyncio.sleep(interval_s)

        self.loops.append(loop)

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        configure_logging(self.service, self.settings.log_level)
        if found := problems(self.settings):

            async def warn() -> None:  # insecure development mode (serve() refuses it otherwise)
                for problem in found:
                    log.warning("%s: agent and admin endpoints are open (DESKSTREAM_INSECURE_DEV)", problem)

            self.every(60.0, warn, "")
        self._tasks.append(asyncio.create_task(self._connect(), name=f"{self.service}-connect"))

    async def _connect(self) -> None:
        """Keep trying until Kafka and MongoDB answer; /healthz says 503 meanwhile."""
        delay = 0.5
        while True:
            try:
                if not await self.mongo.ping(timeout=3):
                    raise ConnectionError("MongoDB does not answer")
                await self.mongo.detect()
                self.storage.learn()
                for hook in self.on_start:
                    await hook()
                if made := await self.mongo.index_lookups():
                    log.info("added the _id lookup index FerretDB's SQLite backend lacks to %d collection(s)", made)
                await ensure_topics(self.settings.kafka_bootstrap_servers)
                await self.producer.start()
                for hook in self.on_connected:
                    await hook()
                self.connected = True
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("not connected yet (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay)
                try:
                    await self.producer.stop()
                except Exception:
                    pass
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        for loop in self.loops:
            self._tasks.append(asyncio.create_task(self._guard(loop), name=f"{self.service}-loop"))
        log.info("%s connected to Kafka and MongoDB", self.service)

    async def _guard(self, loop: Hook) -> None:
        """Keep a background loop (a consumer, a sweeper) running until shutdown. A cancellation that
        shutdown did not ask for — one raised inside a client library — is a crash like any other:
        taken silently, it had left a service with no consumer and nothing in its log."""
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is None or task.cancelling():
                    raise
                log.exception("background loop %s was cancelled from inside; restarting it", _name(loop))
            except Exception:
                log.exception("background loop %s crashed; restarting it", _name(loop))
            await asyncio.sleep(1)

    async def ready(self) -> dict[str, bool]:
        kafka = self.connected and await self.producer.ping(timeout=2)
        mongo = await self.mongo.ping(timeout=2)
        self.telemetry.up.set(1 if kafka and mongo else 0)
        return {"kafka": bool(kafka), "mongodb": mongo}

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.producer.stop()
        for hook in self.on_stop:
            try:
                await hook()
            except Exception:
                log.exception("a shutdown step failed")
        self.mongo.close()


class Publisher:
    """Sends one JSON record to a topic and returns once Kafka acknowledged it (acks=all)."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self.producer, self.topic = producer, topic

    async def publish(
        self, message: Any, *, key: bytes | str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        body = message if isinstance(message, bytes) else orjson.dumps(message)
        key_text = key.decode() if isinstance(key, bytes) else key
        kind = message.get("type") if isinstance(message, dict) else None
        await self.producer.send_many([Outgoing(self.topic, key_text, body, None, kind)])


def _name(loop: Hook) -> str:
    owner = getattr(loop, "__self__", None)
    return str(getattr(owner, "name", None) or getattr(loop, "__qualname__", repr(loop)))
