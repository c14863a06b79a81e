"""A small HTTP/1.1 load generator on asyncio streams, cheap enough to share two cores with
the service it measures.

Open loop (`run_open_loop`): requests leave on a clock whether or not earlier ones were
answered, so a slow server shows up as latency instead of silently lowering the load
(coordinated omission). Each request's latency counts from the moment it was *due*, so
time spent waiting in the client also counts against the server. Closed loop
(`run_closed_loop`): each of N connections sends its next request when the previous one is
answered — the way to find the most a server does with N requests in flight.

Connections are keep-alive. In the open loop, when every one is waiting for an answer another
is opened (up to `max_connections`), since a request queued behind another on a connection
would wait for that one's answer; past the maximum, requests are pipelined (HTTP/1.1 answers
in order, so a FIFO per connection matches them). A request costs ~30 µs of Python here;
the process's CPU a request, 40–90 µs depending on the rate, is mostly the socket write and
the wake-ups, which any client pays (httpx: several hundred µs a request).

    .venv/bin/python -m bench.loadgen --url http://127.0.0.1:8001 --rate 1000 --duration 10
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MakeRequest = Callable[[], tuple[str, bytes, str]]  # (path, body, content type); StopIteration ends the run
ERROR = 0  # the status recorded for a request that got no answer (connection refused, reset, closed)


@dataclass
class Results:
    """One row per request, in the order they were due. Times are `time.perf_counter()` seconds;
    `answered[i]` is None when request i got no answer before the run gave up on it."""

    rate: float | None  # requests/s asked for (None: closed loop)
    duration_s: float  # how long requests were being sent
    connections: int  # connections used (open loop: opened as needed, up to its maximum)
    due: list[float] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)
    answered: list[float | None] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    message_id: list[str | None] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    pipelined: int = 0  # requests written behind another one still unanswered on its connection
    client_cpu_s: float = 0.0  # CPU this process spent (the generator's own cost)
    started_at: float = 0.0
    finished_at: float = 0.0  # when the last answer came (or the drain gave up)

    def _new(self, due: float) -> int:
        self.due.append(due)
        self.sent.append(0.0)
        self.answered.append(None)
        self.status.append(ERROR)
        self.message_id.append(None)
        return len(self.due) - 1

    @property
    def requests(self) -> int:
        return len(self.due)

    def latencies_s(self, status: int | None = None) -> list[float]:
        """Answer time minus due time of every answered request (of one status, if given), sorted."""
        return sorted(a - d for a, d, s in zip(self.answered, self.due, self.status)
                      if a is not None and (status is None or s == status))

    def percentile_ms(self, q: float, status: int | None = None) -> float | None:
        values = self.latencies_s(status)
        if not values:
            return None
        return round(values[min(len(values) - 1, int(len(values) * q))] * 1000, 2)

    @property
    def statuses(self) -> dict[str, int]:
        return {str(k): v for k, v in sorted(Counter(self.status).items())}

    @property
    def unanswered(self) -> int:
        return sum(a is None for a in self.answered)

    def answered_per_s(self, status: int | None = 202) -> float:
        """Answers (of `status`) a second over the whole run, the drain after sending included:
        a server that falls behind shows here, below the rate asked for."""
        n = sum(1 for a, s in zip(self.answered, self.status) if a is not None and (status is None or s == status))
        span = self.finished_at - self.started_at
        return round(n / span, 1) if span > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {"rate": self.rate, "connections": self.connections, "duration_s": round(self.duration_s, 2),
                "requests": self.requests, "statuses": self.statuses, "unanswered": self.unanswered,
                "answered_per_s": self.answered_per_s(), "p50_ms": self.percentile_ms(0.50),
                "p90_ms": self.percentile_ms(0.90), "p99_ms": self.percentile_ms(0.99),
                "max_ms": self.percentile_ms(1.0), "pipelined": self.pipelined,
                "errors": dict(self.errors),
                "client_cpu_us_per_request": round(self.client_cpu_s / max(1, self.requests) * 1e6, 1)}


class ProtocolError(Exception):
    pass


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 response: (status, body, whether the server keeps the connection open)."""
    head = await reader.readuntil(b"\r\n\r\n")
    line_end = head.index(b"\r\n")
    status_line = head[:line_end]
    if not status_line.startswith(b"HTTP/1."):
        raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    status = int(status_line[9:12])
    length: int | None = None
    chunked = False
    keep_alive = status_line[7:8] == b"1"  # HTTP/1.1 keeps connections by default, 1.0 does not
    # headers are few and short: a split on the block is cheaper than a parser call per line
    for line in head[line_end + 2:-4].split(b"\r\n"):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            token = value.strip().lower()
            keep_alive = token != b"close" and (keep_alive or token == b"keep-alive")
    if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
        return await read_response(reader)
    if status in (204, 304):
        return status, b"", keep_alive
    if chunked:
        parts = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, up to the blank line
                    pass
                return status, b"".join(parts), keep_alive
            chunk = await reader.readexactly(size + 2)
            parts.append(chunk[:-2])
    if length is not None:
        return status, await reader.readexactly(length) if length else b"", keep_alive
    return status, await reader.read(), False  # no framing: the body runs to the end of the connection


def message_id_of(body: bytes) -> str | None:
    # ingest answers {"message_id":"msg_…",…}: slicing the value out costs a fraction of json.loads;
    # anything less plain (escapes, other spacing) goes through json
    start = body.find(b'"message_id":"')
    if start >= 0:
        end = body.find(b'"', start + 14)
        value = body[start + 14:end]
        if end > 0 and b"\\" not in value:
            return value.decode()
    if b'"message_id"' not in body:
        return None
    try:
        value = json.loads(body).get("message_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


class Connection:
    """One keep-alive connection: writes requests at once, a reader task matches answers FIFO.
    A connection the server closed is opened again by the next request sent on it."""

    def __init__(self, host: str, port: int, results: Results, on_answer: Callable[[Connection], None] | None) -> None:
        self.host, self.port, self.results, self.on_answer = host, port, results, on_answer
        self.waiting: deque[int] = deque()  # request indexes sent (or queued) and not yet answered, in order
        self.writer: asyncio.StreamWriter | None = None
        self.reader_task: asyncio.Task[None] | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.queued: list[tuple[int, bytes]] = []  # requests due while the connection was being opened

    async def open(self) -> None:
        reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        self.reader_task = asyncio.create_task(self._read(reader, self.writer))

    def send(self, index: int, request: bytes) -> None:
        if self.waiting:
            self.results.pipelined += 1
        self.waiting.append(index)
        if self.writer is None:
            self.queued.append((index, request))
            if self.connecting is None:
                self.connecting = asyncio.create_task(self._reopen())
            return
        self.results.sent[index] = time.perf_counter()
        self.writer.write(request)

    async def _reopen(self) -> None:
        try:
            await self.open()
        except OSError as exc:
            self.connecting = None
            self._fail(f"connect: {type(exc).__name__}")
            return
        self.connecting = None
        queued, self.queued = self.queued, []
        now = time.perf_counter()
        for index, request in queued:
            self.results.sent[index] = now
            self.writer.write(request)  # type: ignore[union-attr]

    def _lost(self, writer: asyncio.StreamWriter) -> None:
        """The link is gone: what was sent on it will not be answered; later sends reconnect."""
        writer.close()
        if self.writer is writer:
            self.writer = None
            self._fail("closed by the server")

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        results = self.results
        try:
            while True:
                status, body, keep_alive = await read_response(reader)
                now = time.perf_counter()
                index = self.waiting.popleft()
                results.answered[index] = now
                results.status[index] = status
                results.message_id[index] = message_id_of(body)
                if not keep_alive:  # before anyone sends again: the next request must reconnect
                    self._lost(writer)
                if self.on_answer is not None:
                    self.on_answer(self)
                if not keep_alive:
                    return
        except (asyncio.IncompleteReadError, ConnectionError, ProtocolError, ValueError, IndexError) as exc:
            if not isinstance(exc, asyncio.IncompleteReadError):
                results.errors[f"read: {type(exc).__name__}"] += 1
        self._lost(writer)

    def _fail(self, reason: str) -> None:
        """Requests this connection owes answers for will get none: counted as errors (status 0)."""
        owed = len(self.waiting)
        if owed:
            self.results.errors[reason] += owed
        self.waiting.clear()
        self.queued.clear()
        if owed and self.on_answer is not None:  # an idle connection is already known to be idle
            self.on_answer(self)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.reader_task is not None:
            self.reader_task.cancel()
            await asyncio.gather(self.reader_task, return_exceptions=True)
        if self.connecting is not None:
            self.connecting.cancel()


def request_bytes(host: str, port: int, make_request: MakeRequest) -> Callable[[], bytes]:
    prefix = f"Host: {host}:{port}\r\nUser-Agent: deskstream-loadgen\r\n".encode()

    def build() -> bytes:
        path, body, content_type = make_request()
        return b"".join((b"POST ", path.encode(), b" HTTP/1.1\r\n", prefix, b"Content-Type: ",
                         content_type.encode(), b"\r\nContent-Length: ", str(len(body)).encode(), b"\r\n\r\n", body))

    return build


async def _open_all(host: str, port: int, n: int, results: Results,
                    on_answer: Callable[[Connection], None] | None = None) -> list[Connection]:
    connections = [Connection(host, port, results, on_answer) for _ in range(n)]
    await asyncio.gather(*(c.open() for c in connections))
    return connections


async def _drain(results: Results, connections: list[Connection], timeout_s: float) -> None:
    deadline = time.perf_counter() + timeout_s
    while any(c.waiting for c in connections) and time.perf_counter() < deadline:
        await asyncio.sleep(0.005)
    if any(c.waiting for c in connections):
        results.finished_at = time.perf_counter()  # gave up: the span counts up to here
    else:
        results.finished_at = max((a for a in results.answered if a is not None), default=time.perf_counter())
    for c in connections:
        await c.close()


async def run_open_loop(host: str, port: int, make_request: MakeRequest, rate: float, duration_s: float,
                        connections: int = 64, *, max_connections: int = 1024, drain_timeout_s: float = 10.0,
                        tick_s: float = 0.002) -> Results:
    """Send `rate` requests a second for `duration_s`, then wait up to `drain_timeout_s` for the
    answers still owed. `connections` are opened before the clock starts; when all are waiting
    for answers, more are opened, up to `max_connections`, and only then are requests pipelined:
    a request queued behind another on its connection would wait for that one's answer (servers
    answer a connection's requests in order), which is the client's delay, not the server's."""
    results = Results(rate=rate, duration_s=duration_s, connections=connections)
    build = request_bytes(host, port, make_request)
    idle: list[Connection] = []

    def on_answer(connection: Connection) -> None:
        if not connection.waiting:
            idle.append(connection)

    pool = await _open_all(host, port, connections, results, on_answer)
    idle.extend(reversed(pool))
    cpu0 = time.process_time()
    interval = 1.0 / rate
    total = int(rate * duration_s)
    start = results.started_at = time.perf_counter()
    # sleeping per request would cost a wake-up each; waking each tick and sending every
    # request already due keeps the schedule (each request keeps its own due time) for less
    i = busy = 0
    while i < total:
        now = time.perf_counter()
        while i < total and start + i * interval <= now:
            try:
                request = build()
            except StopIteration:  # a finite list of requests, all sent
                total = i
                break
            index = results._new(start + i * interval)
            if idle:
                connection = idle.pop()
            elif len(pool) < max_connections:  # opened as it is sent on (see Connection.send)
                connection = Connection(host, port, results, on_answer)
                pool.append(connection)
            else:  # every connection has an answer owed: pipeline, taking them in turn
                connection = pool[busy % len(pool)]
                busy += 1
            connection.send(index, request)
            i += 1
        if i < total:
            # never less than a tick: uvloop rounds timers to whole milliseconds, so a shorter
            # sleep returns at once and the loop would spin
            await asyncio.sleep(max(tick_s, start + i * interval - time.perf_counter()))
    await _drain(results, pool, drain_timeout_s)
    results.client_cpu_s = time.process_time() - cpu0
    results.connections = len(pool)
    return results


async def run_closed_loop(host: str, port: int, make_request: MakeRequest, concurrency: int,
                          duration_s: float, *, drain_timeout_s: float = 10.0) -> Results:
    """`concurrency` connections, each with one request in flight, for `duration_s`."""
    results = Results(rate=None, duration_s=duration_s, connections=concurrency)
    build = request_bytes(host, port, make_request)
    stop_at = 0.0

    def next_one(connection: Connection) -> None:
        now = time.perf_counter()
        if now < stop_at:
            try:
                request = build()
            except StopIteration:  # a finite list of requests, all sent
                return
            connection.send(results._new(now), request)

    pool = await _open_all(host, port, concurrency, results, on_answer=next_one)
    cpu0 = time.process_time()
    results.started_at = time.perf_counter()
    stop_at = results.started_at + duration_s
    for connection in pool:
        next_one(connection)
    await asyncio.sleep(duration_s)
    await _drain(results, pool, drain_timeout_s)
    results.client_cpu_s = time.process_time() - cpu0
    return results


def new_event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: it roughly halves the generator's own CPU per request."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(coro: Any) -> Any:
    factory = new_event_loop_factory()
    if factory is None:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def chat_requests(run_id: str, tokens: Any = None) -> MakeRequest:
    """~300-byte chat messages, a third with an e-mail address; each visitor writes four in a row,
    so no sender comes near the per-sender rate limit however long the run. With `tokens` (a
    shared.credentials.ChatTokens keyed like the services) the three later messages of a session
    carry its chat token, as a widget's do; without, every message opens a session of its own."""
    counter = iter(range(1 << 62))

    def make() -> tuple[str, bytes, str]:
        i = next(counter)
        visitor = i // 4
        session = f"{run_id}-s{visitor}" if tokens is not None else f"{run_id}-s{visitor}-{i}"
        email = f',"email":"customer{visitor}@mail.example"' if visitor % 3 == 0 else ""
        token = f',"chat_token":"{tokens.issue(session, f"{run_id}-v{visitor}")}"' \
            if tokens is not None and i % 4 else ""
        body = (f'{{"session_id":"{session}","message_id":"{run_id}-m{i}","customer":{{"name":'
                f'"Visitor {visitor}","visitor_id":"{run_id}-v{visitor}"{email}}},"text":"Hello, my order '
                f'{100000 + i} has not arrived yet and the tracking page has not changed for three days.",'
                f'"sent_at":"2026-11-23T10:00:00Z"{token}}}').encode()
        return "/v1/inbound/chat", body, "application/json"

    return make


def main(argv: list[str] | None = None) -> int:
    import uuid
    from urllib.parse import urlsplit

    parser = argparse.ArgumentParser(description="open- or closed-loop chat load against an ingest URL")
    parser.add_argument("--url", default="http://127.0.0.1:8001")
    parser.add_argument("--rate", type=float, default=1000, help="requests/s (open loop)")
    parser.add_argument("--closed", type=int, default=0, help="closed loop with this many in flight instead")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args(argv)
    url = urlsplit(args.url)
    make = chat_requests(uuid.uuid4().hex[:8])
    if args.closed:
        results = run(run_closed_loop(url.hostname, url.port or 80, make, args.closed, args.duration))
    else:
        results = run(run_open_loop(url.hostname, url.port or 80, make, args.rate, args.duration, args.connections))
    print(json.dumps(results.summary(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
