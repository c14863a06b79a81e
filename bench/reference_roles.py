"""The five processes of the reference pipeline (bench/reference.py): deskstream's shape with
none of its business rules.

    HTTP ─▶ ingest ─A─▶ tickets ─B─┬─▶ routing ─C─▶ tickets (─B─▶ "assigned")
                                   ├─▶ sla
                                   └─▶ analytics

A = ref.ingest (one record per accepted request, key: session), B = ref.events (key: ticket),
C = ref.commands (key: ticket). Every consumer has its own group, reads batches with
`getmany`, writes its documents with `insert_many`, publishes, and only then commits the
batch's offsets: the same at-least-once order deskstream keeps. Document ids are derived
from the record, so a redelivered batch inserts nothing new (duplicate-key errors are
ignored) instead of doubling the rows.

How much each step writes is the `Shape` (command-line options), because the matching
deskstream numbers are still being settled.

Each role is started as `python -m bench.reference <role> ...` by bench/reference.py.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

TOPIC_INGEST, TOPIC_EVENTS, TOPIC_COMMANDS = "ref.ingest", "ref.events", "ref.commands"
ROLES = ("ingest", "tickets", "routing", "sla", "analytics")
GROUPS = {"tickets": "ref-tickets", "routing": "ref-routing", "sla": "ref-sla", "analytics": "ref-analytics"}
GROUP_TOPICS = {"ref-tickets": (TOPIC_INGEST, TOPIC_COMMANDS), "ref-routing": (TOPIC_EVENTS,),
                "ref-sla": (TOPIC_EVENTS,), "ref-analytics": (TOPIC_EVENTS,)}
CREATED, ADDED, UPDATED, ASSIGNED = b"created", b"message_added", b"updated", b"assigned"


SHAPE_HELP = {
    "partitions": "partitions of each of the three topics",
    "tickets_docs": "D_t: documents tickets inserts per message",
    "tickets_doc_bytes": "size of each tickets document (BSON bytes, about)",
    "tickets_records": "R_t: records tickets publishes on B per message (the first is created/message_added, "
                       "the rest 'updated')",
    "tickets_assign_docs": "documents tickets inserts per assignment it applies (before publishing 'assigned')",
    "routing_docs": "documents routing inserts per new ticket (the brief's routing decides in memory: 0)",
    "routing_doc_bytes": "size of each routing document",
    "sla_docs": "D_s: documents sla inserts per new ticket",
    "sla_doc_bytes": "size of each sla document",
    "analytics_docs": "D_a: documents analytics inserts per event on B (a new ticket makes two events, "
                      "created and assigned; a follow-up message one)",
    "analytics_doc_bytes": "size of each analytics document",
    "batch_records": "most records one getmany returns",
    "insert_chunk": "most documents per insert_many call (FerretDB splits inserts into transactions of 100)",
    "insert_concurrency": "insert_many calls in flight at once per process",
    "fetch_wait_ms": "how long the broker may hold a fetch that has less than --fetch-min-bytes to return",
    "fetch_min_bytes": "the broker answers a fetch once it has this much (or the wait is over)",
    "agents": "agents routing chooses from",
    "agent_capacity": "tickets per agent (tickets are never closed here, so room must outlast the run)",
    "database": "database name",
    "database_per_role": "one database per role; FerretDB's SQLite backend keeps each database in its own "
                         "file with its own writer, so this lets the three writers stop queueing on one file",
    "ingest_http": "ingest's HTTP front: a bare asyncio protocol, or Starlette on uvicorn/httptools",
    "ingest_linger_ms": "ingest producer linger: concurrent requests' records share a produce request",
}


@dataclass(frozen=True)
class Shape:
    """How much work one message makes. The defaults are a first guess at deskstream's numbers,
    which are still being settled: set them to match."""

    partitions: int = 6
    tickets_docs: int = 2
    tickets_doc_bytes: int = 1000
    tickets_records: int = 1
    tickets_assign_docs: int = 0
    routing_docs: int = 0
    routing_doc_bytes: int = 300
    sla_docs: int = 1
    sla_doc_bytes: int = 300
    analytics_docs: int = 1
    analytics_doc_bytes: int = 200
    batch_records: int = 500
    insert_chunk: int = 100
    insert_concurrency: int = 1
    fetch_wait_ms: int = 20
    fetch_min_bytes: int = 1
    agents: int = 16
    agent_capacity: int = 1_000_000
    database: str = "reference"
    database_per_role: bool = False
    ingest_http: str = "raw"
    ingest_linger_ms: int = 2

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("pipeline shape (work per message)")
        for f in dataclasses.fields(cls):
            flag = "--" + f.name.replace("_", "-")
            if f.type in ("bool", bool):
                group.add_argument(flag, action="store_true", help=SHAPE_HELP[f.name])
            elif f.name == "ingest_http":
                group.add_argument(flag, choices=("raw", "starlette"), default=f.default,
                                   help=SHAPE_HELP[f.name] + f" (default {f.default})")
            else:
                kind = int if isinstance(f.default, int) else str
                group.add_argument(flag, type=kind, default=f.default,
                                   help=SHAPE_HELP[f.name] + f" (default {f.default})")

    @classmethod
    def from_args(cls, ns: argparse.Namespace) -> Shape:
        return cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)})

    def to_argv(self) -> list[str]:
        out: list[str] = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                out += [flag] if value else []
            else:
                out += [flag, str(value)]
        return out

    def database_for(self, role: str) -> str:
        return f"{self.database}_{role}" if self.database_per_role else self.database


# ---------------------------------------------------------------------------------- pure parts
def validate_chat(obj: Any, now: float | None = None) -> dict[str, Any]:
    """The chat webhook's body, checked and normalised into the record ingest publishes."""
    if not isinstance(obj, dict):
        raise ValueError("body must be a JSON object")
    for name, limit in (("session_id", 200), ("message_id", 200), ("text", 100_000)):
        value = obj.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty string")
        if len(value) > limit:
            raise ValueError(f"{name} is longer than {limit}")
    customer = obj.get("customer") or {}
    if not isinstance(customer, dict) or not all(isinstance(customer.get(k, ""), str) for k in ("name", "visitor_id")):
        raise ValueError("customer must be an object of strings")
    sent_at = obj.get("sent_at")
    if sent_at is not None and not isinstance(sent_at, str):
        raise ValueError("sent_at must be a string")
    return {"message_id": obj["message_id"], "session_id": obj["session_id"], "text": obj["text"].strip(),
            "customer": {"name": customer.get("name", ""), "visitor_id": customer.get("visitor_id", "")},
            "sent_at": sent_at, "received_at": time.time() if now is None else now}


def padding(size: int, sample: dict[str, Any]) -> str:
    """A filler string that brings a document shaped like `sample` to about `size` BSON bytes."""
    import bson

    overhead = len(bson.encode({**sample, "pad": ""}))
    return "x" * max(0, size - overhead)


Out = tuple[bytes, bytes, bytes]  # (key, event type, value) of a record to publish


@dataclass
class Ticket:
    ticket_id: str
    opened_by: str
    messages: int = 0
    agent: str | None = None


class TicketBook:
    """The tickets process's memory: one open ticket per chat session. Turns each message or
    assignment into the documents to insert and the records to publish."""

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.by_session: dict[str, Ticket] = {}
        self.by_id: dict[str, Ticket] = {}
        self.pad = padding(shape.tickets_doc_bytes, self._doc("m-0123456789ab", 0, "T-m-0123456789ab", "timeline", ""))

    @staticmethod
    def _doc(mid: str, i: int, ticket_id: str, kind: str, pad: str) -> dict[str, Any]:
        return {"_id": f"{mid}:{i}", "ticket_id": ticket_id, "kind": kind, "at": time.time(), "pad": pad}

    def on_message(self, msg: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Out]]:
        ticket = self.by_session.get(msg["session_id"])
        kind = ADDED
        if ticket is None:
            # the id derives from the opening message, so a redelivery re-creates the same ticket
            ticket = Ticket(f"T-{msg['message_id']}", msg["message_id"])
            self.by_session[msg["session_id"]] = self.by_id[ticket.ticket_id] = ticket
            kind = CREATED
        ticket.messages += 1
        mid, tid = msg["message_id"], ticket.ticket_id
        docs = [self._doc(mid, i, tid, "message" if i == 0 else "timeline", self.pad)
                for i in range(self.shape.tickets_docs)]
        key, at = tid.encode(), time.time()
        outs: list[Out] = []
        for i in range(self.shape.tickets_records):
            if i == 0:
                value = {"type": kind.decode(), "ticket_id": tid, "opened_by": ticket.opened_by, "at": at,
                         "message": msg}
            else:
                value = {"type": "updated", "ticket_id": tid, "opened_by": ticket.opened_by, "at": at, "seq": i}
            outs.append((key, kind if i == 0 else UPDATED, orjson.dumps(value)))
        return docs, outs

    def on_assignment(self, cmd: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Out]]:
        ticket = self.by_id.get(cmd["ticket_id"])
        if ticket is None or ticket.agent is not None:
            return [], []  # unknown (another run's) or already applied: a redelivered command changes nothing
        ticket.agent = cmd["agent"]
        tid = ticket.ticket_id
        docs = [self._doc(f"{tid}:assigned", i, tid, "assignment", self.pad) for i in range(self.shape.tickets_assign_docs)]
        value = {"type": "assigned", "ticket_id": tid, "opened_by": ticket.opened_by, "agent": ticket.agent,
                 "at": time.time()}
        return docs, [(tid.encode(), ASSIGNED, orjson.dumps(value))]


class Router:
    """Routing's memory: agents with capacity, the least-loaded one with room takes a new ticket."""

    def __init__(self, agents: int, capacity: int) -> None:
        self.load = {f"agent-{i:02d}": 0 for i in range(agents)}
        self.capacity = capacity
        self.assigned: dict[str, str] = {}
        self.waiting: list[str] = []  # no room anywhere: kept, as deskstream's queue would

    def on_created(self, ticket_id: str) -> str | None:
        if ticket_id in self.assigned:
            return None  # a redelivered created event: the ticket already has its agent
        agent = min(self.load, key=self.load.__getitem__)
        if self.load[agent] >= self.capacity:
            self.waiting.append(ticket_id)
            return None
        self.load[agent] += 1
        self.assigned[ticket_id] = agent
        return agent


def event_type(record: Any) -> bytes:
    """The record's type header (CloudEvents binary mode keeps it out of the body), so consumers
    skip what they ignore without parsing JSON."""
    for name, value in record.headers or ():
        if name == "type":
            return value
    return b""


# ---------------------------------------------------------------------------------- process plumbing
class Context:
    def __init__(self, role: str, ns: argparse.Namespace) -> None:
        self.role = role
        self.ns = ns
        self.shape = Shape.from_args(ns)
        self.run_dir = Path(ns.run_dir)
        self.stop = asyncio.Event()
        # seconds are wall time spent waiting on each kind of call: where a batch's time goes
        self.stats: dict[str, Any] = {"role": role, "pid": os.getpid(), "batches": 0, "records_in": 0,
                                      "docs": 0, "insert_calls": 0, "records_out": 0, "max_batch": 0,
                                      "insert_s": 0.0, "publish_s": 0.0, "commit_s": 0.0, "batch_s": 0.0}
        self.ready = False

    def mark_ready(self) -> None:
        if not self.ready:
            self.ready = True
            (self.run_dir / f"{self.role}.ready").write_text(f"{os.getpid()}\n")

    def write_stats(self) -> None:
        tmp = self.run_dir / f".{self.role}.stats.json"
        tmp.write_text(json.dumps(self.stats))
        tmp.replace(self.run_dir / f"{self.role}.stats.json")

    async def watch_parent(self) -> None:
        # the bench may die without stopping us (kill -9, Ctrl-C twice): never outlive it
        while not self.stop.is_set():
            if self.ns.parent_pid and os.getppid() != self.ns.parent_pid:
                self.stop.set()
            await asyncio.sleep(1)


def producer(ctx: Context, linger_ms: int = 0) -> Any:
    from aiokafka import AIOKafkaProducer

    # acks=all + idempotence: what deskstream's "accepted means durable" costs
    return AIOKafkaProducer(bootstrap_servers=ctx.ns.bootstrap, acks="all", enable_idempotence=True,
                            linger_ms=linger_ms, client_id=f"ref-{ctx.role}")


class Inserter:
    def __init__(self, ctx: Context, collection: str) -> None:
        from pymongo import AsyncMongoClient

        # pymongo's own asyncio driver: no thread pool hop per call, unlike motor
        self.client = AsyncMongoClient(ctx.ns.mongodb_url, appname=f"ref-{ctx.role}")
        self.coll = self.client[ctx.shape.database_for(ctx.role)][collection]
        self.ctx = ctx
        self.sem = asyncio.Semaphore(max(1, ctx.shape.insert_concurrency))

    async def insert(self, docs: list[dict[str, Any]]) -> None:
        t0 = time.perf_counter()
        size = max(1, self.ctx.shape.insert_chunk)
        chunks = [docs[i:i + size] for i in range(0, len(docs), size)]
        if self.ctx.shape.insert_concurrency <= 1:
            for chunk in chunks:
                await self._one(chunk)
        else:
            await asyncio.gather(*(self._one(c) for c in chunks))
        self.ctx.stats["docs"] += len(docs)
        self.ctx.stats["insert_s"] += time.perf_counter() - t0

    async def _one(self, docs: list[dict[str, Any]]) -> None:
        from pymongo.errors import BulkWriteError

        async with self.sem:
            self.ctx.stats["insert_calls"] += 1
            try:
                await self.coll.insert_many(docs, ordered=False)
            except BulkWriteError as e:
                # duplicates are a redelivered batch's documents, already there; anything else is real
                details = e.details or {}
                if details.get("writeConcernErrors") or any(w.get("code") != 11000
                                                            for w in details.get("writeErrors", [])):
                    raise

    async def close(self) -> None:
        await self.client.close()


async def publish(ctx: Context, prod: Any, topic: str, outs: list[Out]) -> None:
    # send all, then await all: the producer batches them per partition instead of one round trip each
    t0 = time.perf_counter()
    futures = [await prod.send(topic, value, key=key, headers=[("type", kind)]) for key, kind, value in outs]
    if futures:
        await asyncio.gather(*futures)
    ctx.stats["records_out"] += len(futures)
    ctx.stats["publish_s"] += time.perf_counter() - t0


async def consume(ctx: Context, topics: tuple[str, ...], handle: Callable[[list[Any]], Awaitable[None]]) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=ctx.ns.bootstrap, group_id=GROUPS[ctx.role],
                                client_id=f"ref-{ctx.role}", enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=ctx.shape.fetch_wait_ms,
                                fetch_min_bytes=ctx.shape.fetch_min_bytes,
                                max_poll_records=ctx.shape.batch_records)
    await consumer.start()
    try:
        while not ctx.stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=ctx.shape.batch_records)
            if consumer.assignment():
                ctx.mark_ready()
            if not batch:
                continue
            t0 = time.perf_counter()
            records = [r for recs in batch.values() for r in recs]
            await handle(records)
            t1 = time.perf_counter()
            # commit exactly what was handled (not the prefetched position), after the writes
            await consumer.commit({tp: recs[-1].offset + 1 for tp, recs in batch.items()})
            s = ctx.stats
            s["commit_s"] += time.perf_counter() - t1
            s["batch_s"] += time.perf_counter() - t0
            s["batches"] += 1
            s["records_in"] += len(records)
            s["max_batch"] = max(s["max_batch"], len(records))
    finally:
        await consumer.stop()


# ---------------------------------------------------------------------------------- the roles
async def run_ingest(ctx: Context) -> None:
    from aiokafka.errors import KafkaError

    from bench.reference_http import HttpServerProtocol

    prod = producer(ctx, ctx.shape.ingest_linger_ms)
    await prod.start()
    s = ctx.stats
    s.update(requests=0, accepted=0, rejected=0)

    async def handle(method: str, path: str, body: bytes) -> tuple[int, bytes]:
        if path == "/healthz":
            return 200, b'{"status":"ok"}'
        if path != "/chat":
            return 404, b'{"error":"not found"}'
        if method != "POST":
            return 405, b'{"error":"POST only"}'
        s["requests"] += 1
        try:
            msg = validate_chat(orjson.loads(body))
        except ValueError as e:  # orjson.JSONDecodeError is a ValueError
            s["rejected"] += 1
            return 400, orjson.dumps({"error": str(e)})
        try:
            # 202 only after the broker acknowledged the record (acks=all)
            await (await prod.send(TOPIC_INGEST, orjson.dumps(msg), key=msg["session_id"].encode()))
        except KafkaError as e:
            s["rejected"] += 1
            return 503, orjson.dumps({"error": type(e).__name__})
        s["accepted"] += 1
        s["records_out"] += 1
        return 202, orjson.dumps({"message_id": msg["message_id"]})

    try:
        if ctx.shape.ingest_http == "raw":
            loop = asyncio.get_running_loop()
            server = await loop.create_server(lambda: HttpServerProtocol(handle), "127.0.0.1", ctx.ns.ingest_port,
                                              backlog=1024, reuse_address=True)
            ctx.mark_ready()
            await ctx.stop.wait()
            server.close()
        else:
            await _serve_starlette(ctx, handle)
    finally:
        await prod.stop()


async def _serve_starlette(ctx: Context, handle: Callable[[str, str, bytes], Awaitable[tuple[int, bytes]]]) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def chat(request: Request) -> Response:
        status, payload = await handle("POST", "/chat", await request.body())
        return Response(payload, status, media_type="application/json")

    async def health(_: Request) -> Response:
        return Response(b'{"status":"ok"}', 200, media_type="application/json")

    app = Starlette(routes=[Route("/chat", chat, methods=["POST"]), Route("/healthz", health)])
    config = uvicorn.Config(app, host="127.0.0.1", port=ctx.ns.ingest_port, http="httptools", lifespan="off",
                            log_level="warning", access_log=False, backlog=1024)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    ctx.mark_ready()
    stopper = asyncio.create_task(ctx.stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    await task
    stopper.cancel()


async def run_tickets(ctx: Context) -> None:
    book = TicketBook(ctx.shape)
    db = Inserter(ctx, "tickets_docs")
    prod = producer(ctx)
    await prod.start()
    ctx.stats.update(messages=0, assignments=0, tickets=0)

    async def handle(records: list[Any]) -> None:
        docs: list[dict[str, Any]] = []
        outs: list[Out] = []
        for r in records:  # in order: a session's messages share a partition of A
            if r.topic == TOPIC_INGEST:
                d, o = book.on_message(orjson.loads(r.value))
                ctx.stats["messages"] += 1
            else:
                d, o = book.on_assignment(orjson.loads(r.value))
                ctx.stats["assignments"] += 1
            docs += d
            outs += o
        if docs:
            await db.insert(docs)
        await publish(ctx, prod, TOPIC_EVENTS, outs)
        ctx.stats["tickets"] = len(book.by_id)

    try:
        await consume(ctx, (TOPIC_INGEST, TOPIC_COMMANDS), handle)
    finally:
        await prod.stop()
        await db.close()


async def run_routing(ctx: Context) -> None:
    router = Router(ctx.shape.agents, ctx.shape.agent_capacity)
    db = Inserter(ctx, "routing_docs")
    prod = producer(ctx)
    await prod.start()
    pad = padding(ctx.shape.routing_doc_bytes, {"_id": "T-m-0123456789ab:r0", "ticket_id": "T-m-0123456789ab",
                                                "agent": "agent-00", "at": 0.0})
    ctx.stats.update(assigned=0)

    async def handle(records: list[Any]) -> None:
        docs: list[dict[str, Any]] = []
        outs: list[Out] = []
        for r in records:
            if event_type(r) != CREATED:
                continue
            e = orjson.loads(r.value)
            agent = router.on_created(e["ticket_id"])
            if agent is None:
                continue
            tid = e["ticket_id"]
            docs += [{"_id": f"{tid}:r{i}", "ticket_id": tid, "agent": agent, "at": time.time(), "pad": pad}
                     for i in range(ctx.shape.routing_docs)]
            outs.append((r.key, b"assign", orjson.dumps({"ticket_id": tid, "agent": agent,
                                                         "opened_by": e["opened_by"], "at": time.time()})))
        if docs:
            await db.insert(docs)
        await publish(ctx, prod, TOPIC_COMMANDS, outs)
        ctx.stats["assigned"] = len(router.assigned)

    try:
        await consume(ctx, (TOPIC_EVENTS,), handle)
    finally:
        await prod.stop()
        await db.close()


async def run_sla(ctx: Context) -> None:
    db = Inserter(ctx, "sla_docs")
    pad = padding(ctx.shape.sla_doc_bytes, {"_id": "T-m-0123456789ab:s0", "ticket_id": "T-m-0123456789ab",
                                            "due_at": 0.0, "policy": "default", "at": 0.0})
    ctx.stats.update(clocks=0)

    async def handle(records: list[Any]) -> None:
        docs: list[dict[str, Any]] = []
        for r in records:
            if event_type(r) != CREATED:
                continue
            e = orjson.loads(r.value)
            tid, now = e["ticket_id"], time.time()
            docs += [{"_id": f"{tid}:s{i}", "ticket_id": tid, "due_at": now + 21600, "policy": "default",
                      "at": now, "pad": pad} for i in range(ctx.shape.sla_docs)]
            ctx.stats["clocks"] += 1
        if docs:
            await db.insert(docs)

    try:
        await consume(ctx, (TOPIC_EVENTS,), handle)
    finally:
        await db.close()


async def run_analytics(ctx: Context) -> None:
    db = Inserter(ctx, "analytics_docs")
    pad = padding(ctx.shape.analytics_doc_bytes, {"_id": "ref.events:0:0000000:0", "ticket_id": "T-m-0123456789ab",
                                                  "type": "message_added", "at": 0.0})

    async def handle(records: list[Any]) -> None:
        docs: list[dict[str, Any]] = []
        for r in records:
            # a fact per event; the id is the record's place in the log, so a redelivery adds nothing
            base = f"{r.topic}:{r.partition}:{r.offset}"
            kind, tid = event_type(r).decode(), r.key.decode()
            docs += [{"_id": f"{base}:{i}", "ticket_id": tid, "type": kind, "at": r.timestamp / 1000, "pad": pad}
                     for i in range(ctx.shape.analytics_docs)]
        if docs:
            await db.insert(docs)

    try:
        await consume(ctx, (TOPIC_EVENTS,), handle)
    finally:
        await db.close()


RUNNERS: dict[str, Callable[[Context], Awaitable[None]]] = {
    "ingest": run_ingest, "tickets": run_tickets, "routing": run_routing, "sla": run_sla, "analytics": run_analytics}


def role_parser(role: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m bench.reference {role}",
                                description=f"the reference pipeline's {role} process (started by bench/reference.py)")
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    p.add_argument("--mongodb-url", required=True)
    p.add_argument("--run-dir", required=True, help="where the ready marker and the stats file go")
    p.add_argument("--ingest-port", type=int, default=26001)
    p.add_argument("--parent-pid", type=int, default=0, help="exit when this process is gone")
    Shape.add_args(p)
    return p


def run_role(role: str, argv: list[str]) -> int:
    ns = role_parser(role).parse_args(argv)

    async def main() -> None:
        ctx = Context(role, ns)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, ctx.stop.set)
        watcher = asyncio.create_task(ctx.watch_parent())
        try:
            await RUNNERS[role](ctx)
        finally:
            watcher.cancel()
            ctx.stats["cpu_s"] = round(sum(os.times()[:2]), 2)
            ctx.write_stats()

    run_async(main())
    return 0


def run_async(coro: Awaitable[Any]) -> Any:
    """asyncio.run on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)  # type: ignore[arg-type]


if __name__ == "__main__":  # pragma: no cover - started through bench.reference
    sys.exit(run_role(sys.argv[1], sys.argv[2:]))
