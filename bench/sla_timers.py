"""Breach-detection lag of the SLA service with many running timers, on real Kafka and FerretDB.

What it does, per variant (the working tree, and optionally an earlier commit as the baseline):

1. seeds `--timers` running first-response clocks straight into a fresh database, in the SLA
   store's own document format (bulk `insert_many`, unordered, 5,000 a batch): most are due
   hours from now; `--rate` a second come due during a `--window`-second measurement window
   that opens `--lead` seconds after seeding, each with a warning `--warn-before` seconds earlier;
2. starts that variant's SLA service as its own process (`python -m services.sla`) on the database;
3. optionally plays ticket traffic meanwhile (`--ticket-rate` status changes a second on the
   tickets due later, each pausing or resuming a clock, as agents answering and customers
   writing back would);
4. reads `sla.events` with a plain consumer and takes, for every warning and breach of a clock due
   in the window, the lag from the moment it was due to the record's Kafka timestamp (the moment
   the SLA service's producer sent it); clocks due before the service was ready are left out
   (that is catch-up, not detection);
5. stops the service and writes p50/p90/p99/max per event type to `--out`.

Events still missing `--drain` seconds after the window closed count as lagging by more than the
time they had; percentiles that fall among them are reported as `null` with `censored: true`.

Runs on a private stack (its own state dir and ports); `--keep-stack` leaves it running.

    .venv/bin/python -m bench.sla_timers --baseline <commit> --ticket-rate 0 2   # before (that commit) and after
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2

from services.sla.domain import Clock, start_clock, Policy
from services.sla.store import SlaStore, clock_document
from shared import topics
from shared.broker import DEFAULT_PARTITIONS, ensure_topics
from shared.events import Channel, EventType, SlaTarget, TicketSnapshot, TicketStatusChanged, make_event
from shared.mongo import Mongo

ROOT = Path(__file__).resolve().parent.parent
BATCH = 5_000
POLICY_ID = "bench"


def load_stackctl():
    spec = importlib.util.spec_from_file_location("stackctl", ROOT / "deploy" / "local" / "stackctl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Plan:
    """Which clocks come due when: the measured ones in the window, the rest hours later."""

    prefix: str
    timers: int
    window_start: datetime
    window_s: float
    rate: float
    warn_before_s: int
    due: dict[str, datetime] = field(default_factory=dict)  # ticket id -> due (measured clocks only)

    @property
    def measured(self) -> int:
        return min(self.timers, int(self.rate * self.window_s))


def tickets_partition(ticket_id: str) -> int:
    """The tickets.events partition the ticket's events would arrive on (Kafka's default partitioner)."""
    return (murmur2(ticket_id.encode()) & 0x7FFFFFFF) % DEFAULT_PARTITIONS


def seeded_clock(ticket_id: str, due: datetime, warn_before_s: int) -> Clock:
    budget = 6 * 3600
    policy = Policy(name=POLICY_ID, first_response_s=budget, warn_before_s=warn_before_s)
    return start_clock(ticket_id, SlaTarget.first_response, POLICY_ID, policy, budget,
                       due - timedelta(seconds=budget), None)


async def seed(mongo: Mongo, plan: Plan, lead_s: float, sharded: bool) -> float:
    """Insert the clocks: first those due hours from now, then the measured ones, due in a
    window that opens `lead_s` seconds after the last batch; returns the seconds it took.
    `sharded`: through the store's bulk insert (this tree's layout); otherwise as one
    collection `sla_clocks` of the same documents (the layout before the clocks were split)."""
    store, single = SlaStore(mongo), mongo.collection("sla_clocks")
    rng = random.Random(7)
    t0 = time.perf_counter()

    async def insert(clocks: list[tuple[str, datetime]]) -> None:
        made = []
        for ticket_id, due in clocks:
            clock = seeded_clock(ticket_id, due, plan.warn_before_s)
            clock.partition = tickets_partition(ticket_id)
            made.append(clock)
        for i in range(0, len(made), BATCH):
            if sharded:
                await store.add_clocks(made[i:i + BATCH])
            else:
                await single.insert_many([clock_document(c) for c in made[i:i + BATCH]], ordered=False)

    later = datetime.now(UTC)
    for start in range(plan.measured, plan.timers, BATCH):
        await insert([(f"{plan.prefix}-{i:06d}", later + timedelta(seconds=rng.uniform(3600, 8 * 3600)))
                      for i in range(start, min(plan.timers, start + BATCH))])
    plan.window_start = datetime.now(UTC) + timedelta(seconds=lead_s)
    step = 1.0 / plan.rate
    for i in range(plan.measured):
        plan.due[f"{plan.prefix}-{i:06d}"] = plan.window_start + timedelta(seconds=i * step + rng.uniform(0, step))
    await insert(list(plan.due.items()))
    return time.perf_counter() - t0


class Listener:
    """Reads `sla.events` from the end as it is now, keeping the records of one variant's tickets."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.bootstrap, self.prefix = bootstrap, prefix
        self.records: list[dict[str, Any]] = []
        self._task: asyncio.Task | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                          enable_auto_commit=False)
        await self._consumer.start()
        parts = [TopicPartition(topics.SLA_EVENTS, p)
                 for p in sorted(self._consumer.partitions_for_topic(topics.SLA_EVENTS) or range(DEFAULT_PARTITIONS))]
        self._consumer.assign(parts)
        await self._consumer.seek_to_end(*parts)
        for tp in parts:  # resolve the positions now, before anything is published
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            received = time.time()
            for part in batch.values():
                for record in part:
                    event = json.loads(record.value)
                    if not str(event.get("subject", "")).startswith(self.prefix + "-"):
                        continue
                    self.records.append({"id": event["id"], "type": event["type"], "subject": event["subject"],
                                         "sent": record.timestamp / 1000, "received": received})

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer:
            await self._consumer.stop()


async def ticket_traffic(bootstrap: str, plan: Plan, rate: float, until: float) -> int:
    """Agents and customers at work meanwhile: `rate` status changes a second on tickets due
    hours from now, each ticket answered (its clock pauses) and then reopened (it resumes)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=1)
    await producer.start()
    sent, rng = 0, random.Random(11)
    tickets = [f"{plan.prefix}-{i:06d}" for i in range(plan.measured, plan.timers)]
    status: dict[str, str] = {}
    try:
        start = time.monotonic()
        while time.time() < until:
            ticket_id = rng.choice(tickets) if len(status) < 50 or rng.random() < 0.5 else rng.choice(list(status))
            before = status.get(ticket_id, "open")
            after = "answered" if before == "open" else "open"
            status[ticket_id] = after
            snapshot = TicketSnapshot(id=ticket_id, status=after, priority="normal", channel=Channel.chat,
                                      customer_id="bench", created_at=plan.window_start, version=2)
            event = make_event(EventType.TICKET_STATUS_CHANGED,
                               TicketStatusChanged(ticket=snapshot, from_status=before, to_status=after),
                               source="deskstream/bench", subject=ticket_id)
            await producer.send_and_wait(topics.TICKETS_EVENTS, json.dumps(event.model_dump(mode="json")).encode(),
                                         key=ticket_id.encode())
            sent += 1
            await asyncio.sleep(max(0.0, start + sent / rate - time.monotonic()))
    finally:
        await producer.stop()
    return sent


async def skip_backlog(bootstrap: str) -> None:
    """Commit the SLA group's tickets.events offsets at the end, so a run does not start by
    applying the ticket events an earlier run sent (for tickets of another database)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=topics.GROUP_SLA, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topics.TICKETS_EVENTS, p)
                 for p in sorted(consumer.partitions_for_topic(topics.TICKETS_EVENTS) or range(DEFAULT_PARTITIONS))]
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        await consumer.commit({tp: ends[tp] for tp in parts})
    finally:
        await consumer.stop()


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (inf entries stand for missing events)."""
    rank = max(1, int(-(-q * len(sorted_values) // 100)))  # ceil(q/100 * n)
    return sorted_values[rank - 1]


def lag_stats(lags: list[float], censored_at: float) -> dict[str, Any]:
    values = sorted(lags)
    out: dict[str, Any] = {"events": len(values), "missing": sum(1 for v in values if v == float("inf"))}
    for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100)):
        v = percentile(values, q) if values else None
        out[f"{name}_s"] = None if v is None or v == float("inf") else round(v, 4)
    out["censored"] = out["missing"] > 0
    out["missing_had_at_least_s"] = round(censored_at, 1) if out["missing"] else None
    return out


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200
    except Exception:
        return False


def metric(url: str, name: str) -> float | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            text = answer.read().decode()
    except Exception:
        return None
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    return float(found.group(1)) if found else None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), 0 when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def baseline_tree(ref: str, into: Path) -> str:
    """The services and shared packages of commit `ref`, extracted (git archive) into `into`."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{ref}^{{commit}}"],
                         check=True, capture_output=True, text=True).stdout.strip()
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", sha, "services", "shared"],
                         check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(into, filter="data")
    return sha


async def run_variant(name: str, code_dir: Path, args, infra, log_dir: Path, ticket_rate: float) -> dict[str, Any]:
    database = f"bench_sla_{name}_{int(time.time())}"
    prefix = f"B{name[:1].upper()}{int(time.time()) % 100000}"
    mongo = Mongo(infra.mongodb_url, database, app_name="deskstream-bench")
    plan = Plan(prefix=prefix, timers=args.timers, window_start=datetime.now(UTC), window_s=args.window,
                rate=args.rate, warn_before_s=args.warn_before)
    print(f"[{name}] seeding {args.timers:,} running clocks into {database} ...", flush=True)
    # the layout the variant's store reads: split by ticket since the store has add_clocks
    sharded = "def add_clocks" in (code_dir / "services" / "sla" / "store.py").read_text()
    seed_s = await seed(mongo, plan, args.lead, sharded)
    window_start = plan.window_start
    print(f"[{name}] seeded in {seed_s:.1f} s; {plan.measured:,} come due at {args.rate:g}/s in the window "
          f"that opens in {(window_start - datetime.now(UTC)).total_seconds():.0f} s", flush=True)

    await skip_backlog(infra.kafka_bootstrap)
    listener = Listener(infra.kafka_bootstrap, prefix)
    await listener.start()
    port = args.http_port
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=infra.kafka_bootstrap, MONGODB_URL=infra.mongodb_url,
               MONGODB_DATABASE=database, SLA_HTTP_PORT=str(port), PYTHONPATH=str(code_dir), PYTHONUNBUFFERED="1",
               DESKSTREAM_LOG_LEVEL="INFO")
    env.pop("DESKSTREAM_API_TOKEN", None)
    log_path = log_dir / f"sla-{name}-{ticket_rate:g}.log"
    started = time.time()
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "services.sla"], cwd=code_dir, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        while not http_ok(f"{base}/healthz"):
            if process.poll() is not None:
                raise SystemExit(f"[{name}] the SLA service exited; see {log_path}")
            await asyncio.sleep(0.2)
        healthy = time.time()
        # a service that loads its timers in the background says when it has (and how many it holds);
        # clocks due before it is ready are left out of the measurement
        while time.time() < window_start.timestamp() + args.window:
            loading = metric(f"{base}/metrics", "deskstream_sla_loading")
            if loading is None or (loading == 0 and (metric(f"{base}/metrics", "deskstream_sla_timers") or 0) > 0):
                break
            await asyncio.sleep(0.2)
        ready = time.time()
        print(f"[{name}] healthy after {healthy - started:.1f} s, timers ready after {ready - started:.1f} s "
              f"(window opens at +{window_start.timestamp() - started:.1f} s)", flush=True)
        window_end = window_start.timestamp() + args.window
        await asyncio.sleep(max(0.0, window_start.timestamp() - time.time()))
        cpu_before = {"sla": cpu_seconds(process.pid), "ferretdb": cpu_seconds(infra_pid(args, "ferretdb"))}
        if ready > window_start.timestamp():
            print(f"[{name}] not ready when the window opened: {ready - window_start.timestamp():.0f} s of it "
                  "left out (raise --lead)", flush=True)
        load_at_window = os.getloadavg()[0]
        traffic = (await ticket_traffic(infra.kafka_bootstrap, plan, ticket_rate, window_end)
                   if ticket_rate > 0 else 0)
        await asyncio.sleep(max(0.0, window_end - time.time()))
        cpu_window = {k: round(cpu_seconds(p) - cpu_before[k], 1)
                      for k, p in (("sla", process.pid), ("ferretdb", infra_pid(args, "ferretdb")))}
        expected = {(t, kind) for t, due in plan.due.items() if due.timestamp() >= ready + 1
                    for kind in ("warning", "breached")
                    if kind == "breached" or (due - timedelta(seconds=args.warn_before)).timestamp() >= ready + 1}
        deadline = window_end + args.drain
        while time.time() < deadline:
            got = {(r["subject"], r["type"].rsplit(".", 1)[1]) for r in listener.records}
            if expected <= got:
                break
            await asyncio.sleep(0.5)
        stopped = time.time()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        await listener.stop()
        await mongo.client.drop_database(database)
        mongo.close()

    first: dict[tuple[str, str], float] = {}
    ids: dict[str, int] = {}
    for r in listener.records:
        ids[r["id"]] = ids.get(r["id"], 0) + 1
        key = (r["subject"], r["type"].rsplit(".", 1)[1])
        first[key] = min(first.get(key, r["sent"]), r["sent"])
    result: dict[str, Any] = {"variant": name, "database": database, "timers": args.timers,
                              "seed_s": round(seed_s, 1), "ready_after_start_s": round(ready - started, 1),
                              "ticket_rate": ticket_rate, "ticket_events_during_window": traffic,
                              "cpu_s_during_window": cpu_window,
                              "machine_load_1m": {"window_start": round(load_at_window, 1),
                                                  "window_end": round(os.getloadavg()[0], 1)}}
    for kind in ("breached", "warning"):
        lags = []
        for ticket, k in expected:
            if k != kind:
                continue
            due = plan.due[ticket] - (timedelta(seconds=args.warn_before) if kind == "warning" else timedelta())
            sent = first.get((ticket, kind))
            lags.append(float("inf") if sent is None else sent - due.timestamp())
        result[kind] = lag_stats(lags, censored_at=stopped - window_end)
    result["duplicate_event_ids"] = sum(1 for n in ids.values() if n > 1)
    result["unexpected_events"] = len({(r["subject"], r["type"]) for r in listener.records
                                       if r["subject"] not in plan.due})
    return result


def relative(path: str) -> str:
    """A path as the report shows it: relative to the repository when inside it."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return path


def current_commit() -> str:
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "services/sla", "shared"],
                           capture_output=True, text=True).stdout.strip()
    return f"{head}{' + uncommitted changes' if dirty else ''}"


def infra_pid(args, name: str) -> int:
    try:
        return int((Path(args.state_dir) / "run" / f"{name}.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def describe(result: dict[str, Any]) -> str:
    def cell(stats: dict[str, Any], name: str) -> str:
        v = stats[f"{name}_s"]
        return f"> {stats['missing_had_at_least_s']:.0f} s" if v is None and stats["missing"] else f"{v * 1000:.0f} ms"

    b, w = result["breached"], result["warning"]
    return (f"{result['variant']:>9} with {result['ticket_rate']:g} ticket events/s: breach lag p50 {cell(b, 'p50')}, p99 {cell(b, 'p99')}, max {cell(b, 'max')} "
            f"over {b['events']} breaches ({b['missing']} missing); warning lag p50 {cell(w, 'p50')}, "
            f"p99 {cell(w, 'p99')}; duplicates {result['duplicate_event_ids']}")


async def main(args) -> None:
    stackctl = load_stackctl()
    infra = stackctl.infra_up(state_dir=args.state_dir, kafka_port=args.kafka_port,
                              controller_port=args.controller_port, mongo_port=args.mongo_port, quiet=True)
    await ensure_topics(infra.kafka_bootstrap)
    log_dir = Path(args.state_dir) / "bench-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="sla-baseline-") as tmp:
            variants: list[tuple[str, Path, str | None]] = []
            if args.baseline:
                sha = baseline_tree(args.baseline, Path(tmp))
                variants.append(("baseline", Path(tmp), sha))
            variants.append(("current", ROOT, None))
            for rate in args.ticket_rate:
                for name, code_dir, sha in variants:
                    result = await run_variant(name, code_dir, args, infra, log_dir, rate)
                    result["commit"] = sha or current_commit()
                    print(describe(result), flush=True)
                    results.append(result)
    finally:
        if not args.keep_stack:
            stackctl.clean(state_dir=args.state_dir, quiet=True)
    report: dict[str, Any] = {
        "benchmark": "sla_timers", "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "settings": {k: (relative(v) if k == "state_dir" else v) for k, v in vars(args).items() if k != "out"},
        "results": results,
    }
    ratios: dict[str, dict[str, Any]] = {}
    for rate in args.ticket_rate:
        by_name = {r["variant"]: r for r in results if r["ticket_rate"] == rate}
        if "baseline" not in by_name or "current" not in by_name:
            continue
        ratio = ratios[f"{rate:g}_ticket_events_per_s"] = {}
        for kind in ("breached", "warning"):
            for q in ("p50_s", "p99_s"):
                before, after = by_name["baseline"][kind][q], by_name["current"][kind][q]
                if before and after:
                    ratio[f"{kind}_{q}"] = round(before / after, 1)
                elif after and by_name["baseline"][kind]["missing"]:
                    ratio[f"{kind}_{q}"] = (f"> {by_name['baseline'][kind]['missing_had_at_least_s'] / after:.0f}"
                                            " (the baseline's value is censored)")
    if ratios:
        report["baseline_over_current"] = ratios
        print(f"baseline / current: {ratios}")
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--timers", type=int, default=100_000, help="running clocks to seed")
    p.add_argument("--rate", type=float, default=20.0, help="clocks coming due per second in the window")
    p.add_argument("--window", type=float, default=60.0, help="seconds of measurement")
    p.add_argument("--lead", type=float, default=120.0, help="seconds from seeding to the window (service start-up)")
    p.add_argument("--drain", type=float, default=60.0, help="seconds to wait for late events after the window")
    p.add_argument("--warn-before", type=int, default=10, help="warning this many seconds before the due time")
    p.add_argument("--ticket-rate", type=float, nargs="+", default=[0.0],
                   help="ticket status changes a second during the window (each pauses or resumes a clock); "
                        "several values: a run per value")
    p.add_argument("--baseline", help="also measure this git commit's SLA service first (before/after)")
    p.add_argument("--state-dir", default=str(ROOT / ".state" / "sla-bench"))
    p.add_argument("--kafka-port", type=int, default=29092)
    p.add_argument("--controller-port", type=int, default=29093)
    p.add_argument("--mongo-port", type=int, default=27029)
    p.add_argument("--http-port", type=int, default=28004)
    p.add_argument("--keep-stack", action="store_true", help="leave Kafka and FerretDB running afterwards")
    p.add_argument("--out", default=str(ROOT / "bench" / "results-sla.json"))
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
