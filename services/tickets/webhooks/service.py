"""Delivering every ticket and SLA event to the webhook subscriptions that want it.

A consumer group of its own (`tickets-webhooks`) on `tickets.events` and `sla.events`, so the
message path never waits for a subscriber, and this group may lag when one is slow. For each
consumed batch it matches events to subscriptions in memory, inserts one queue document per
(subscription, event) in one `insert_many`, and only then lets the batch's offsets be committed:
a crash replays the batch and the keyed inserts add nothing twice. The process that owns a
partition owns the deliveries of its tickets: it keeps them in memory as lanes, one per
(subscription, ticket), restored from the queue when the partition is assigned.

Only a lane's head is sent, so a ticket's events reach a subscriber in order; a head that fails
is retried with back-off while the other lanes go on; each subscriber has a bounded number of
requests in flight, so a dead one uses only its own share. Attempts are appended to the log in
batches; a finished delivery leaves the queue in a batch too. Redelivery after a crash is the
at-least-once part: receivers de-duplicate on `webhook-id` (the CloudEvent id)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.tickets.webhooks.rules import (
    SECRET_PREFIX,
    Breakers,
    Queued,
    Refused,
    RetryPolicy,
    check_addresses,
    check_url,
    is_success,
    ready,
    signed_headers,
    wants,
)
from services.tickets.webhooks.store import WebhookStore
from shared import topics
from shared.credentials import Vault
from shared.events import EventType, WebhookDisabled, utcnow
from shared.stream import Batch

log = logging.getLogger(__name__)
SOURCES = (topics.TICKETS_EVENTS, topics.SLA_EVENTS)
Lane = tuple[str, str]


def seq_of(queued_at: datetime, topic: str, partition: int, offset: int) -> str:
    """The order deliveries were queued in, sortable as text: the batch's time, then the record's place."""
    return (
        f"{int(queued_at.timestamp() * 1000):014d}:{SOURCES.index(topic) if topic in SOURCES else 9}:"
        f"{partition:04d}:{offset:014d}"
    )


@dataclass(slots=True)
class Entry:
    """One delivery waiting in its lane."""

    id: str
    webhook_id: str
    event_id: str
    ticket: str
    partition: int
    seq: str
    type: str
    body: bytes
    first_at: datetime
    next_at: datetime
    attempts: int = 0

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Entry:
        return cls(
            id=doc["_id"],
            webhook_id=doc["webhook_id"],
            event_id=doc["event_id"],
            ticket=doc["ticket"],
            partition=doc["partition"],
            seq=doc["seq"],
            type=doc["type"],
            body=doc["body"].encode(),
            first_at=doc["queued_at"],
            next_at=doc["queued_at"],
        )


def _before(seq: str) -> str:
    """A `seq` just below this one (everything up to it is held; this one and later wait)."""
    return seq[:-1] + chr(ord(seq[-1]) - 1) + "~" if seq else seq


def queue_doc(
    webhook_id: str,
    record_event: dict[str, Any],
    body: bytes,
    *,
    ticket: str,
    topic: str,
    partition: int,
    offset: int,
    queued_at: datetime,
    replay_id: str | None = None,
) -> dict[str, Any]:
    event_id = record_event["id"]
    return {
        "_id": f"{webhook_id}|{event_id}" + (f"|{replay_id}" if replay_id else ""),
        "webhook_id": webhook_id,
        "event_id": event_id,
        "type": record_event["type"],
        "ticket": ticket,
        "partition": partition,
        "seq": seq_of(queued_at, topic, partition, offset),
        "body": body.decode(),
        "queued_at": queued_at,
    }


class Subscriptions:
    """Every subscription, held in memory and read again at most every `max_age_s` (or at once after
    any process announced a change): one read per batch at most, never per event."""

    def __init__(
        self,
        store: WebhookStore,
        max_age_s: float = 1.0,
        on_read: Callable[[dict[str, dict[str, Any]]], None] | None = None,
    ) -> None:
        self.store = store
        self.max_age_s = max_age_s
        self.on_read = on_read  # told what was read (the consumer narrows the types it parses)
        self.by_id: dict[str, dict[str, Any]] = {}
        self._read_at = float("-inf")

    def invalidate(self) -> None:
        self._read_at = float("-inf")

    async def current(self) -> dict[str, dict[str, Any]]:
        if time.monotonic() - self._read_at > self.max_age_s:
            self.by_id = {d["_id"]: d for d in await self.store.all()}
            self._read_at = time.monotonic()
            if self.on_read is not None:
                self.on_read(self.by_id)
        return self.by_id


class Dispatcher:
    """The lanes of the partitions this process owns, and the requests that work them off."""

    def __init__(
        self,
        *,
        store: WebhookStore,
        subscriptions: Subscriptions,
        client: httpx.AsyncClient,
        retry: RetryPolicy,
        allow_private: bool,
        per_webhook: int = 8,
        timeout_s: float = 10.0,
        disabled: Callable[[WebhookDisabled], Awaitable[None]] | None = None,
        clock: Callable[[], datetime] = utcnow,
        vault: Vault | None = None,
        breakers: Breakers | None = None,
        max_pending: int = 50_000,
    ) -> None:
        self.store, self.subscriptions, self.client, self.retry = store, subscriptions, client, retry
        # a subscriber failing again and again is probed with one delivery at a time instead of every lane
        self.breakers = breakers or Breakers(base_s=retry.base_s, cap_s=min(retry.cap_s, 300.0))
        self.vault = vault  # opens the sealed signing secrets (one kept in clear, from before, is used as it is)
        self.allow_private, self.per_webhook, self.timeout_s = allow_private, per_webhook, timeout_s
        self.disabled, self.clock = disabled, clock
        self.lanes: dict[Lane, deque[Entry]] = {}
        self.known: set[str] = set()
        self.busy: set[Lane] = set()
        self.in_flight: dict[str, int] = {}
        self.last_ok: dict[str, datetime] = {}
        self.attempts: list[dict[str, Any]] = []  # the log, written in batches by `flush`
        self.finished: list[str] = []
        self.owned: set[int] = set()  # the partitions whose lanes are here
        # at most `max_pending` deliveries are held in memory (a long outage of a busy subscriber); the ones
        # queued after `spilled_after` wait in the durable queue and are read back in pages as lanes drain
        self.max_pending = max_pending
        self.spilled_after: str | None = None
        self._paging = False
        self._arrived: list[dict[str, Any]] = []  # queued while a page was being read
        self._flushing: set[str] = set()
        self._reload = False
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def changed(self) -> None:
        """Some process changed a subscription or queued a replay: read both again (every process)."""
        self.subscriptions.invalidate()
        self._reload = True
        self._wake.set()

    # ------------------------------------------------------------ what is queued
    def add(self, docs: list[dict[str, Any]]) -> None:
        last_seq: str | None = None
        for doc in sorted(docs, key=lambda d: d["seq"]):
            if doc["_id"] in self.known:
                continue
            if self.spilled_after is not None and doc["seq"] > self.spilled_after:
                if self._paging:
                    self._arrived.append(doc)
                continue  # in the durable queue; read back when there is room
            if len(self.known) >= self.max_pending and doc["seq"] != last_seq:
                self.spilled_after = last_seq if last_seq is not None else _before(doc["seq"])
                if self._paging:
                    self._arrived.append(doc)
                continue
            last_seq = doc["seq"]
            entry = Entry.of(doc)
            self.known.add(entry.id)
            lane = self.lanes.setdefault((entry.webhook_id, entry.ticket), deque())
            if lane and lane[-1].seq > entry.seq:  # restored behind what is already here (a replay)
                lane.append(entry)
                ordered = sorted(lane, key=lambda e: e.seq)
                lane.clear()
                lane.extend(ordered)
            else:
                lane.append(entry)
        self._wake.set()

    def erase(self, tickets: set[str]) -> None:
        """Erased tickets: their queued deliveries are not sent (one being sent right now finishes)."""
        for key in [k for k in self.lanes if k[1] in tickets]:
            lane = self.lanes[key]
            head = lane[0] if key in self.busy and lane else None
            for gone in lane:
                if gone is not head:
                    self.known.discard(gone.id)
            if head is not None:
                self.lanes[key] = deque([head])
            else:
                del self.lanes[key]

    def drop(self, partitions: set[int]) -> None:
        """Another process owns these partitions now (or they are being reloaded)."""
        for key in list(self.lanes):
            kept = deque(e for e in self.lanes[key] if e.partition not in partitions)
            for gone in self.lanes[key]:
                if gone.partition in partitions:
                    self.known.discard(gone.id)
            if kept:
                self.lanes[key] = kept
            else:
                del self.lanes[key]

    def queued(self, webhook_id: str) -> int:
        return sum(len(q) for (wh, _), q in self.lanes.items() if wh == webhook_id)

    # ------------------------------------------------------------ working the lanes off
    async def run(self) -> None:
        while True:
            if self._reload and self.owned:
                loaded, last = await self.store.page(set(self.owned), limit=self.max_pending)
                self._reload = False
                self.add_page([d for d in loaded if d["partition"] in self.owned], last)
            elif self.spilled_after is not None and self.owned and len(self.known) <= self.max_pending // 2:
                await self.read_back()
            subs = await self.subscriptions.current()
            now = self.clock()
            for key in [k for k in self.lanes if k[0] not in subs]:  # the subscription was deleted
                for entry in self.lanes.pop(key):
                    self.known.discard(entry.id)
            limits: dict[str, int] = {}
            heads = []
            for key, q in self.lanes.items():
                if not q or not subs[key[0]].get("active", True):
                    continue
                if key[0] not in limits:
                    limits[key[0]] = self.breakers.allowance(key[0], now, self.per_webhook)
                if limits[key[0]]:  # an open breaker's lanes wait; its probe goes when due, whatever lane it is
                    probe = limits[key[0]] == 1 and self.per_webhook > 1
                    heads.append(Queued(key, min(q[0].next_at, now) if probe else q[0].next_at))
            for key in ready(
                heads,
                now=now,
                busy=self.busy,
                in_flight=self.in_flight,
                limit_per_webhook=self.per_webhook,
                limits=limits,
            ):
                self.breakers.sent(key[0])
                self.busy.add(key)
                self.in_flight[key[0]] = self.in_flight.get(key[0], 0) + 1
                task = asyncio.create_task(self._attempt(key, self.lanes[key][0], subs[key[0]]))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), 0.25)
            except TimeoutError:
                pass

    async def send(self, sub: dict[str, Any], entry: Entry) -> tuple[int | None, str | None]:
        """One POST; (status, error). A target that resolves into our network is refused each time
        (its DNS may have changed since it was checked)."""
        try:
            host = check_url(sub["url"])
            if not self.allow_private:
                infos = await asyncio.get_running_loop().getaddrinfo(host, None)
                check_addresses({str(i[4][0]) for i in infos}, allow_private=False)  # (the address: str for IP)
        except (Refused, OSError, ValueError) as exc:
            return None, f"refused: {exc}"
        secret = sub["secret"]
        if self.vault is not None and not secret.startswith(SECRET_PREFIX):
            secret = self.vault.open(secret)
        headers = signed_headers(secret, entry.event_id, int(time.time()), entry.body)
        try:
            r = await self.client.post(sub["url"], content=entry.body, headers=headers, timeout=self.timeout_s)
        except httpx.TimeoutException:
            return None, f"no answer within {self.timeout_s:g} s"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:300]
        return r.status_code, None if is_success(r.status_code) else f"answered {r.status_code}"

    async def _attempt(self, key: Lane, entry: Entry, sub: dict[str, Any]) -> None:
        try:
            started = time.perf_counter()
            status, error = await self.send(sub, entry)
            latency_ms = round((time.perf_counter() - started) * 1000, 1)
            now = self.clock()
            entry.attempts += 1
            next_at = None
            if is_success(status):
                outcome = "delivered"
                self.last_ok[entry.webhook_id] = now
                if self.breakers.succeeded(entry.webhook_id):
                    log.info("webhook %s answers again: every lane resumes", entry.webhook_id)
                self._pull_forward(entry.webhook_id, now)
            else:
                next_at = self.retry.next_attempt(entry.attempts, now, entry.first_at)
                outcome = "retrying" if next_at else "failed"
                if self.breakers.failed(entry.webhook_id, now):
                    state = self.breakers.state(entry.webhook_id, now)
                    log.info(
                        "webhook %s keeps failing (%s): lanes paused, next probe at %s",
                        entry.webhook_id,
                        error,
                        state.get("next_probe_at"),
                    )
            self.attempts.append(
                {
                    "_id": f"{entry.id}#{uuid.uuid4().hex[:12]}",
                    "webhook_id": entry.webhook_id,
                    "delivery_id": entry.id,
                    "event_id": entry.event_id,
                    "type": entry.type,
                    "ticket": entry.ticket,
                    "attempt": entry.attempts,
                    "at": now,
                    "status_code": status,
                    "latency_ms": latency_ms,
                    "error": error,
                    "outcome": outcome,
                    "next_attempt_at": next_at,
                    "final": next_at is None,
                }
            )
            lane = self.lanes.get(key)
            if next_at is not None:
                entry.next_at = next_at
                return
            self.finished.append(entry.id)
            if lane and lane[0] is entry:
                lane.popleft()
                self.known.discard(entry.id)
                if not lane:
                    del self.lanes[key]
            if outcome == "failed":
                await self._maybe_disable(sub, now)
        except Exception:
            log.exception("webhook %s: attempt of %s failed unexpectedly", entry.webhook_id, entry.id)
            entry.next_at = self.clock() + timedelta(seconds=self.retry.base_s)
        finally:
            self.busy.discard(key)
            self.in_flight[key[0]] -= 1
            self._wake.set()

    async def read_back(self) -> None:
        """The next page of deliveries that waited in the durable queue (queued after `spilled_after`)."""
        after = self.spilled_after
        self._paging, self._arrived = True, []
        try:
            docs, last = await self.store.page(set(self.owned), after=after, limit=max(1, self.max_pending // 2))
        finally:
            self._paging = False
        arrived, self._arrived = self._arrived, []
        forgetting = set(self.finished) | self._flushing  # done, but not yet out of the queue
        docs = [d for d in docs if d["_id"] not in forgetting and d["partition"] in self.owned]
        if last is None:  # caught up: what was queued meanwhile joins too
            self.spilled_after = None
            self.add(docs + arrived)
            return
        self.spilled_after = None
        self.add_page(docs, last)

    def add_page(self, docs: list[dict[str, Any]], last: str | None) -> None:
        """A page read from the queue; `last`: the page was full (see WebhookStore.page)."""
        if last is None:
            self.add(docs)
            return
        # a page may end within one seq's deliveries (one event, several subscriptions): those come next time
        whole = [d for d in docs if d["seq"] < last] or docs
        upto = max(d["seq"] for d in whole) if whole else last
        self.spilled_after = upto if self.spilled_after is None else min(self.spilled_after, upto)
        self.add(whole)

    def _pull_forward(self, webhook_id: str, now: datetime) -> None:
        """The subscriber answers again: its lanes waiting out a back-off go now, not hours later."""
        for (wh, _), lane in self.lanes.items():
            if wh == webhook_id and lane and lane[0].attempts and lane[0].next_at > now:
                lane[0].next_at = now

    async def _maybe_disable(self, sub: dict[str, Any], now: datetime) -> None:
        """A subscriber that has not taken a delivery for the whole retry period is switched off."""
        since = self.last_ok.get(sub["_id"]) or sub.get("updated_at") or sub.get("created_at") or now
        if (now - since).total_seconds() < self.retry.give_up_after_s or not sub.get("active", True):
            return
        reason = f"no delivery succeeded for {self.retry.give_up_after_s / 3600:g} h"
        sub["active"] = False
        await self.store.disable(sub["_id"], reason=reason, at=now)
        self.subscriptions.invalidate()
        if self.disabled is not None:
            await self.disabled(WebhookDisabled(webhook_id=sub["_id"], url=sub["url"], reason=reason, at=now))

    async def flush(self) -> int:
        """Append the attempts made since the last flush, then let finished deliveries leave the queue."""
        attempts, finished = self.attempts, self.finished
        self.attempts, self.finished = [], []
        self._flushing.update(finished)
        try:
            await self.store.record(attempts)
            await self.store.forget(finished)
        except Exception:
            self.attempts[:0], self.finished[:0] = attempts, finished
            raise
        finally:
            self._flushing.difference_update(finished)
        return 0

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.flush()


class WebhookProcessor:
    """The stream processor of `tickets-webhooks`: matches a batch, queues it durably, hands it on."""

    def __init__(
        self,
        *,
        store: WebhookStore,
        subscriptions: Subscriptions,
        dispatcher: Dispatcher,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store, self.subscriptions, self.dispatcher, self.clock = store, subscriptions, dispatcher, clock

    async def load(self, partitions: set[int]) -> tuple[list[dict[str, Any]], str | None]:
        return await self.store.page(partitions, limit=self.dispatcher.max_pending)

    def install(self, partitions: set[int], loaded: tuple[list[dict[str, Any]], str | None]) -> None:
        docs, last = loaded
        self.dispatcher.owned |= partitions
        self.dispatcher.add_page(docs, last)  # with more waiting in the queue: read back in pages

    def revoke(self, partitions: set[int]) -> None:
        self.dispatcher.owned -= partitions
        self.dispatcher.drop(partitions)

    async def process(self, batch: Batch) -> None:
        erased = erased_tickets(batch.records)
        if erased:  # an erasure (issue 16): what is still queued of these tickets is not sent, and goes
            await self.store.forget_tickets(erased)
            self.dispatcher.erase(erased)
        subs = [s for s in (await self.subscriptions.current()).values() if s.get("active", True)]
        if not subs:
            return
        now = self.clock()
        docs = [
            queue_doc(
                sub["_id"],
                r.event,
                without_identities(r),
                ticket=r.key or r.event.get("subject") or "",
                topic=r.topic,
                partition=r.partition,
                offset=r.offset,
                queued_at=now,
            )
            for r in batch.records
            for sub in subs
            if wants(sub.get("events") or ["*"], r.type) and not (r.key in erased and r.type != EventType.TICKET_PURGED)
        ]
        await self.store.enqueue(docs)
        self.dispatcher.add(docs)


# what the consumer parses whatever the subscriptions want: an erasure must reach the queue
ALWAYS_READ = frozenset({EventType.TICKET_PURGED})


def erased_tickets(records: list[Any]) -> set[str]:
    return {
        r.key
        for r in records
        if r.type == EventType.TICKET_PURGED and r.key and ((r.event.get("data") or {}).get("reason") == "erasure")
    }


def without_identities(record: Any) -> bytes:
    """The body queued for subscribers. `deskstream.customer.erased` names the erased customer's
    identities; queued for a subscriber that may be down for a day, they would outlive the erasure in
    the database, so subscribers get them as SHA-256 digests (`sha256:<hex>` of `kind:value`), enough to
    find their own copies."""
    if record.type != EventType.CUSTOMER_ERASED:
        return record.raw.value
    event = json.loads(record.raw.value)
    data = event.get("data") or {}
    data["identities"] = ["sha256:" + hashlib.sha256(str(k).encode()).hexdigest() for k in data.get("identities", [])]
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()


async def matching_since(
    bootstrap_servers: str,
    partitions: Callable[[str], Awaitable[int]],
    patterns: list[str],
    since: datetime,
    limit: int = 100_000,
) -> list[tuple[str, int, int, str | None, bytes, dict[str, Any]]]:
    """The records of `tickets.events` and `sla.events` from `since` up to their ends as of now whose
    type the patterns want: (topic, partition, offset, key, body, event). Kafka is the log replays read."""
    from shared.kafka import decode

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False)
    await consumer.start()
    found: list[tuple[str, int, int, str | None, bytes, dict[str, Any]]] = []
    try:
        tps = [TopicPartition(t, p) for t in SOURCES for p in range(await partitions(t))]
        consumer.assign(tps)
        starts = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
        ends = await consumer.end_offsets(tps)
        todo = {tp for tp in tps if starts.get(tp) is not None and starts[tp].offset < ends[tp]}
        for tp in tps:
            if tp in todo:
                consumer.seek(tp, starts[tp].offset)
            else:
                consumer.pause(tp)
        while todo and len(found) < limit:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=1000)
            for tp, raws in fetched.items():
                for raw in raws:
                    if tp not in todo or raw.offset >= ends[tp]:
                        continue
                    try:
                        event = decode(raw.value)
                    except (ValueError, TypeError):
                        continue
                    if (
                        isinstance(event, dict)
                        and isinstance(event.get("type"), str)
                        and event.get("id")
                        and wants(patterns, event["type"])
                    ):
                        key = raw.key.decode(errors="replace") if raw.key else event.get("subject")
                        found.append((tp.topic, tp.partition, raw.offset, key, raw.value, event))
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
                    consumer.pause(tp)
    finally:
        await consumer.stop()
    return found
