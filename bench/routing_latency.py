"""Ticket created → assigned: how long routing takes to put an agent on a new ticket, end to end
on real Kafka and FerretDB with all five services running.

What it does:

1. starts a private stack (its own state dir, ports and database; all five services);
2. configures `--agents` agents (English and Arabic, chat and email, a few skills, capacity
   large enough that nothing waits in the queue: the direct path is what is measured) and three
   automation rules, as a support lead would;
3. posts `--tickets` chat messages at each of `--rates` a second (each from a new customer, so
   each opens a ticket), `--warmup` more before them unmeasured; every rate on freshly started
   services and an empty database;
4. reads `tickets.events` and takes, for every ticket, the time from its `created` event to its
   `assigned` event (both stamped by the tickets service, one clock), and from the client's
   POST to the `assigned` event; reading `tickets.commands` too, it splits the time into
   routing's part (created → the assign command's Kafka timestamp) and tickets' part
   (command → assigned);
5. writes p50/p90/p99/max per rate to `--out` (JSON) and stops the stack (unless `--keep-stack`).

The load generator runs on the same 2-core machine as Kafka, FerretDB and the services.

    flock /tmp/deskstream-bench.lock .venv/bin/python -m bench.routing_latency
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from shared import topics

ROOT = Path(__file__).resolve().parent.parent
LANGS = (("en", "Hello, where is my order {n}? Please check, thanks."),
         ("en", "Hello, I want a refund for my order {n}, please."),
         ("en", "Please send me the invoice for my order {n}, thank you."),
         ("ar", "مرحبا، أين طلبي رقم {n}؟ شكرا"),
         ("ar", "السلام عليكم، أريد استرداد المبلغ للطلب رقم {n}"))
RULES = {
    "refunds": {"name": "Refunds", "when": {"text_any": ["refund", "استرداد"]},
                "then": {"require_skills": ["refunds:2"], "add_tags": ["refund"]}},
    "billing": {"name": "Invoices", "when": {"text_any": ["invoice", "فاتورة"]},
                "then": {"require_skills": ["billing"], "add_tags": ["billing"]}},
    "vip": {"name": "VIP", "when": {"customer": ["nobody-in-particular"]}, "then": {"priority": "high"}},
}


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(values)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 1)

    return {"n": len(values), "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99),
            "max": round(ordered[-1] * 1000, 1), "mean": round(statistics.fmean(values) * 1000, 1)}


class Tail:
    """`tickets.events` from the end as it was when started."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.created: dict[str, tuple[str, float]] = {}  # ticket id -> (first message id, event time)
        self.assigned: dict[str, float] = {}  # ticket id -> event time of the first assignment
        self.decided: dict[str, float] = {}  # ticket id -> when routing's first assign command was published
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(topics.TICKETS_EVENTS, topics.TICKETS_COMMANDS, bootstrap_servers=self.bootstrap,
                                         group_id=None, auto_offset_reset="latest", enable_auto_commit=False)
        await self.consumer.start()
        while not self.consumer.assignment():
            await asyncio.sleep(0.05)
        for tp in self.consumer.assignment():
            await self.consumer.position(tp)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=200)
            for part in batch.values():
                for record in part:
                    event = json.loads(record.value)
                    at = datetime.fromisoformat(event["time"]).timestamp()
                    if event["type"] == "deskstream.ticket.created":
                        self.created[event["subject"]] = (event["data"]["message"]["message_id"], at)
                    elif event["type"] == "deskstream.ticket.assigned":
                        self.assigned.setdefault(event["subject"], at)
                    elif event["type"] == "deskstream.command.assign_ticket":
                        self.decided.setdefault(event["subject"], record.timestamp / 1000)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        await self.consumer.stop()


async def configure(client: httpx.AsyncClient, agents: int) -> None:
    for i in range(agents):
        skills = [["general"], ["refunds:3", "billing"], ["refunds:2"], ["billing:4"]][i % 4]
        languages = [["en"], ["en", "ar"], ["ar"]][i % 3]
        body = {"name": f"Agent {i}", "skills": skills, "languages": languages, "channels": ["chat", "email"],
                "capacity": 1000, "team": ["support", "billing"][i % 2]}
        (await client.put(f"/v1/agents/bench-{i}", json=body)).raise_for_status()
        (await client.put(f"/v1/agents/bench-{i}/presence", json={"status": "online"})).raise_for_status()
    for rule_id, rule in RULES.items():
        (await client.put(f"/v1/rules/{rule_id}", json=rule)).raise_for_status()


async def drive(args, urls: dict[str, str], bootstrap: str, token: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    run = uuid.uuid4().hex[:6]
    async with httpx.AsyncClient(base_url=urls["routing"], headers=headers, timeout=30) as routing, \
            httpx.AsyncClient(base_url=urls["ingest"], timeout=30) as ingest:
        await configure(routing, args.agents)
        tail = Tail(bootstrap)
        await tail.start()
        posted: dict[str, float] = {}  # message id -> when the client posted it (wall clock)
        measured: set[str] = set()
        total = args.warmup + args.tickets
        t0 = time.monotonic()
        for n in range(total):
            lang, text = LANGS[n % len(LANGS)]
            who = f"{run}-{n}"
            await asyncio.sleep(max(0.0, t0 + n / args.rate - time.monotonic()))
            sent_at = time.time()
            r = await ingest.post("/v1/inbound/chat", json={
                "session_id": f"s-{who}", "message_id": f"m-{who}", "text": text.format(n=n),
                "sent_at": "2026-11-23T10:00:00Z",
                "customer": {"name": f"Customer {n}", "email": f"{who}@example.com", "visitor_id": f"v-{who}"}})
            r.raise_for_status()
            posted[r.json()["message_id"]] = sent_at
            if n >= args.warmup:
                measured.add(r.json()["message_id"])
        send_s = time.monotonic() - t0
        deadline = time.monotonic() + args.drain
        while time.monotonic() < deadline:
            done = sum(1 for tid, (mid, _) in tail.created.items() if mid in measured and tid in tail.assigned)
            if done >= len(measured):
                break
            await asyncio.sleep(0.5)
        await tail.stop()
    created_to_assigned, posted_to_assigned, missing = [], [], 0
    routing_part, tickets_part = [], []
    for tid, (mid, created_at) in tail.created.items():
        if mid not in measured:
            continue
        if tid not in tail.assigned:
            missing += 1
            continue
        created_to_assigned.append(tail.assigned[tid] - created_at)
        posted_to_assigned.append(tail.assigned[tid] - posted[mid])
        if tid in tail.decided:
            routing_part.append(tail.decided[tid] - created_at)
            tickets_part.append(tail.assigned[tid] - tail.decided[tid])
    missing += len(measured) - sum(1 for _, (mid, _) in tail.created.items() if mid in measured)
    order = sorted(((tail.created[t][1], tail.assigned[t] - tail.created[t][1]) for t in tail.created
                    if tail.created[t][0] in measured and t in tail.assigned))
    tenth = max(1, len(order) // 10)
    return {
        "created_to_assigned_ms": percentiles(created_to_assigned),
        "posted_to_assigned_ms": percentiles(posted_to_assigned),
        # the two halves: routing deciding (created event → its assign command on tickets.commands)
        # and tickets applying the command (→ the assigned event)
        "created_to_command_ms": percentiles(routing_part),
        "command_to_assigned_ms": percentiles(tickets_part),
        "first_tenth_created_to_assigned_ms": percentiles([d for _, d in order[:tenth]]),
        "last_tenth_created_to_assigned_ms": percentiles([d for _, d in order[-tenth:]]),
        "not_assigned_within_drain": missing,
        "offered_rate_per_s": args.rate,
        "achieved_post_rate_per_s": round(total / send_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tickets", type=int, default=200, help="measured tickets per rate")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--rates", default="1,2,4", help="new tickets a second, one run each (comma-separated)")
    p.add_argument("--agents", type=int, default=10)
    p.add_argument("--drain", type=float, default=180.0, help="seconds to wait for the last assignments")
    p.add_argument("--state-dir", default=str(ROOT / ".state" / "bench-routing"))
    p.add_argument("--kafka-port", type=int, default=29292)
    p.add_argument("--mongo-port", type=int, default=27129)
    p.add_argument("--port-offset", type=int, default=21100)
    p.add_argument("--keep-stack", action="store_true")
    p.add_argument("--out", default=str(ROOT / "bench" / "results-routing.json"))
    args = p.parse_args(argv)

    from deploy.local import stack as stackctl

    runs = []
    try:
        for rate in (float(r) for r in args.rates.split(",")):
            # each rate on fresh services and an empty database: earlier runs' data would slow the next
            token = uuid.uuid4().hex
            os.environ.update({"DESKSTREAM_API_TOKEN": token, "MONGODB_DATABASE": f"bench_routing_{token[:8]}"})
            stackctl.down(state_dir=args.state_dir, services_only=True, quiet=True)
            stack = stackctl.up(state_dir=args.state_dir, kafka_port=args.kafka_port,
                                controller_port=args.kafka_port + 1, mongo_port=args.mongo_port,
                                port_offset=args.port_offset, quiet=True)
            args.rate = rate
            result = asyncio.run(drive(args, stack.service_urls, stack.kafka_bootstrap, token))
            print(f"rate {rate:g}/s: created -> assigned {result['created_to_assigned_ms']}", flush=True)
            runs.append(result)
    finally:
        if not args.keep_stack:
            stackctl.clean(state_dir=args.state_dir, quiet=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "services", "shared"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    report = {"benchmark": "routing: ticket created -> assigned latency", "commit": commit,
              "uncommitted_changes_in_services_or_shared": dirty,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
              "settings": {"tickets": args.tickets, "warmup": args.warmup, "agents": args.agents, "rules": len(RULES)},
              "runs": runs}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
