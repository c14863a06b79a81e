"""A webhook subscriber down for a while (default 5 minutes) while about 1,000 ticket events happen, then
up: does every event arrive, in order per ticket, with duplicates only of the same webhook-id?

    .venv/bin/python -m bench.webhook_outage [--slot 3] [--outage-s 300] [--tickets 90] [--out result.json]

Runs on a test slot's stack (`.state/test-<slot>`, started if needed; services as one process each, on a
database of its own). The receiver is a real HTTP server that verifies every request's signature with the
`standardwebhooks` package; while it is "down" nothing listens on its port (connection refused). The truth
is `tickets.events` itself, read back with a plain consumer: every `deskstream.ticket.*` record of this
run's tickets. Not part of `make test`; the numbers go to docs/benchmarks.md."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pymongo
from aiokafka import AIOKafkaConsumer
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from deploy.local import stack as stackctl  # noqa: E402

TOKEN = "outage-" + uuid.uuid4().hex
WEBHOOK_ID = "outage-bench"


class Receiver:
    """The subscriber: verifies each request with `standardwebhooks`, keeps what arrived, in arrival order."""

    def __init__(self, port: int, secret: str) -> None:
        self.port, self.verifier = port, Webhook(secret)
        self.arrived: list[tuple[str, str, str]] = []  # (webhook-id, ticket, type)
        self.bad_signatures = 0
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.up_at: float | None = None
        self.last_at: float | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    event = receiver.verifier.verify(body, headers)
                except WebhookVerificationError:
                    with receiver.lock:
                        receiver.bad_signatures += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver.lock:
                    receiver.arrived.append((headers["webhook-id"], event.get("subject") or "", event["type"]))
                    receiver.last_at = time.monotonic()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.up_at = time.monotonic()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def one_ticket(ingest: httpx.AsyncClient, tickets: httpx.AsyncClient, n: int) -> str | None:
    """A chat conversation and an agent's work on it: about a dozen ticket events."""
    session = f"outage-{uuid.uuid4().hex[:10]}"
    message = {
        "session_id": session,
        "message_id": f"m-{uuid.uuid4().hex[:8]}",
        "text": f"Order {1000 + n}?",
        "customer": {"name": f"Customer {n}", "email": f"{session}@example.com", "visitor_id": f"v-{session}"},
        "sent_at": datetime.now(UTC).isoformat(),
    }
    r = await ingest.post("/v1/inbound/chat", json=message)
    r.raise_for_status()
    message_id = r.json()["message_id"]
    for _ in range(150):
        found = await tickets.get(f"/v1/messages/{message_id}")
        if found.status_code == 200:
            tid = found.json()["ticket_id"]
            break
        await asyncio.sleep(0.2)
    else:
        return None
    for i in range(4):
        note = await tickets.post(f"/v1/tickets/{tid}/notes", json={"author": "bench", "text": f"note {i}"})
        note.raise_for_status()
    (await tickets.post(f"/v1/tickets/{tid}/tags", json={"add": ["outage", f"batch-{n % 5}"]})).raise_for_status()
    (await tickets.put(f"/v1/tickets/{tid}/priority", json={"priority": "high"})).raise_for_status()
    reply = await tickets.post(f"/v1/tickets/{tid}/replies", json={"agent_id": "bench-agent", "text": "On its way."})
    reply.raise_for_status()
    (await tickets.post(f"/v1/tickets/{tid}/status", json={"status": "resolved"})).raise_for_status()
    return tid


async def topic_truth(bootstrap: str, ours: set[str], since_ms: int) -> dict[str, list[str]]:
    """ticket → its `deskstream.ticket.*` event ids on `tickets.events`, in the topic's order."""
    consumer = AIOKafkaConsumer(
        "tickets.events",
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    out: dict[str, list[str]] = defaultdict(list)
    try:
        parts = consumer.assignment()
        while not parts:
            await asyncio.sleep(0.1)
            parts = consumer.assignment()
        ends = await consumer.end_offsets(list(parts))
        starts = await consumer.offsets_for_times(dict.fromkeys(parts, since_ms))
        for tp in parts:
            if starts.get(tp) is not None:
                consumer.seek(tp, starts[tp].offset)
            else:
                consumer.seek(tp, ends[tp])
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            for tp, records in (await consumer.getmany(timeout_ms=1000, max_records=2000)).items():
                for record in records:
                    try:
                        event = json.loads(record.value)
                    except (ValueError, TypeError):
                        continue  # junk on the topic (the poison-record tests put some there)
                    if not isinstance(event, dict) or record.offset >= ends[tp]:
                        continue
                    subject = event.get("subject")
                    if subject in ours and str(event.get("type", "")).startswith("deskstream.ticket."):
                        out[subject].append(event["id"])
    finally:
        await consumer.stop()
    return out


async def scenario(args: argparse.Namespace, urls: dict[str, str], bootstrap: str, mongodb_url: str) -> dict:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    port = free_port()
    async with (
        httpx.AsyncClient(base_url=urls["tickets"], headers=auth, timeout=30) as tickets,
        httpx.AsyncClient(base_url=urls["ingest"], timeout=30) as ingest,
    ):
        r = await tickets.put(
            f"/v1/webhooks/{WEBHOOK_ID}",
            json={"url": f"http://127.0.0.1:{port}/hook", "events": ["deskstream.ticket.*"]},
        )
        r.raise_for_status()
        secret = r.json()["secret"]
        since_ms = int(time.time() * 1000) - 1000
        receiver = Receiver(port, secret)
        print(
            f"subscriber down (nothing listens on {port}) for {args.outage_s:g} s while "
            f"{args.tickets} tickets are worked",
            flush=True,
        )
        started = time.monotonic()
        interval = args.outage_s * 0.8 / args.tickets
        tasks = []
        for n in range(args.tickets):
            tasks.append(asyncio.create_task(one_ticket(ingest, tickets, n)))
            await asyncio.sleep(interval)
        ours = {t for t in await asyncio.gather(*tasks) if t}
        await asyncio.sleep(max(0.0, args.outage_s - (time.monotonic() - started)))
        truth = await topic_truth(bootstrap, ours, since_ms)
        expected = {e for ids in truth.values() for e in ids}
        db = pymongo.MongoClient(mongodb_url)[os.environ["MONGODB_DATABASE"]]
        attempts_down = db.webhook_attempts.count_documents({"webhook_id": WEBHOOK_ID})
        print(
            f"{len(expected)} events of {len(ours)} tickets on the topic; {attempts_down} delivery attempts "
            f"made while the subscriber was down; subscriber up",
            flush=True,
        )
        receiver.start()
        up = time.monotonic()
        deadline = up + args.wait_s
        while time.monotonic() < deadline:
            with receiver.lock:
                got = {a[0] for a in receiver.arrived}
            if expected <= got:
                break
            await asyncio.sleep(1.0)
        await asyncio.sleep(3.0)  # anything still in flight, duplicates included
        receiver.stop()
        deliveries = (await tickets.get(f"/v1/webhooks/{WEBHOOK_ID}/deliveries", params={"limit": 5})).json()
    arrived = list(receiver.arrived)
    counts = Counter(a[0] for a in arrived)
    first_seen: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    for webhook_id, ticket, _ in arrived:
        if webhook_id not in seen:
            seen.add(webhook_id)
            first_seen[ticket].append(webhook_id)
    out_of_order = sorted(t for t, ids in truth.items() if [i for i in first_seen.get(t, []) if i in set(ids)] != ids)
    missing = expected - seen
    return {
        "outage_s": args.outage_s,
        "tickets": len(ours),
        "events_on_topic": len(expected),
        "requests_received": len(arrived),
        "unique_received": len(seen & expected),
        "missing": len(missing),
        "duplicates_same_webhook_id": sum(n - 1 for n in counts.values() if n > 1),
        "tickets_out_of_order": len(out_of_order),
        "bad_signatures": receiver.bad_signatures,
        "attempts_while_down": attempts_down,
        "seconds_from_up_to_last_delivery": round((receiver.last_at or up) - up, 1),
        "last_attempt_logged": (deliveries.get("deliveries") or [{}])[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slot", type=int, default=int(os.environ.get("DESKSTREAM_TEST_SLOT") or 3))
    parser.add_argument("--outage-s", type=float, default=300)
    parser.add_argument("--tickets", type=int, default=90, help="each makes about a dozen ticket events")
    parser.add_argument("--wait-s", type=float, default=900, help="how long to wait for everything once it is up")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    slot = args.slot
    state = ROOT / ".state" / (f"test-{slot}" if slot else "test")
    ports = {"kafka_port": 19092 + 10 * slot, "controller_port": 19093 + 10 * slot, "mongo_port": 27019 + 10 * slot}
    os.environ.update(
        {
            "DESKSTREAM_API_TOKEN": TOKEN,
            "MONGODB_DATABASE": f"outage_{uuid.uuid4().hex[:8]}",
            "WEBHOOKS_ALLOW_PRIVATE": "1",
            "INGEST_RATE_LIMIT_PER_MIN": "0",
            "INGEST_IP_RATE_LIMIT_PER_MIN": "0",
        }
    )
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URL", "SMTP_URL"):
        os.environ.pop(name, None)
    stackctl.down(state_dir=state, services_only=True, quiet=True)  # services of an earlier run, other settings
    stack = stackctl.up(state_dir=state, port_offset=10000 - 1000 * slot, instances=1, quiet=True, **ports)
    try:
        result = asyncio.run(scenario(args, stack.service_urls, stack.kafka_bootstrap, stack.mongodb_url))
    finally:
        stackctl.down(state_dir=state, services_only=True, quiet=True)
    print(json.dumps(result, indent=1, default=str))
    ok = not result["missing"] and not result["tickets_out_of_order"] and not result["bad_signatures"]
    print("every event arrived, in order per ticket" if ok else "NOT every event arrived in order", flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
