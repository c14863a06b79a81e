"""A stream processor on Kafka: the partitions a process consumes are the state it owns.

The runner consumes its topics in batches (whatever has arrived, up to `max_records`), hands each
batch to its processor — which decides for the whole batch in memory, writes once per batch and
publishes the batch's events — and then commits the batch's offsets. So a record is committed
only after everything it caused is durable, and a crash means replay from the last commit;
processors make replay harmless (event ids derive from the input, inserts are keyed).

Ownership: the input topics are co-partitioned (same partition count, keys hashed the same way),
and the range assignor hands partition n of every input topic to the same process, so the
processor owns "partition n" of its keys. When partitions are assigned the processor restores
their state (`Processor.assign`) while they are paused; records of a partition are processed
only once its state is loaded. A rebalance keeps the state of partitions a process keeps.

Bad input never stops a partition: a record that is not a CloudEvent, or that the processor
rejects, goes to `deadletter` with its bytes and origin. An unexpected exception rewinds the
batch (the processor reloads the state of its partitions) and retries it one record at a time;
a record that fails `max_attempts` times is dead-lettered. Trouble that passes (the database or
the broker away) is retried for as long as it lasts."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from prometheus_client import CollectorRegistry, Counter, Histogram
from pymongo.errors import ConnectionFailure

from shared import topics
from shared.events import DeadLetter, EventType, utcnow
from shared.kafka import Outgoing, Producer, decode, encode_event

log = logging.getLogger(__name__)

# trouble that passes: retried for as long as it lasts, never dead-lettered
TRANSIENT = (ConnectionFailure, KafkaError, OSError, TimeoutError)
ENVELOPE = {"id": str, "type": str, "source": str, "specversion": str}


class Rejected(Exception):
    """A processor raises it for a record that is well-formed but can never be applied (a command
    for a ticket that does not exist): the record is dead-lettered, not retried."""


@dataclass(slots=True)
class Record:
    """One consumed record: where it came from and its decoded CloudEvent (a dict)."""

    topic: str
    partition: int
    offset: int
    key: str | None
    timestamp: datetime  # the broker's (log append) or the producer's time of the record
    event: dict[str, Any]
    raw: Any = field(repr=False, default=None)

    @property
    def type(self) -> str:
        return self.event["type"]

    @property
    def data(self) -> dict[str, Any]:
        data = self.event.get("data")
        return data if isinstance(data, dict) else {}


@dataclass
class Batch:
    records: list[Record]
    rejected: list[tuple[Any, str]] = field(default_factory=list)

    def reject(self, record: Record, reason: str) -> None:
        """Dead-letter `record` (once the batch is done) and go on with the others."""
        self.rejected.append((record.raw, reason))


class Processor(Protocol):
    async def load(self, partitions: set[int]) -> Any:
        """Read the state of these partitions (they are paused meanwhile; other partitions go on, so
        this must not change the live state: `install` does, at once)."""

    def install(self, partitions: set[int], loaded: Any) -> None:
        """Make what `load` read the live state of these partitions (no awaiting in here)."""

    def revoke(self, partitions: set[int]) -> None:
        """Forget the state of these partitions: another process owns them now."""

    async def process(self, batch: Batch) -> None:
        """Decide, write and publish for the whole batch; raising rewinds it."""


def type_header(raw: Any) -> str | None:
    for name, value in raw.headers or ():
        if name == "ce_type":
            try:
                return value.decode()
            except (UnicodeDecodeError, AttributeError):
                return None
    return None


def as_record(raw: Any) -> Record | str:
    """The record's CloudEvent, or the reason it cannot be one."""
    try:
        event = decode(raw.value)
    except (ValueError, TypeError) as exc:
        return f"not JSON: {type(exc).__name__}: {exc}"[:500]
    if not isinstance(event, dict):
        return "not a CloudEvent: the JSON is not an object"
    for name, kind in ENVELOPE.items():
        if not isinstance(event.get(name), kind) or not event[name]:
            return f"not a CloudEvent: `{name}` is missing or not a string"
    if event["specversion"] != "1.0":
        return f"not a CloudEvent 1.0: specversion {event['specversion'][:20]!r}"
    if "time" in event:
        try:
            datetime.fromisoformat(event["time"])
        except (TypeError, ValueError):
            return "not a CloudEvent: `time` is not an RFC 3339 time"
    if "data" in event and not isinstance(event["data"], dict | type(None)):
        return "not a CloudEvent of ours: `data` is not an object"
    try:
        key = raw.key.decode() if raw.key is not None else None
    except UnicodeDecodeError:
        return "the record's key is not UTF-8"
    at = datetime.fromtimestamp(raw.timestamp / 1000, UTC) if raw.timestamp is not None else utcnow()
    return Record(raw.topic, raw.partition, raw.offset, key, at, event, raw)


def dead_letter(service: str, raw: Any, reason: str) -> Outgoing:
    """A record that cannot be processed, whole, with where it came from and why."""
    value: bytes = raw.value or b""
    try:
        key = raw.key.decode(errors="replace") if raw.key else None
    except AttributeError:
        key = None
    try:
        text = value.decode()[:10000]
    except UnicodeDecodeError:
        text = None
    letter = DeadLetter(
        service=service,
        reason=reason[:2000],
        source_topic=raw.topic,
        source_partition=raw.partition,
        source_offset=raw.offset,
        source_key=key,
        original_base64=base64.b64encode(value).decode(),
        original_text=text,
        at=utcnow(),
    )
    log.warning("dead-lettered %s[%s]@%s: %s", raw.topic, raw.partition, raw.offset, reason)
    body = encode_event(
        EventType.DEAD_LETTER,
        letter,
        source=f"deskstream/{service}",
        subject=key,
        id_=f"dl-{raw.topic}-{raw.partition}-{raw.offset}-{service}",
        time=letter.at,
    )
    return Outgoing(topics.DEADLETTER, key, body)


def fetch_pacing(batch_wait_ms: int) -> dict[str, int]:
    """How a consumer's fetches wait. 0: a fetch returns as soon as anything arrived (long-polling
    500 ms when nothing does), for the path a customer or an agent waits on. More: it waits up to
    that long for 256 KiB, so a consumer off that path (delivery, SLA, analytics) takes fewer,
    larger batches: each batch costs the broker a fetch and a commit whatever its size."""
    if batch_wait_ms <= 0:
        return {"fetch_min_bytes": 1, "fetch_max_wait_ms": 500}
    return {"fetch_min_bytes": 256 * 1024, "fetch_max_wait_ms": batch_wait_ms}


class StreamMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.records = Counter(
            "deskstream_stream_records", "Records processed by stream processors", ["processor"], registry=registry
        )
        self.batch = Histogram(
            "deskstream_stream_batch_records",
            "Records per processed batch",
            ["processor"],
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
            registry=registry,
        )
        self.seconds = Histogram(
            "deskstream_stream_batch_seconds",
            "Time to process and commit one batch",
            ["processor"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
            registry=registry,
        )
        self.restore = Histogram(
            "deskstream_stream_restore_seconds",
            "Time to load the state of assigned partitions",
            ["processor"],
            buckets=(0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 120),
            registry=registry,
        )


class StreamRunner:
    """Runs one processor over its input topics as a member of `group_id`."""

    def __init__(
        self,
        *,
        name: str,
        service: str,
        inputs: tuple[str, ...],
        group_id: str,
        processor: Processor,
        bootstrap_servers: str,
        producer: Producer,
        metrics: StreamMetrics,
        max_records: int = 500,
        batch_wait_ms: int = 0,
        retry_backoff_s: float = 1.0,
        max_attempts: int = 5,
        types: frozenset[str] | None = None,
        group_instance_id: str | None = None,
    ) -> None:
        self.name, self.service, self.inputs, self.group_id = name, service, inputs, group_id
        # a static member (KIP-345): restarted under the same name, it gets its partitions back at
        # once; without one, the group waits for the dead member's session to expire, then rebalances
        self.group_instance_id = group_instance_id
        self.types = types  # the CloudEvent types the processor acts on (None: every one)
        self.processor = processor
        self.bootstrap_servers = bootstrap_servers
        self.producer = producer
        self.metrics = metrics
        self.max_records = max_records
        self.batch_wait_ms = batch_wait_ms
        self.retry_backoff_s = retry_backoff_s
        self.max_attempts = max_attempts
        self.consumer: AIOKafkaConsumer | None = None
        self.owned: set[int] = set()  # partitions whose state is loaded and whose records are processed
        self._restoring: dict[int, asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()  # a batch, a rebalance step or an exclusive job at a time
        self._committed: dict[TopicPartition, int] = {}  # the next offset to process, as committed
        self._failures: dict[tuple[str, int, int], int] = {}
        self._one_at_a_time = 0  # after an unexpected failure: records to take singly
        self.ready = asyncio.Event()  # the first assignment has been loaded

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold off batches and rebalances while background work (timers, flushes) changes the state."""
        async with self._lock:
            yield

    def _live(self) -> AIOKafkaConsumer:
        """The consumer of the running loop (batches, rewinds and loads happen only while it runs)."""
        if self.consumer is None:
            raise IllegalStateError(f"{self.name}: the consumer is not running")
        return self.consumer

    # ------------------------------------------------------------ the loop
    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            client_id=f"deskstream-{self.service}-{self.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_poll_records=self.max_records,
            **fetch_pacing(self.batch_wait_ms),
            max_partition_fetch_bytes=4 * 1024 * 1024,
            session_timeout_ms=10000,
            heartbeat_interval_ms=1000,
            group_instance_id=self.group_instance_id,
        )
        consumer.subscribe(list(self.inputs), listener=_Listener(self))
        self.consumer = consumer  # the listener may be called as soon as it starts
        await consumer.start()
        try:
            while True:
                limit = 1 if self._one_at_a_time else self.max_records
                fetched = await consumer.getmany(timeout_ms=500, max_records=limit)
                if fetched:
                    await self._handle(fetched)
        finally:
            for task in self._restoring.values():
                task.cancel()
            self.consumer = None
            log.info("%s: consumer stopping (it leaves its group)", self.name)
            await consumer.stop()

    async def _handle(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        async with self._lock:
            started = time.perf_counter()
            # a partition not (or no longer) ours, or being loaded: fetched before it was paused; it is
            # read again from here once it is ours
            for tp in [tp for tp in fetched if tp.partition not in self.owned]:
                if fetched[tp] and tp in self._live().assignment():
                    self._live().seek(tp, fetched[tp][0].offset)
                del fetched[tp]
            # records before the last commit: fetched before a rewind, processed already
            fetched = {tp: [r for r in raws if r.offset >= self._committed.get(tp, 0)] for tp, raws in fetched.items()}
            fetched = {tp: raws for tp, raws in fetched.items() if raws}
            if not fetched:
                return
            batch = Batch([])
            skipped = 0
            for raws in fetched.values():
                for raw in raws:
                    if self.types is not None and (kind := type_header(raw)) is not None and kind not in self.types:
                        skipped += 1  # a type this processor does not act on: not even parsed
                        continue
                    record = as_record(raw)
                    if isinstance(record, str):
                        batch.rejected.append((raw, record))
                    else:
                        batch.records.append(record)
            try:
                if batch.records:
                    await self.processor.process(batch)
            except Rejected as exc:  # one record the processor could not apply at all
                if len(batch.records) == 1:
                    batch.rejected.append((batch.records[0].raw, str(exc)))
                else:
                    self._rewind(fetched, careful=len(batch.records))
                    return
            except TRANSIENT as exc:
                log.warning("%s: %s; the batch will be processed again", self.name, _describe(exc))
                self._rewind(fetched)
                await asyncio.sleep(self.retry_backoff_s)
                return
            except Exception as exc:
                if not self._count_failure(batch, exc):
                    self._rewind(fetched, careful=len(batch.records))
                    return
            offsets = {tp: raws[-1].offset + 1 for tp, raws in fetched.items()}
            try:
                if batch.rejected:
                    await self.producer.send_many(
                        [dead_letter(self.service, raw, reason) for raw, reason in batch.rejected]
                    )
                await self._live().commit(offsets)
            except CommitFailedError as exc:
                # the group moved on (a rebalance): the partitions' new owner takes over from the last commit
                log.warning("%s: commit refused (%s); the new owner replays from the last commit", self.name, exc)
                return
            except TRANSIENT as exc:
                log.warning("%s: %s; the batch will be processed again", self.name, _describe(exc))
                self._rewind(fetched)
                await asyncio.sleep(self.retry_backoff_s)
                return
            self._committed.update(offsets)
            count = len(batch.records) + len(batch.rejected) + skipped
            self._one_at_a_time = max(0, self._one_at_a_time - count)
            self.metrics.records.labels(self.name).inc(count)
            self.metrics.batch.labels(self.name).observe(count)
            self.metrics.seconds.labels(self.name).observe(time.perf_counter() - started)

    def _count_failure(self, batch: Batch, exc: Exception) -> bool:
        """True when the batch's single record has failed often enough to be dead-lettered."""
        if len(batch.records) != 1:
            log.exception("%s: a batch of %d failed; taking its records one at a time", self.name, len(batch.records))
            return False
        record = batch.records[0]
        where = (record.topic, record.partition, record.offset)
        attempts = self._failures[where] = self._failures.get(where, 0) + 1
        if attempts < self.max_attempts:
            log.exception("%s: %s[%d]@%d failed (attempt %d of %d)", self.name, *where, attempts, self.max_attempts)
            return False
        del self._failures[where]
        if len(self._failures) > 10_000:
            self._failures.clear()
        batch.rejected.append((record.raw, f"failed {attempts} times: {_describe(exc)}"))
        return True

    def _rewind(self, fetched: dict[TopicPartition, list[Any]], *, careful: int = 0) -> None:
        """Go back to the last commit of the batch's partitions, with their state reloaded."""
        self._one_at_a_time = max(self._one_at_a_time, careful)
        partitions = {tp.partition for tp in fetched}
        self.processor.revoke(partitions)
        self.owned -= partitions
        for tp in fetched:
            self._live().seek(tp, self._committed.get(tp, fetched[tp][0].offset))
        self._restore(partitions)

    # ------------------------------------------------------------ ownership
    def _restore(self, partitions: set[int]) -> None:
        """Pause the partitions, load their state in the background, then process them again."""
        tps = [TopicPartition(t, p) for t in self.inputs for p in partitions]
        self._live().pause(*tps)
        for p in partitions:
            if (old := self._restoring.pop(p, None)) is not None:
                old.cancel()
        task = asyncio.create_task(self._load(partitions, tps), name=f"{self.name}-restore")
        for p in partitions:
            self._restoring[p] = task

    def _current(self, partitions: set[int]) -> bool:
        """Is the running load still the one these partitions wait for? A rebalance replaces it (and
        cancels it, but a cancellation can be swallowed inside a client library: this is the check)."""
        me = asyncio.current_task()
        return all(self._restoring.get(p) is me for p in partitions)

    async def _load(self, partitions: set[int], tps: list[TopicPartition]) -> None:
        delay = 0.5
        started = time.perf_counter()
        while True:
            try:
                loaded = await self.processor.load(partitions)  # the others go on meanwhile
                async with self._lock:
                    if not self._current(partitions):
                        log.info(
                            "%s: partitions %s were reassigned while loading; dropped", self.name, sorted(partitions)
                        )
                        return
                    assigned = self.consumer.assignment() if self.consumer is not None else set()
                    for tp in tps:
                        if tp not in self._committed:
                            if tp not in assigned:
                                raise IllegalStateError(f"{tp} is not assigned (a rebalance is on its way)")
                            self._committed[tp] = await self._live().position(tp)
                    self.processor.install(partitions, loaded)
                    self.owned |= partitions
                    self._live().resume(*tps)
                break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "%s: loading the state of partitions %s failed; retrying in %.1f s",
                    self.name,
                    sorted(partitions),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                if not self._current(partitions):
                    return
        for p in partitions:
            if self._restoring.get(p) is asyncio.current_task():
                del self._restoring[p]
        self.metrics.restore.labels(self.name).observe(time.perf_counter() - started)
        log.info("%s: partitions %s loaded in %.2f s", self.name, sorted(partitions), time.perf_counter() - started)
        if not self._restoring:
            self.ready.set()

    async def revoked(self, revoked: set[TopicPartition]) -> None:
        # wait for the batch in flight (it commits); what is kept is decided once the assignment is known
        async with self._lock:
            pass

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        numbers = {tp.partition for tp in assigned}
        incomplete = {p for p in numbers if not all(TopicPartition(t, p) in assigned for t in self.inputs)}
        if incomplete:
            log.error(
                "%s: partitions %s of %s are not all assigned together: are the topics' partition counts equal?",
                self.name,
                sorted(incomplete),
                ", ".join(self.inputs),
            )
        async with self._lock:
            # loads in flight are started again for what is still ours (one load may cover several partitions)
            restoring = set(self._restoring)
            for task in set(self._restoring.values()):
                task.cancel()
            self._restoring.clear()
            lost = (self.owned | restoring) - numbers
            if lost:
                self.processor.revoke(lost)
                self.owned -= lost
            self._committed = {tp: o for tp, o in self._committed.items() if tp.partition in self.owned}
            gained = numbers - self.owned
        if gained:
            self.ready.clear()
            self._restore(gained)
        else:
            self.ready.set()
        log.info(
            "%s: owns partitions %s (to load: %s, handed over: %s)",
            self.name,
            sorted(numbers),
            sorted(gained),
            sorted(lost),
        )


class _Listener(ConsumerRebalanceListener):
    def __init__(self, runner: StreamRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.runner.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.runner.assigned(assigned)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def partitions_of(records: Iterable[Record]) -> set[int]:
    return {r.partition for r in records}


class Tail:
    """Every partition of a topic, read from its end on by every instance (no group, nothing
    committed): what each instance must hear of while it runs, such as replies to push to the chat
    widgets connected to it. Records of other types are skipped by their `ce_type` header."""

    def __init__(
        self, *, name: str, topic: str, bootstrap_servers: str, handlers: dict[str, Callable[[dict[str, Any]], Any]]
    ) -> None:
        self.name, self.topic, self.bootstrap_servers, self.handlers = name, topic, bootstrap_servers, handlers
        self.ready = asyncio.Event()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            client_id=self.name,
            fetch_max_wait_ms=500,
        )
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - the topic's partitions, now
            tps = [TopicPartition(self.topic, p) for p in sorted(consumer.partitions_for_topic(self.topic) or {0})]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:
                await consumer.position(tp)
            self.ready.set()
            while True:
                fetched = await consumer.getmany(timeout_ms=1000)
                for raws in fetched.values():
                    for raw in raws:
                        kind = type_header(raw)
                        if kind is not None and kind not in self.handlers:
                            continue
                        record = as_record(raw)
                        if isinstance(record, str) or (act := self.handlers.get(record.type)) is None:
                            continue
                        try:
                            act(record.data)
                        except Exception as exc:  # one bad record must not stop what every instance hears
                            log.warning(
                                "%s: skipped %s[%d]@%d: %s",
                                self.name,
                                raw.topic,
                                raw.partition,
                                raw.offset,
                                _describe(exc)[:300],
                            )
        finally:
            self.ready.clear()
            await consumer.stop()


class EachRecord:
    """A processor without state of its own: each record of the types it knows is handed to its
    handler, one after the other (for inputs where every record is an errand, such as a reply to
    deliver). A handler raising a ValueError rejects its record."""

    def __init__(self, handlers: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]]) -> None:
        self.handlers = handlers

    async def load(self, partitions: set[int]) -> None:
        return None

    def install(self, partitions: set[int], loaded: Any) -> None:
        pass

    def revoke(self, partitions: set[int]) -> None:
        pass

    async def process(self, batch: Batch) -> None:
        for record in batch.records:
            if (handle := self.handlers.get(record.type)) is None:
                continue
            try:
                await handle(record.data)
            except (ValueError, Rejected) as exc:  # pydantic's ValidationError is a ValueError
                batch.reject(record, f"{type(exc).__name__}: {exc}"[:2000])


class Replica:
    """Every partition of the inputs, read by every instance on its own from where its state says
    (no consumer group): for read models every instance keeps whole, such as analytics' numbers.
    The processor's `positions` are the offsets its state holds; `load` returns them."""

    def __init__(
        self,
        *,
        name: str,
        service: str,
        inputs: tuple[str, ...],
        bootstrap_servers: str,
        processor: Any,
        producer: Producer,
        metrics: StreamMetrics,
        max_records: int = 1000,
        types: frozenset[str] | None = None,
        commit_group: str | None = None,
        batch_wait_ms: int = 250,
    ) -> None:
        self.name, self.service, self.inputs, self.bootstrap_servers = name, service, inputs, bootstrap_servers
        self.batch_wait_ms = batch_wait_ms
        self.producer = producer
        # the positions are also committed here (never read back: the state's own are): so that lag
        # tools see how far this instance has read
        self.commit_group = commit_group
        self.processor, self.metrics, self.max_records, self.types = processor, metrics, max_records, types
        self._lock = asyncio.Lock()
        self.ready = asyncio.Event()
        self.lag = 0  # records between the positions and the ends, at the last look

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._lock:
            yield

    async def run(self) -> None:
        positions: dict[tuple[str, int], int] = await self.processor.load()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.commit_group,
            enable_auto_commit=False,
            client_id=self.name,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            **fetch_pacing(self.batch_wait_ms),
        )
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - the topics' partitions, now
            tps = [TopicPartition(t, p) for t in self.inputs for p in sorted(consumer.partitions_for_topic(t) or ())]
            consumer.assign(tps)
            for tp in tps:
                if (tp.topic, tp.partition) in positions:
                    consumer.seek(tp, positions[(tp.topic, tp.partition)])
                else:
                    await consumer.seek_to_beginning(tp)
            caught_up_at = time.monotonic()
            while True:
                fetched = await consumer.getmany(timeout_ms=500, max_records=self.max_records)
                if fetched:
                    await self._handle(fetched)
                elif not self.ready.is_set():
                    self.ready.set()
                if time.monotonic() - caught_up_at > 0.5:
                    caught_up_at = time.monotonic()
                    ends = await consumer.end_offsets(tps)
                    self.lag = sum([max(0, ends[tp] - await consumer.position(tp)) for tp in tps])
                    if self.commit_group is not None:
                        await self._commit(consumer)
        finally:
            await consumer.stop()

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        async with self._lock:
            positions = {TopicPartition(t, p): o for (t, p), o in self.processor.positions.items()}
        if positions:
            try:
                await consumer.commit(positions)
            except KafkaError as exc:  # only a view for lag tools: the next round tries again
                log.debug("%s: positions not committed: %s", self.name, exc)

    async def _handle(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        async with self._lock:
            started = time.perf_counter()
            batch = Batch([])
            count = 0
            for raws in fetched.values():
                for raw in raws:
                    count += 1
                    if self.types is not None and (kind := type_header(raw)) is not None and kind not in self.types:
                        continue
                    record = as_record(raw)
                    if isinstance(record, str):
                        batch.rejected.append((raw, record))
                    else:
                        batch.records.append(record)
            if batch.records:
                await self.processor.process(batch)
            if batch.rejected:  # every replica letters it, under one id: readers of deadletter see one
                await self.producer.send_many(
                    [dead_letter(self.service, raw, reason) for raw, reason in batch.rejected]
                )
            self.processor.positions.update(
                {(tp.topic, tp.partition): raws[-1].offset + 1 for tp, raws in fetched.items() if raws}
            )
            self.metrics.records.labels(self.name).inc(count)
            self.metrics.batch.labels(self.name).observe(count)
            self.metrics.seconds.labels(self.name).observe(time.perf_counter() - started)
