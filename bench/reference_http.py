"""HTTP/1.1 for the reference pipeline (bench/reference.py): a small request parser and
server protocol for its ingest process, and an open-loop keep-alive client for its load.

Both are hand-written on purpose. The load generator shares two cores with the pipeline it
measures, so every microsecond it spends per request is taken from the thing measured; httpx
costs several times more per request than writing a prepared byte string on a stream. The
server side is the cheapest honest HTTP front a Python service can have (asyncio protocol,
one request at a time per connection), so the yardstick shows what the shape allows rather
than what a framework allows. A Starlette front is available too (reference_roles).
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

MAX_HEAD = 16 * 1024  # a head larger than this is not a chat webhook; refuse instead of buffering
REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           411: "Length Required", 413: "Content Too Large", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}


class HttpError(ValueError):
    """A message this code will not read; `status` is what a server answers for it."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------------- parsing
def _headers(lines: list[bytes]) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in lines:
        if not raw:
            continue
        name, sep, value = raw.partition(b":")
        if not sep or not name or name != name.strip():
            # RFC 9112 forbids whitespace before the colon: it is a request-smuggling vector
            raise HttpError(f"malformed header line {raw[:60]!r}")
        key = name.decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


def parse_request_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """`head` is everything before the blank line. Returns method, target, version, headers."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise HttpError(f"malformed request line {lines[0][:60]!r}")
    method, target, version = (p.decode("latin-1") for p in parts)
    return method, target, version, _headers(lines[1:])


def parse_response_head(head: bytes) -> tuple[str, int, str, dict[str, str]]:
    """`head` is everything before the blank line. Returns version, status, reason, headers."""
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise HttpError(f"malformed status line {lines[0][:60]!r}")
    return version.decode("latin-1"), int(code), reason.decode("latin-1"), _headers(lines[1:])


def keep_alive(version: str, headers: dict[str, str]) -> bool:
    """HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 only when asked to keep it."""
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    if version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def body_length(headers: dict[str, str]) -> int | None:
    """Bytes of body that follow the head; None when the body is chunked."""
    if "transfer-encoding" in headers:
        codings = [c.strip().lower() for c in headers["transfer-encoding"].split(",")]
        if codings[-1] != "chunked":
            raise HttpError("transfer-encoding without chunked last", 501)
        return None
    raw = headers.get("content-length")
    if raw is None:
        return 0
    if not raw.isdigit():  # also refuses "5, 5" and signs: ambiguous lengths are refused, not guessed
        raise HttpError(f"bad content-length {raw!r}")
    return int(raw)


async def read_chunked(reader: asyncio.StreamReader, limit: int = 1 << 20) -> bytes:
    """A chunked body (RFC 9112 §7.1), trailers skipped. Our own ingest never sends one, but
    a Starlette/uvicorn front may, and the client must not lose the connection's framing."""
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line[:-2].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpError(f"bad chunk size {size_text[:20]!r}") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return bytes(body)
        if len(body) + size > limit:
            raise HttpError("chunked body too large", 413)
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise HttpError("chunk not followed by CRLF")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """One response from a keep-alive stream: status, whether the connection stays open, body."""
    head = await reader.readuntil(b"\r\n\r\n")
    version, status, _, headers = parse_response_head(head[:-4])
    length = body_length(headers)
    body = await read_chunked(reader) if length is None else (await reader.readexactly(length) if length else b"")
    return status, keep_alive(version, headers), body


def response_bytes(status: int, payload: bytes, *, close: bool = False) -> bytes:
    extra = b"Connection: close\r\n" if close else b""
    return (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
            % (status, REASONS.get(status, "Status").encode(), len(payload), extra)) + payload


# ---------------------------------------------------------------------------------- server
Handler = Callable[[str, str, bytes], Awaitable[tuple[int, bytes]]]


class HttpServerProtocol(asyncio.Protocol):
    """HTTP/1.1 on one connection, one request at a time: a pipelined request waits in the
    buffer until the previous answer is written, so answers leave in order."""

    def __init__(self, handler: Handler, max_body: int = 256 * 1024) -> None:
        self.handler = handler
        self.max_body = max_body
        self.buf = bytearray()
        self.busy = False
        self.closed = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._next()

    def _refuse(self, status: int, why: str) -> None:
        assert self.transport is not None
        self.transport.write(response_bytes(status, b'{"error":"%s"}' % why.encode()[:200].replace(b'"', b"'"),
                                            close=True))
        self.transport.close()
        self.closed = True

    def _next(self) -> None:
        if self.closed:
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                self._refuse(431, "head too large")
            return
        try:
            method, target, version, headers = parse_request_head(bytes(self.buf[:end]))
            length = body_length(headers)
        except HttpError as e:
            self._refuse(e.status, str(e))
            return
        if length is None:
            self._refuse(501, "chunked request bodies are not accepted; send content-length")
            return
        if length > self.max_body:
            self._refuse(413, "body too large")
            return
        start = end + 4
        if len(self.buf) < start + length:
            return  # wait for the rest of the body
        body = bytes(self.buf[start:start + length])
        del self.buf[:start + length]
        self.busy = True
        asyncio.get_running_loop().create_task(self._serve(method, target, body, keep_alive(version, headers)))

    async def _serve(self, method: str, target: str, body: bytes, keep: bool) -> None:
        try:
            status, payload = await self.handler(method, target.split("?", 1)[0], body)
        except Exception as e:  # noqa: BLE001 - a bug in a handler must answer 500, not hang the client
            status, payload = 500, b'{"error":"%s"}' % type(e).__name__.encode()
        if self.closed or self.transport is None:
            return
        self.transport.write(response_bytes(status, payload, close=not keep))
        if not keep:
            self.transport.close()
            self.closed = True
            return
        self.busy = False
        if self.buf:
            self._next()


# ---------------------------------------------------------------------------------- client
@dataclass
class LoadResult:
    """What one open-loop run did. Times are from the moment a request was *due* (its slot on
    the clock), not from when a connection was free to send it, so a slow server shows up as
    slow answers instead of silently lowering the offered rate (coordinated omission)."""

    rate: float
    seconds: float
    sent: int = 0  # requests due on the clock (all of them are eventually written or failed)
    answered: int = 0
    accepted: int = 0  # 202
    statuses: Counter = field(default_factory=Counter)  # status → count; 0 = connection error, -1 = no answer
    pending_at_end: int = 0  # due but not yet answered when the clock stopped
    response_s: list[float] = field(default_factory=list)
    accepted_wall: dict[str, float] = field(default_factory=dict)  # key → wall time of the 202 (if asked)
    connections: int = 0
    errors: Counter = field(default_factory=Counter)


class OpenLoopClient:
    """POSTs on a clock over a pool of keep-alive connections that grows while every
    connection is busy (up to `max_connections`), one request in flight per connection.

    `make(n)` returns (key, body) for the n-th request; the key names the request in
    `accepted_wall` when `record_keys` is set (the latency run needs the 202's wall time), and
    in `on_answer(key, status)` when the traffic needs to know what was accepted."""

    def __init__(self, host: str, port: int, path: str, make: Callable[[int], tuple[str, bytes]], *,
                 max_connections: int = 512, answer_timeout: float = 30.0, record_keys: bool = False,
                 on_answer: Callable[[str, int], None] | None = None) -> None:
        self.host, self.port = host, port
        self.make = make
        self.max_connections = max_connections
        self.answer_timeout = answer_timeout
        self.record_keys = record_keys
        self.on_answer = on_answer
        # the request head is fixed but for its length: one %-format per request
        self.prefix = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                       "Content-Length: %d\r\n\r\n").encode()
        self.queue: deque[tuple[int, float]] = deque()
        self.wakeups: deque[asyncio.Future[None]] = deque()  # idle workers waiting for work
        self.workers: list[asyncio.Task[None]] = []
        self.in_flight = 0
        self.idle = 0  # workers waiting for work, including ones woken that have not run yet
        self.result: LoadResult | None = None
        self.stopping = False

    async def run(self, rate: float, duration: float) -> LoadResult:
        loop = asyncio.get_running_loop()
        total = max(1, round(rate * duration))
        self.result = res = LoadResult(rate=rate, seconds=duration, sent=total)
        start = loop.time()
        n = 0
        while n < total:
            # everything due by now, in one go: at 3,000/s a sleep per request would cost more
            # than the request, and the loop's timer granularity is ~1 ms anyway
            due = min(total, int((loop.time() - start) * rate) + 1)
            while n < due:
                self.queue.append((n, start + n / rate))
                n += 1
            self._dispatch()
            if n < total:
                await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
        res.pending_at_end = len(self.queue) + self.in_flight
        deadline = loop.time() + self.answer_timeout
        while (self.queue or self.in_flight) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        unanswered = len(self.queue) + self.in_flight
        if unanswered:
            res.statuses[-1] += unanswered
        self.stopping = True
        for w in self.wakeups:
            if not w.done():
                w.set_result(None)
        for task in self.workers:
            task.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)
        res.connections = len(self.workers)
        return res

    def _dispatch(self) -> None:
        # wake idle workers first; open a new connection only when none is idle
        while self.queue and self.wakeups:
            w = self.wakeups.popleft()
            if not w.done():
                w.set_result(None)
        spare = len(self.queue) - self.idle
        while spare > 0 and len(self.workers) < self.max_connections:
            self.workers.append(asyncio.get_running_loop().create_task(self._worker()))
            spare -= 1

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        res = self.result
        assert res is not None
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        try:
            while not self.stopping:
                if not self.queue:
                    wake = loop.create_future()
                    self.wakeups.append(wake)
                    self.idle += 1
                    try:
                        await wake
                    finally:
                        self.idle -= 1
                    continue
                n, due = self.queue.popleft()
                self.in_flight += 1
                key, body = self.make(n)
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(self.host, self.port)
                    assert reader is not None
                    writer.write(self.prefix % len(body) + body)
                    status, keep, _ = await read_response(reader)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, HttpError) as e:
                    status, keep = 0, False
                    res.errors[type(e).__name__] += 1
                now = loop.time()
                self.in_flight -= 1
                res.statuses[status] += 1
                if status:
                    res.answered += 1
                    res.response_s.append(now - due)
                if status == 202:
                    res.accepted += 1
                    if self.record_keys:
                        res.accepted_wall[key] = time.time()
                if self.on_answer is not None:
                    self.on_answer(key, status)
                if not keep and writer is not None:
                    writer.close()
                    reader = writer = None
        finally:
            if writer is not None:
                writer.close()
