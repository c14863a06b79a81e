"""bench/loadgen.py, the load generator ingest's benchmarks use, against a tiny asyncio HTTP server:
it must read every framing a server may answer with and tie each answer to its request."""
import asyncio
import json

import pytest

from bench import loadgen


def content_length(status: int, body: bytes, *extra: str) -> bytes:
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Content-Type: application/json", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def chunked(status: int, body: bytes) -> bytes:
    # uneven chunks, a chunk extension, upper-case hex sizes and a trailer: all of it is HTTP/1.1
    parts = [body[:5], body[5:6], body[6:]]
    out = f"HTTP/1.1 {status} X\r\ntransfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\n".encode()
    for part in parts:
        if part:
            out += f"{len(part):X};ext=1\r\n".encode() + part + b"\r\n"
    return out + b"0\r\nX-Trailer: yes\r\n\r\n"


class TinyServer:
    """Answers each request with the next scripted answer for its path (`/<n>` picks answer n)."""

    def __init__(self, answers: dict[str, bytes]) -> None:
        self.answers, self.requests, self.connections = answers, [], 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                path = lines[0].split()[1]
                length = next(int(v) for k, _, v in (h.partition(": ") for h in lines[1:])
                              if k.lower() == "content-length")
                body = await reader.readexactly(length)
                self.requests.append((path, body))
                answer = self.answers[path]
                writer.write(answer)
                await writer.drain()
                if b"Connection: close" in answer:
                    break
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()


def requests(*paths: str):
    it = iter(paths)
    return lambda: (next(it), b'{"n": 1}', "application/json")


ID = b'{"message_id":"msg_abc","other":1}'


@pytest.mark.parametrize("answer", [content_length(202, ID), chunked(202, ID)], ids=["content-length", "chunked"])
async def test_answers_are_read_whatever_their_framing(answer):
    async with TinyServer({"/a": answer}) as server:
        results = await loadgen.run_open_loop("127.0.0.1", server.port, requests(*["/a"] * 20), rate=400,
                                              duration_s=0.05, connections=2)
    assert results.requests == 20 and results.statuses == {"202": 20} and results.unanswered == 0
    assert results.message_id == ["msg_abc"] * 20
    assert [p for p, _ in server.requests] == ["/a"] * 20 and server.requests[0][1] == b'{"n": 1}'
    assert all(a >= s >= d for a, s, d in zip(results.answered, results.sent, results.due))


async def test_each_answer_belongs_to_its_own_request_when_pipelined():
    answers = {f"/{i}": content_length(202, json.dumps({"message_id": f"m{i}"}).encode()) for i in range(30)}
    async with TinyServer(answers) as server:
        # one connection at most and a burst: requests queue behind each other on it
        results = await loadgen.run_open_loop("127.0.0.1", server.port, requests(*answers), rate=3000,
                                              duration_s=0.01, connections=1, max_connections=1)
    assert results.message_id == [f"m{i}" for i in range(30)]
    assert results.pipelined > 0


async def test_when_every_connection_is_busy_another_is_opened_rather_than_queueing():
    class Slow(TinyServer):
        async def handle(self, reader, writer):
            await asyncio.sleep(0.05)  # every connection's first answer is late
            await super().handle(reader, writer)

    async with Slow({"/a": content_length(202, ID)}) as server:
        results = await loadgen.run_open_loop("127.0.0.1", server.port, requests(*["/a"] * 20), rate=1000,
                                              duration_s=0.02, connections=2)
    assert results.statuses == {"202": 20} and results.pipelined == 0 and results.connections > 2


async def test_bodies_without_ids_errors_and_empty_answers():
    answers = {"/e": content_length(422, b'{"error": {"code": "invalid_json"}}'),
               "/n": b"HTTP/1.1 204 No Content\r\n\r\n",
               "/c": b"HTTP/1.1 100 Continue\r\n\r\n" + content_length(202, b'{"message_id": "spaced"}'),
               "/s": content_length(200, b'{"message_id": "a\\"b"}')}
    async with TinyServer(answers) as server:
        results = await loadgen.run_closed_loop("127.0.0.1", server.port, requests("/e", "/n", "/c", "/s"),
                                                concurrency=1, duration_s=0.3)
    assert results.status == [422, 204, 202, 200]
    assert results.message_id == [None, None, "spaced", 'a"b']


async def test_a_closed_connection_is_opened_again_for_later_requests():
    answers = {"/bye": content_length(202, ID, "Connection: close"), "/a": content_length(202, ID)}
    async with TinyServer(answers) as server:
        results = await loadgen.run_closed_loop("127.0.0.1", server.port, requests("/bye", "/a", "/a"),
                                                concurrency=1, duration_s=0.3)
    assert results.statuses == {"202": 3} and server.connections == 2


async def test_a_server_that_is_not_there_counts_as_errors_not_answers():
    async with TinyServer({}) as server:
        port = server.port
    with pytest.raises(OSError):  # nothing to connect the pool to: said at once, not after the run
        await loadgen.run_open_loop("127.0.0.1", port, requests("/a"), rate=10, duration_s=0.1, connections=1)


async def test_open_loop_keeps_its_clock_when_the_server_is_slow():
    class Slow(TinyServer):
        async def handle(self, reader, writer):
            await asyncio.sleep(0.2)
            await super().handle(reader, writer)

    async with Slow({"/a": content_length(202, ID)}) as server:
        results = await loadgen.run_open_loop("127.0.0.1", server.port, requests(*["/a"] * 10), rate=100,
                                              duration_s=0.1, connections=2)
    # all ten left on time although no answer came for 200 ms; their latency counts from then
    assert results.requests == 10 and max(s - d for s, d in zip(results.sent, results.due)) < 0.05
    assert results.statuses == {"202": 10} and results.percentile_ms(0.0) >= 100
