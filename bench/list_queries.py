"""List-query latency with a million tickets in the store: the agent API's `GET /v1/tickets`
over HTTP, on the project's own FerretDB (SQLite backend), through a real tickets process.

    .venv/bin/python -m bench.list_queries [--tickets 1000000] [--repeat 100]

Loads N tickets shaped as the tickets service stores them (two years of history: mostly closed,
a working set of new/open/answered ones, 200 agents, 8 teams, 7 channels, 300k customers, tags,
SLA states, search terms) straight into the `tickets` collection, starts the tickets service on
it, then asks the lists agents and leads open — each shape `--repeat` times with varying values —
and reports p50/p99 per shape and overall. Writes bench/results-lists.json.

On FerretDB the page's ids come from FerretDB's SQLite table through expression indexes
(services/tickets/listing.py) and the documents by `_id` over the wire; `--plain-sample K` also
times K queries of the plain MongoDB-protocol path on the same data, for the ratio."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from pymongo import MongoClient  # noqa: E402

from deploy.local import stack as stackctl  # noqa: E402
from services.tickets.domain import PRIORITY_RANK, CustomerInfo, Status, Ticket, search_terms  # noqa: E402
from shared.events import Channel, CustomerRef, Identity, MessageReceived  # noqa: E402

STATE = ROOT / ".state" / "bench-lists"
PORTS = {"kafka_port": 25092, "controller_port": 25093, "mongo_port": 25017}
OFFSET = 17000  # tickets on 25002
DATABASE = "bench_lists"
TOKEN = "bench-lists-" + "0" * 16  # 16+ characters, as every service demands
NOW = datetime(2026, 11, 24, tzinfo=UTC)
STATUSES = ["closed"] * 85 + ["resolved"] * 5 + ["open"] * 3 + ["answered"] * 3 + ["new"] * 2 + ["postponed", "spam"]
CHANNELS = ["email", "chat", "sms", "whatsapp", "social", "voice", "webform"]
TEAMS = ["billing", "returns", "delivery", "payments", "accounts", "vip", "wholesale", "general"]
TAGS = [f"tag{i}" for i in range(30)] + ["refund", "late", "damaged", "vip"]
WORDS = ["order", "refund", "late", "damaged", "invoice", "طلبي", "parcel", "return", "size", "exchange",
         "tracking", "coupon", "warranty", "missing", "wrong", "colour", "delivery", "cancel", "address", "bill"]


def say(line: str) -> None:
    print(line, flush=True)


def ticket(rng: random.Random, n: int) -> dict[str, Any]:
    """A ticket made by the domain model from a first message, moved to a random state, and
    written out as TicketStore.save writes it."""
    created = NOW - timedelta(seconds=rng.randrange(0, 2 * 365 * 86400), milliseconds=rng.randrange(1000))
    created = created.replace(microsecond=created.microsecond // 1000 * 1000)
    channel, customer, words = rng.choice(CHANNELS), f"C-{rng.randrange(300_000):06d}", rng.sample(WORDS, 4)
    msg = MessageReceived(
        message_id=f"m-{n}", channel=Channel(channel), external_id=f"m-{n}", thread_key=f"{channel}:{customer}:{n}",
        customer=CustomerRef(name="Noura Al-Harbi", identities=[Identity(kind="email", value=f"{customer}@example.com")]),
        subject=f"Question about my {words[0]}", text=f"Hello, where is my {words[0]}? " * 3 + " ".join(words[1:]),
        sent_at=created, received_at=created)
    info = CustomerInfo(id=customer, name="Noura Al-Harbi", identities=[f"email:{customer}@example.com"])
    t, _ = Ticket.open_from(msg, ticket_id=f"TK-{n:08d}", customer=info, now=created)
    t.status = Status(rng.choice(STATUSES))
    t.assignee = None if t.status in (Status.new, Status.spam) else f"agent-{rng.randrange(200):03d}"
    t.team, t.priority = rng.choice(TEAMS), rng.choice(["low", "normal", "normal", "normal", "high", "urgent"])
    t.tags = rng.sample(TAGS, rng.randrange(0, 3))
    t.sla = rng.choice([{}, {}, {}, {}, {}, {}, {"first_response": "met"}, {"first_response": "met"},
                        {"first_response": "breached"}, {"resolution": "warning"}])
    t.updated_at = created + timedelta(minutes=rng.randrange(0, 600))
    t.postponed_until = NOW + timedelta(hours=rng.randrange(1, 48)) if t.status == Status.postponed else None
    t.resolved_at = created + timedelta(hours=2) if t.status in (Status.resolved, Status.closed) else None
    body = t.model_dump(mode="python", exclude={"version"})
    return {"_id": t.id, **body, "search": search_terms(t), "priority_rank": PRIORITY_RANK[t.priority],
            "sla_states": sorted(set(t.sla.values())), "version": 3, "_outbox": [], "applied_commands": []}


def load(url: str, total: int, batch: int = 2000) -> float:
    """Insert `total` tickets; returns documents a second."""
    marker = STATE / f"loaded-{total}-v2"  # a kept stack (--keep) loaded before: counting would scan it all
    if marker.exists():
        return 0.0
    client = MongoClient(url)
    collection = client[DATABASE]["tickets"]
    collection.drop()
    have = 0
    rng = random.Random(20261124)
    started = time.perf_counter()
    for start in range(have, total, batch):
        collection.insert_many([ticket(rng, n) for n in range(start, min(total, start + batch))], ordered=False)
        done = min(total, start + batch)
        if done % 100_000 < batch:
            rate = (done - have) / (time.perf_counter() - started)
            say(f"  {done:,} tickets stored ({rate:,.0f}/s)")
    elapsed = time.perf_counter() - started
    client.close()
    marker.write_text(f"{total}\n")
    return total / elapsed


def shapes(rng: random.Random) -> dict[str, Any]:
    """What an agent or a lead opens, with values drawn afresh each time."""
    return {
        "my open tickets (assignee + status, by last update)":
            lambda: {"assignee": f"agent-{rng.randrange(200):03d}", "status": "open", "sort": "-updated_at"},
        "team queue (team + status new, newest first)": lambda: {"team": rng.choice(TEAMS), "status": "new"},
        "a customer's tickets": lambda: {"customer": f"C-{rng.randrange(300_000):06d}"},
        "all tickets, newest first": lambda: {},
        "closed tickets, newest first": lambda: {"status": "closed"},
        "tag": lambda: {"tag": rng.choice(TAGS)},
        "SLA breached, by last update": lambda: {"sla": "breached", "sort": "-updated_at"},
        "channel + priority order": lambda: {"channel": rng.choice(CHANNELS), "sort": "-priority"},
        "text search, one word": lambda: {"q": rng.choice(WORDS)},
        "text search, two words": lambda: {"q": " ".join(rng.sample(WORDS, 2))},
    }


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def measure(base: str, repeat: int, pages: int) -> dict[str, Any]:
    rng = random.Random(7)
    results: dict[str, Any] = {}
    everything: list[float] = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600) as http:
        http.get("/v1/tickets", params={"limit": 1}).raise_for_status()  # warm
        for name, params_of in shapes(rng).items():
            took: list[float] = []
            found = 0
            for _ in range(repeat):
                params = {"limit": 50, **params_of()}
                started = time.perf_counter()
                r = http.get("/v1/tickets", params=params)
                took.append((time.perf_counter() - started) * 1000)
                r.raise_for_status()
                found += len(r.json()["items"])
            everything += took
            results[name] = {"p50_ms": round(statistics.median(took), 1), "p99_ms": round(pct(took, 99), 1),
                             "max_ms": round(max(took), 1), "avg_items": round(found / repeat, 1)}
            say(f"  {name:55s} p50 {results[name]['p50_ms']:7.1f} ms  p99 {results[name]['p99_ms']:7.1f} ms"
                f"  ({results[name]['avg_items']} items a page)")
        # paging deep: follow the cursor of the newest-first list
        took, cursor = [], None
        for _ in range(pages):
            started = time.perf_counter()
            r = http.get("/v1/tickets", params={"limit": 50, **({"cursor": cursor} if cursor else {})})
            took.append((time.perf_counter() - started) * 1000)
            cursor = r.json()["next_cursor"]
        everything += took
        results[f"next {pages} pages by cursor"] = {"p50_ms": round(statistics.median(took), 1),
                                                    "p99_ms": round(pct(took, 99), 1), "max_ms": round(max(took), 1)}
        say(f"  {'next pages by cursor':55s} p50 {results[f'next {pages} pages by cursor']['p50_ms']:7.1f} ms"
            f"  p99 {results[f'next {pages} pages by cursor']['p99_ms']:7.1f} ms")
    return {"shapes": results, "overall": {"queries": len(everything), "p50_ms": round(statistics.median(everything), 1),
                                           "p99_ms": round(pct(everything, 99), 1)}}


def plain_sample(url: str, k: int) -> list[float]:
    """The same kind of list asked through the MongoDB protocol alone (what FerretDB does by itself)."""
    client = MongoClient(url)
    collection = client[DATABASE]["tickets"]
    took = []
    for i in range(k):
        started = time.perf_counter()
        list(collection.find({"status": "open", "assignee": f"agent-{i:03d}", "purged": {"$ne": True}},
                             {"messages": 0, "timeline": 0}).sort([("updated_at", -1), ("_id", -1)]).limit(51))
        took.append(round(time.perf_counter() - started, 1))
    client.close()
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=100, help="queries per shape")
    parser.add_argument("--pages", type=int, default=100, help="pages followed by cursor")
    parser.add_argument("--plain-sample", type=int, default=0, help="also time K plain MongoDB-protocol queries")
    parser.add_argument("--keep", action="store_true", help="keep the stack and its data (re-runs skip loading)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-lists.json")
    args = parser.parse_args()

    ctl = stackctl
    os.environ.update({"DESKSTREAM_API_TOKEN": TOKEN, "MONGODB_DATABASE": DATABASE})
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URL"):
        os.environ.pop(name, None)
    t0 = time.monotonic()
    try:
        infra = ctl.infra_up(state_dir=STATE, quiet=True, **PORTS)
        say(f"loading {args.tickets:,} tickets into FerretDB ({STATE.relative_to(ROOT)}, :{PORTS['mongo_port']})")
        rate = load(infra.mongodb_url, args.tickets)
        started = time.monotonic()
        stack = ctl.up(state_dir=STATE, port_offset=OFFSET, only=["tickets"], timeout=3600, quiet=True, **PORTS)
        ready_s = time.monotonic() - started
        say(f"tickets service ready in {ready_s:.0f} s (indexes built on start); asking lists:")
        out = measure(stack.service_urls["tickets"], args.repeat, args.pages)
        plain = plain_sample(infra.mongodb_url, args.plain_sample) if args.plain_sample else []
    finally:
        if not args.keep:
            ctl.clean(state_dir=STATE, quiet=True)
    result = {"tickets": args.tickets, "load_docs_per_s": round(rate), "service_ready_s": round(ready_s),
              **out, "plain_protocol_seconds": plain, "total_seconds": round(time.monotonic() - t0)}
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    say(f"overall: {out['overall']['queries']} queries, p50 {out['overall']['p50_ms']} ms, "
        f"p99 {out['overall']['p99_ms']} ms" + (f"; plain protocol: {plain} s" if plain else ""))
    say(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
