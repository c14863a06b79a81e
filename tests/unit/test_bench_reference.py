"""The pure parts of the reference pipeline (bench/reference*.py): the step verdict, the lag
slope, CPU from /proc, HTTP parsing, and the bare pipeline's in-memory decisions. The HTTP
client and server are also run against each other on loopback, with a stand-in publisher."""
from __future__ import annotations

import argparse
import asyncio

import orjson
import pytest

from bench.reference import (CLK_TCK, ChatTraffic, cpu_per_message, lag_slope, machine_busy_seconds, per_message_counts,
                             stat_cpu_seconds, step_verdict)
from bench.reference_http import (HttpError, HttpServerProtocol, OpenLoopClient, body_length, keep_alive,
                                  parse_request_head, parse_response_head, read_chunked, read_response)
from bench.reference_roles import ASSIGNED, CREATED, UPDATED, Router, Shape, TicketBook, padding, validate_chat


# ---------------------------------------------------------------------------------- lag slope
def test_slope_of_flat_lag_is_zero():
    assert lag_slope([(t, 40) for t in range(10)]) == 0


def test_slope_follows_a_growing_backlog():
    assert lag_slope([(t, 100 + 25 * t) for t in range(12, 25)]) == pytest.approx(25)


def test_slope_needs_two_points():
    assert lag_slope([]) == 0 and lag_slope([(3.0, 99)]) == 0
    assert lag_slope([(2.0, 5), (2.0, 50)]) == 0  # no spread in time: no slope rather than a division by zero


# ---------------------------------------------------------------------------------- verdict
def samples(values, start=0.0):
    return [(start + i, v) for i, v in enumerate(values)]


def test_a_step_with_small_steady_lag_is_kept_up():
    v = step_verdict(1000, 20, 20000, 20000, 12, samples([300, 200, 350] * 7))
    assert v["kept_up"] and v["reasons"] == []
    assert v["lag_max"] == 350 and v["lag_at_end"] == 350


def test_one_request_without_202_fails_the_step():
    v = step_verdict(1000, 20, 20000, 19999, 0, samples([10] * 21))
    assert not v["kept_up"] and "1 of 20000 requests without 202" in v["reasons"][0]


def test_requests_piling_up_at_ingest_fail_the_step():
    assert step_verdict(500, 20, 10000, 10000, 500, samples([0] * 21))["kept_up"]  # one second's worth is allowed
    v = step_verdict(500, 20, 10000, 10000, 501, samples([0] * 21))
    assert not v["kept_up"] and "pending" in v["reasons"][0]


def test_lag_growing_in_the_second_half_fails_even_if_it_ends_small():
    # flat first half, then growing 30/s: over 0.02 × 1000 = 20/s
    values = [100] * 10 + [100 + 30 * i for i in range(11)]
    v = step_verdict(1000, 20, 20000, 20000, 0, samples(values))
    assert v["lag_at_end"] <= 1000
    assert not v["kept_up"] and "growing" in v["reasons"][0]


def test_growth_in_the_first_half_only_does_not_count():
    values = [100 * i for i in range(10)] + [300] * 11  # a burst that was absorbed
    assert step_verdict(1000, 20, 20000, 20000, 0, samples(values))["kept_up"]


def test_more_than_a_second_of_traffic_behind_at_the_end_fails():
    v = step_verdict(250, 20, 5000, 5000, 0, samples([260] * 21))
    assert not v["kept_up"] and v["reasons"] == ["lag 260 at the end (> 1 s of traffic)"]


def test_low_rates_get_a_floor_of_slack():
    assert step_verdict(2, 20, 40, 40, 5, samples([5, 0, 5, 0, 5]))["kept_up"]


# ---------------------------------------------------------------------------------- CPU
def test_cpu_from_a_stat_line_whose_name_has_spaces_and_parentheses():
    line = ("4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 12 0 1000 "
            "200000000 5000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0")
    assert stat_cpu_seconds(line, clk_tck=100) == pytest.approx(3.0)  # (250 + 50) ticks


def test_machine_busy_leaves_out_idle_and_iowait():
    stat = "cpu  100 5 50 9000 40 3 2 0 0 0\ncpu0 50 2 25 4500 20 1 1 0 0 0\n"
    assert machine_busy_seconds(stat) * CLK_TCK == pytest.approx(160)  # 100+5+50+3+2 ticks


def test_cpu_per_message_skips_processes_that_could_not_be_read():
    out = cpu_per_message({"a": 1.0, "b": None, "c": 2.0}, {"a": 3.0, "b": 5.0}, 1000)
    assert out == {"a": 0.002, "b": None, "c": None}
    assert cpu_per_message({"a": 1.0}, {"a": 2.0}, 0) == {"a": None}


# ---------------------------------------------------------------------------------- HTTP parsing
def test_response_head_is_parsed():
    version, status, reason, headers = parse_response_head(
        b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\ncontent-length: 27\r\nX-A: 1\r\nx-a: 2")
    assert (version, status, reason) == ("HTTP/1.1", 202, "Accepted")
    assert headers == {"content-type": "application/json", "content-length": "27", "x-a": "1, 2"}
    assert body_length(headers) == 27 and keep_alive(version, headers)


def test_response_without_reason_phrase():
    assert parse_response_head(b"HTTP/1.1 503")[1] == 503


@pytest.mark.parametrize("head", [b"HTTP/2 200 OK", b"HTTP/1.1 20 OK", b"ICY 200 OK", b"HTTP/1.1 abc Nope",
                                  b"HTTP/1.1 200 OK\r\nno colon here", b"HTTP/1.1 200 OK\r\nName : value"])
def test_malformed_response_heads_are_refused(head):
    with pytest.raises(HttpError):
        parse_response_head(head)


@pytest.mark.parametrize("version,connection,expected", [
    ("HTTP/1.1", None, True), ("HTTP/1.1", "close", False), ("HTTP/1.1", "Keep-Alive, Close", False),
    ("HTTP/1.0", None, False), ("HTTP/1.0", "keep-alive", True)])
def test_keep_alive_rules(version, connection, expected):
    assert keep_alive(version, {"connection": connection} if connection else {}) is expected


def test_body_length_rules():
    assert body_length({}) == 0
    assert body_length({"transfer-encoding": "gzip, chunked"}) is None
    for bad in ({"content-length": "-1"}, {"content-length": "5, 5"}, {"content-length": "x"}):
        with pytest.raises(HttpError):
            body_length(bad)
    with pytest.raises(HttpError) as e:
        body_length({"transfer-encoding": "gzip"})
    assert e.value.status == 501


def test_request_head_is_parsed():
    method, target, version, headers = parse_request_head(b"POST /chat?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2")
    assert (method, target, version, headers["content-length"]) == ("POST", "/chat?x=1", "HTTP/1.1", "2")
    with pytest.raises(HttpError):
        parse_request_head(b"POST /chat")


def feed(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_a_content_length_response_leaves_the_next_one_on_the_stream():
    reader = feed(b"HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nConnection: close\r\n"
                  b"Content-Length: 0\r\n\r\n")
    assert await read_response(reader) == (202, True, b"hello")
    assert await read_response(reader) == (200, False, b"")


async def test_a_chunked_response_with_extensions_and_trailers():
    reader = feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT")
    assert await read_response(reader) == (200, True, b"hello world")
    assert await reader.read() == b"NEXT"


async def test_broken_chunking_is_refused():
    with pytest.raises(HttpError):
        await read_chunked(feed(b"zz\r\nhello\r\n0\r\n\r\n"))
    with pytest.raises(HttpError):
        await read_chunked(feed(b"5\r\nhelloXX0\r\n\r\n"))


async def test_a_truncated_response_raises_incomplete_read():
    with pytest.raises(asyncio.IncompleteReadError):
        await read_response(feed(b"HTTP/1.1 202 Accepted\r\nContent-Length: 10\r\n\r\nshort"))


# ---------------------------------------------------------------------------------- client ↔ server
async def serve(handler):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpServerProtocol(handler, max_body=4096), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_open_loop_client_against_the_server_protocol():
    seen: list[dict] = []

    async def handler(method, path, body):
        if path != "/chat":
            return 404, b"{}"
        msg = validate_chat(orjson.loads(body))
        await asyncio.sleep(0.002)  # the broker's ack
        seen.append(msg)
        return 202, orjson.dumps({"message_id": msg["message_id"]})

    server, port = await serve(handler)
    try:
        traffic = ChatTraffic(new_ticket_share=0.5, body_bytes=600)
        res = await OpenLoopClient("127.0.0.1", port, "/chat", traffic, record_keys=True).run(400, 0.5)
    finally:
        server.close()
    assert res.sent == 200 and res.accepted == 200 and res.statuses == {202: 200}
    assert len(seen) == 200 and len(res.accepted_wall) == 200
    assert 1 <= res.connections < 50  # connections are reused, not one per request
    assert len(res.response_s) == 200 and max(res.response_s) < 1


async def test_server_answers_pipelined_requests_in_order_and_refuses_bad_framing():
    order = []

    async def handler(method, path, body):
        await asyncio.sleep(0.01 if body == b"1" else 0)  # the first is slower: answers must still be in order
        order.append(body)
        return 202, body

    server, port = await serve(handler)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /chat HTTP/1.1\r\nContent-Length: 1\r\n\r\n1POST /chat HTTP/1.1\r\nContent-Length: 1\r\n\r\n2")
        assert await read_response(reader) == (202, True, b"1")
        assert await read_response(reader) == (202, True, b"2")
        writer.write(b"POST /chat HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        status, keep, _ = await read_response(reader)
        assert (status, keep) == (501, False)
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /chat HTTP/1.1\r\nContent-Length: 99999\r\n\r\n")
        assert (await read_response(reader))[:2] == (413, False)
        writer.close()
    finally:
        server.close()
    assert order == [b"1", b"2"]


async def test_client_counts_refusals_and_dead_servers():
    async def handler(method, path, body):
        return 503, b"{}"

    server, port = await serve(handler)
    try:
        res = await OpenLoopClient("127.0.0.1", port, "/chat", ChatTraffic()).run(200, 0.1)
    finally:
        server.close()
        await server.wait_closed()
    assert res.accepted == 0 and res.statuses == {503: 20}
    res = await OpenLoopClient("127.0.0.1", port, "/chat", ChatTraffic(), answer_timeout=2).run(100, 0.05)
    assert res.accepted == 0 and res.statuses[0] == 5 and res.errors  # connection refused, counted, not raised


# ---------------------------------------------------------------------------------- the pipeline's decisions
def chat(session="s-1", mid="m-1", **extra):
    return {"session_id": session, "message_id": mid, "text": " hello ", "customer": {"name": "A"}, **extra}


def test_validate_chat_normalises_and_refuses():
    msg = validate_chat(chat(), now=12.5)
    assert msg == {"message_id": "m-1", "session_id": "s-1", "text": "hello",
                   "customer": {"name": "A", "visitor_id": ""}, "sent_at": None, "received_at": 12.5}
    for bad in ([], chat(text=""), chat(session=7), chat(customer="A"), chat(customer={"name": 3}),
                chat(sent_at=5), chat(mid="m" * 201)):
        with pytest.raises(ValueError):
            validate_chat(bad)


def test_ticket_book_opens_continues_and_assigns():
    book = TicketBook(Shape(tickets_docs=2, tickets_records=3, tickets_assign_docs=1))
    docs, outs = book.on_message(validate_chat(chat("s-1", "m-1")))
    assert [d["_id"] for d in docs] == ["m-1:0", "m-1:1"]
    assert [(k, t) for k, t, _ in outs] == [(b"T-m-1", CREATED), (b"T-m-1", UPDATED), (b"T-m-1", UPDATED)]
    docs, outs = book.on_message(validate_chat(chat("s-1", "m-2")))
    assert outs[0][1] == b"message_added" and orjson.loads(outs[0][2])["opened_by"] == "m-1"
    docs, outs = book.on_assignment({"ticket_id": "T-m-1", "agent": "agent-03"})
    assert len(docs) == 1 and outs[0][:2] == (b"T-m-1", ASSIGNED)
    assert orjson.loads(outs[0][2])["opened_by"] == "m-1"  # the latency run matches on it
    assert book.on_assignment({"ticket_id": "T-m-1", "agent": "agent-04"}) == ([], [])  # redelivered
    assert book.on_assignment({"ticket_id": "T-unknown", "agent": "agent-04"}) == ([], [])


def test_documents_are_about_the_size_asked():
    import bson

    book = TicketBook(Shape(tickets_doc_bytes=1000))
    docs, _ = book.on_message(validate_chat(chat("s-9", "m-0123456789ab")))
    assert 980 <= len(bson.encode(docs[0])) <= 1020
    assert padding(10, {"_id": "x"}) == ""  # smaller than the bare document: no padding, not an error


def test_router_takes_least_loaded_with_room_and_ignores_repeats():
    router = Router(agents=2, capacity=2)
    got = [router.on_created(f"T-{i}") for i in range(4)]
    assert sorted(got) == ["agent-00", "agent-00", "agent-01", "agent-01"]
    assert router.on_created("T-0") is None  # already assigned
    assert router.on_created("T-9") is None and router.waiting == ["T-9"]


def test_shape_round_trips_through_the_role_command_line():
    shape = Shape(tickets_docs=5, sla_doc_bytes=123, database_per_role=True, ingest_http="starlette")
    parser = argparse.ArgumentParser()
    Shape.add_args(parser)
    assert Shape.from_args(parser.parse_args(shape.to_argv())) == shape
    assert Shape.from_args(parser.parse_args([])) == Shape()
    assert shape.database_for("sla") == "reference_sla" and Shape().database_for("sla") == "reference"


def test_chat_traffic_opens_the_asked_share_of_sessions():
    traffic = ChatTraffic(new_ticket_share=0.6, body_bytes=1000)
    traffic.record_openers = True
    bodies = []
    for i in range(2000):
        key, body = traffic(i)
        traffic.answered(key, 202)
        bodies.append((key, body))
    assert 1100 <= len(traffic.openers) <= 1300
    assert all(980 <= len(b) <= 1020 for _, b in bodies)
    assert len({k for k, _ in bodies}) == 2000


def test_a_session_is_continued_only_after_its_first_message_was_accepted():
    traffic = ChatTraffic(new_ticket_share=0.01)
    first, _ = traffic(0)
    unanswered = [orjson.loads(traffic(i)[1])["session_id"] for i in range(1, 20)]
    assert len(set(unanswered)) == 19  # nothing to continue yet: every message opens its own session
    traffic.answered(first, 503)
    assert orjson.loads(traffic(20)[1])["session_id"] not in unanswered
    opener, body = traffic(21)
    traffic.answered(opener, 202)
    assert orjson.loads(traffic(22)[1])["session_id"] == orjson.loads(body)["session_id"]


def test_per_message_counts():
    stats = {"ingest": {"accepted": 100}, "tickets": {"records_in": 160, "docs": 200, "insert_calls": 10,
                                                      "records_out": 160, "batches": 8}, "sla": None}
    out = per_message_counts(stats)
    assert out["accepted_messages"] == 100
    assert out["tickets"] == {"records_in": 1.6, "docs": 2.0, "insert_calls": 0.1, "records_out": 1.6,
                              "mean_batch": 20.0,
                              "ms_per_batch": {"insert": 0.0, "publish": 0.0, "commit": 0.0, "batch": 0.0}}
    assert out["sla"]["docs"] == 0
