"""Benchmark: how soon a new ticket shows in analytics' /metrics (p50, p90, p99).

    python -m services.analytics.freshness [--ingest URL] [--analytics URL] [--kafka HOST:PORT] [-n 200] [--rate 20]

Sends `n` new web-chat conversations to ingest at `rate` per second, reads their
`deskstream.ticket.created` records from `tickets.events`, and watches
`deskstream_tickets_created_total{channel="chat"}` on analytics' /metrics (every 20 ms).
Two numbers per ticket:
- event → metric: from the record's Kafka timestamp to the scrape that first counts it
  (analytics' own share: consuming, storing, the next refresh);
- 202 → metric: from ingest's answer to the same scrape (the whole pipeline).
Tickets are not counted in sending order, so the i-th count is paired with the i-th record
(or acceptance): the figures say how far the count trails. Run it against a stack of your
own with no other traffic: it files real tickets."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import threading
import time
import uuid

import httpx

from services.analytics.domain import percentile


def created_records(bootstrap: str, run: str, into: list[float], stop: threading.Event) -> None:
    """Kafka timestamps (seconds) of this run's `ticket.created` records, as they arrive."""
    from aiokafka import AIOKafkaConsumer

    async def consume() -> None:
        consumer = AIOKafkaConsumer(
            "tickets.events", bootstrap_servers=bootstrap, auto_offset_reset="latest", enable_auto_commit=False
        )
        await consumer.start()
        try:
            while not stop.is_set():
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for r in records:
                        event = json.loads(r.value)
                        if event.get("type") == "deskstream.ticket.created" and run in json.dumps(event["data"]):
                            into.append(r.timestamp / 1000)
        finally:
            await consumer.stop()

    asyncio.run(consume())


CHAT_CREATED = re.compile(r'^deskstream_tickets_created_total\{channel="chat"\} (\S+)$', re.M)


def created(client: httpx.Client, analytics: str) -> int:
    match = CHAT_CREATED.search(client.get(f"{analytics}/metrics").text)
    return int(float(match.group(1))) if match else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ingest", default="http://127.0.0.1:8001")
    parser.add_argument("--analytics", default="http://127.0.0.1:8005")
    parser.add_argument("--kafka", default="127.0.0.1:9092", help="bootstrap servers (for the records' timestamps)")
    parser.add_argument("-n", type=int, default=200, help="conversations to send")
    parser.add_argument("--rate", type=float, default=20.0, help="conversations per second")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up waiting after this many seconds")
    args = parser.parse_args(argv)

    watcher = httpx.Client(timeout=10)
    base = created(watcher, args.analytics)
    run = uuid.uuid4().hex[:8]
    accepted: list[float] = []  # when ingest answered 202 (wall clock), in sending order
    recorded: list[float] = []  # Kafka timestamps of the run's created records
    seen: list[float] = []  # when the count first reached base + i + 1
    stop = threading.Event()
    reader = threading.Thread(target=created_records, args=(args.kafka, run, recorded, stop), daemon=True)
    reader.start()
    time.sleep(2)  # the reader has joined the topic's end before anything is sent

    def send() -> None:
        with httpx.Client(timeout=10) as client:
            for i in range(args.n):
                due = time.monotonic() + 1 / args.rate
                body = {
                    "session_id": f"fresh-{run}-{i}",
                    "message_id": f"fresh-{run}-{i}",
                    "customer": {"name": "Freshness", "visitor_id": f"fresh-{run}-{i}"},
                    "text": f"Where is my order? ({run}-{i})",
                    "sent_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
                client.post(f"{args.ingest}/v1/inbound/chat", json=body).raise_for_status()
                accepted.append(time.time())
                time.sleep(max(0.0, due - time.monotonic()))

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    deadline = time.monotonic() + args.timeout
    while len(seen) < args.n and time.monotonic() < deadline:
        count = created(watcher, args.analytics) - base
        now = time.time()
        while len(seen) < min(count, args.n):
            seen.append(now)
        time.sleep(0.02)
    sender.join(timeout=5)
    stop.set()
    reader.join(timeout=5)
    if len(seen) < args.n:
        print(f"only {len(seen)} of {args.n} tickets were counted within {args.timeout:.0f} s", file=sys.stderr)
    for name, starts in (("event → metric", sorted(recorded)), ("ingest 202 → metric", accepted)):
        latencies = [max(0.0, s - a) for a, s in zip(starts, seen)]
        if latencies:
            print(
                f"{name:>20}: {len(latencies)} tickets at {args.rate:g}/s: p50 {percentile(latencies, 50):.3f} s, "
                f"p90 {percentile(latencies, 90):.3f} s, p99 {percentile(latencies, 99):.3f} s, "
                f"max {max(latencies):.3f} s"
            )
    return 0 if len(seen) == args.n else 1


if __name__ == "__main__":
    sys.exit(main())
