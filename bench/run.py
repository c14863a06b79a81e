"""`make bench`: end-to-end throughput, latency and memory of deskstream, with the
infrastructure's own limits measured in the same run on the same broker and database.

1. starts a private stack (`.state/bench`, Kafka 23092/23093, FerretDB 23017, services
   23001..23005) with an API token and online agents of large capacity;
2. steps an open-loop load (requests sent on a clock, not waiting for answers) of ~1 KB
   messages over chat, email, SMS, WhatsApp and web forms up through `--rates`, and takes
   the highest rate at which every consumer group (tickets, routing, sla, analytics) keeps
   up: its lag does not grow and is small when the step ends — `sustained_msgs_per_s`;
3. at min(500, sustained) msg/s measures, for every message that opened a ticket, the time
   from ingest's 202 to the `deskstream.ticket.assigned` record's Kafka timestamp;
4. reads each service's resident memory from /proc (pid files in the state dir);
5. yardsticks: Kafka's ProducerPerformance/ConsumerPerformance on the same broker, pymongo
   insert_one into the same FerretDB, a bare FastStream consume→publish hop;
6. writes bench/results.json (the agreed keys) and bench/results-detail.json, prints a
   report with the ratios, and stops the stack (unless `--keep-stack`).

    flock /tmp/deskstream-bench.lock make bench            # ~10 min
    flock /tmp/deskstream-bench.lock make bench ARGS=--quick   # ~3 min
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.chaos.run import Load, online_agents  # noqa: E402  (the realistic five-channel request mix)
from tests.conftest import load_stackctl  # noqa: E402

STATE = ROOT / ".state" / "bench"
PORTS = {"kafka_port": 23092, "controller_port": 23093, "mongo_port": 23017}
OFFSET = 15000  # services on 23001..23005, below the ephemeral port range
SERVICES = ("ingest", "tickets", "routing", "sla", "analytics")
GROUPS = ("tickets", "routing", "sla", "analytics")
TOKEN = "bench-" + uuid.uuid4().hex
AGENTS = [f"bench-agent-{i}" for i in range(16)]
CAPACITY = 1000  # the API's maximum; 16 agents hold every ticket a run opens


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


# ---------------------------------------------------------------------------------- load
class Sender(Load):
    """The chaos suite's request mix, sent open-loop; records when each 202 arrived."""

    def __init__(self, ingest_url: str, rate: float) -> None:
        super().__init__(ingest_url, rate)
        self.sent = self.accepted = self.refused = 0
        self.in_flight = 0
        self.accepted_at: dict[str, float] = {}  # message id → wall time of the 202
        self.response_s: list[float] = []

    async def run(self, duration: float) -> None:  # type: ignore[override]
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=self.url, timeout=30, limits=limits) as client:
            pending: set[asyncio.Task[None]] = set()
            interval = 1 / self.rate
            start = next_at = time.monotonic()
            while next_at - start < duration:
                path, kwargs = self._request()
                task = asyncio.create_task(self._post(client, path, kwargs))
                pending.add(task)
                task.add_done_callback(pending.discard)
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            self.lagging_requests = len(pending)
            await asyncio.gather(*pending, return_exceptions=True)

    async def _post(self, client: httpx.AsyncClient, path: str, kwargs: dict[str, Any]) -> None:
        self.sent += 1
        self.in_flight += 1
        t0 = time.monotonic()
        try:
            r = await client.post(path, **kwargs)
        except httpx.HTTPError:
            self.refused += 1
            return
        finally:
            self.in_flight -= 1
        self.response_s.append(time.monotonic() - t0)
        if r.status_code == 202:
            self.accepted += 1
            self.accepted_at[r.json()["message_id"]] = time.time()
        else:
            self.refused += 1


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


# ---------------------------------------------------------------------------------- lag
class Lag:
    """Committed offsets of the services' consumer groups against the topics' end offsets."""

    def __init__(self, bootstrap: str) -> None:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)

    async def start(self) -> None:
        await self.admin.start()
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def per_group(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for group in GROUPS:
            committed = await self.admin.list_consumer_group_offsets(group)
            parts = list(committed)
            if not parts:
                out[group] = 0
                continue
            ends = await self.consumer.end_offsets(parts)
            out[group] = sum(max(0, ends[tp] - (meta.offset if meta.offset >= 0 else 0))
                             for tp, meta in committed.items())
        return out

    async def total(self) -> int:
        return sum((await self.per_group()).values())

    async def drain(self, timeout: float, below: int = 5) -> float | None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if await self.total() <= below:
                return time.monotonic() - t0
            await asyncio.sleep(1)
        return None


async def step(urls: dict[str, str], lag: Lag, rate: float, duration: float) -> dict[str, Any]:
    """One open-loop step; lag sampled every second while the load runs."""
    sender = Sender(urls["ingest"], rate)
    task = asyncio.create_task(sender.run(duration))
    samples: list[tuple[float, int, dict[str, int]]] = []
    t0 = time.monotonic()
    while not task.done():
        groups = await lag.per_group()
        samples.append((time.monotonic() - t0, sum(groups.values()), groups))
        await asyncio.sleep(1)
    await task
    elapsed = time.monotonic() - t0
    second_half = [(t, v) for t, v, _ in samples if t >= duration / 2]
    slope = _slope(second_half)
    end_lag = samples[-1][1] if samples else 0
    accepted_ratio = sender.accepted / max(1, sender.sent)
    # keeps up: every request answered 202, requests not piling up at ingest, and the groups'
    # lag neither growing through the second half nor more than ~1 s of traffic at the end
    ok = (accepted_ratio >= 0.99 and sender.lagging_requests <= max(5, rate)
          and slope <= max(0.2, 0.02 * rate) and end_lag <= max(5, rate))
    return {"rate": rate, "seconds": round(elapsed, 1), "sent": sender.sent, "accepted": sender.accepted,
            "refused": sender.refused, "requests_pending_at_end": sender.lagging_requests,
            "ingest_response_p50_ms": _ms(pct(sender.response_s, 0.5)),
            "ingest_response_p99_ms": _ms(pct(sender.response_s, 0.99)),
            "lag_slope_msgs_per_s": round(slope, 2), "lag_max": max((v for _, v, _ in samples), default=0),
            "lag_at_end": end_lag, "lag_at_end_per_group": samples[-1][2] if samples else {},
            "kept_up": ok}


def _slope(points: list[tuple[float, int]]) -> float:
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    den = sum((t - mx) ** 2 for t, _ in points)
    return sum((t - mx) * (v - my) for t, v in points) / den if den else 0.0


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


# ---------------------------------------------------------------------------------- latency
async def latency_run(urls: dict[str, str], bootstrap: str, rate: float, duration: float) -> dict[str, Any]:
    """202 → the `assigned` record's Kafka timestamp, for messages that opened a ticket."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    parts = [TopicPartition("tickets.events", p) for p in sorted(consumer.partitions_for_topic("tickets.events") or [])]
    if not parts:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - no public refresh
        parts = [TopicPartition("tickets.events", p) for p in sorted(consumer.partitions_for_topic("tickets.events"))]
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)
    for tp in parts:
        await consumer.position(tp)
    ticket_of: dict[str, str] = {}  # message id → ticket id (created events)
    filed: set[str] = set()  # message ids seen in created or message_added events
    assigned_at: dict[str, float] = {}  # ticket id → first assigned record's timestamp (s)
    stop = asyncio.Event()

    async def tail() -> None:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    try:
                        e = json.loads(r.value)
                    except ValueError:
                        continue
                    if e.get("type") in ("deskstream.ticket.created", "deskstream.ticket.message_added"):
                        filed.add(e["data"]["message"]["message_id"])
                    if e.get("type") == "deskstream.ticket.created":
                        ticket_of[e["data"]["message"]["message_id"]] = e["subject"]
                    elif e.get("type") == "deskstream.ticket.assigned":
                        assigned_at.setdefault(e["subject"], r.timestamp / 1000)

    reader = asyncio.create_task(tail())
    sender = Sender(urls["ingest"], rate)
    await sender.run(duration)

    def done() -> bool:  # every accepted message filed, every ticket it opened assigned
        if not all(m in filed for m in sender.accepted_at):
            return False
        return all(ticket_of[m] in assigned_at for m in sender.accepted_at if m in ticket_of)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 300 and not done():
        await asyncio.sleep(1)
    stop.set()
    await reader
    await consumer.stop()
    lat = [assigned_at[ticket_of[m]] - at for m, at in sender.accepted_at.items()
           if m in ticket_of and ticket_of[m] in assigned_at]
    opened = sum(1 for m in sender.accepted_at if m in ticket_of)
    return {"rate_msgs_per_s": rate, "seconds": duration, "sent": sender.sent, "accepted": sender.accepted,
            "filed": sum(1 for m in sender.accepted_at if m in filed),
            "caught_up_s_after_load": round(time.monotonic() - t0, 1),
            "tickets_opened": opened, "assigned_measured": len(lat),
            "p50": _ms(pct(lat, 0.5)), "p90": _ms(pct(lat, 0.9)), "p99": _ms(pct(lat, 0.99)),
            "p999": _ms(pct(lat, 0.999)), "max": _ms(max(lat) if lat else None),
            "ingest_response_p50_ms": _ms(pct(sender.response_s, 0.5)),
            "ingest_response_p99_ms": _ms(pct(sender.response_s, 0.99))}


# ---------------------------------------------------------------------------------- database commands
async def db_commands(urls: dict[str, str], accepted: int) -> dict[str, Any]:
    """What each service asked FerretDB over the whole run (its `deskstream_db_commands_total`),
    per accepted message: where the database's time goes."""
    pattern = re.compile(r"^deskstream_db_commands_total\{([^}]*)\} (\S+)$", re.M)
    by_service: dict[str, dict[str, float]] = {}
    async with httpx.AsyncClient(timeout=10) as http:
        for name in SERVICES:
            text = (await http.get(f"{urls[name]}/metrics")).text
            counts = {}
            for labels, n in pattern.findall(text):
                found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
                counts[f"{found.get('command', '?')} {found.get('collection', '')}".strip()] = float(n)
            by_service[name] = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
    per = {name: round(sum(c.values()) / max(accepted, 1), 1) for name, c in by_service.items()}
    return {"accepted_messages": accepted, "per_message": per, "per_message_total": round(sum(per.values()), 1),
            "by_service": by_service}


# ---------------------------------------------------------------------------------- memory
def rss(ctl: Any) -> dict[str, dict[str, float]]:
    """VmRSS / VmHWM of every process in each service's process group, in MB."""
    paths = ctl.StatePaths.of(STATE)
    out: dict[str, dict[str, float]] = {}
    for name in SERVICES:
        pid = int(paths.pid(name).read_text().split()[0])
        members = {pid, *ctl._group_members(pid)}  # noqa: SLF001
        now = peak = 0.0
        for p in members:
            status = Path(f"/proc/{p}/status").read_text()
            now += int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
            peak += int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024
        out[name] = {"rss_mb": round(now, 1), "peak_rss_mb": round(peak, 1), "processes": len(members)}
    return out


# ---------------------------------------------------------------------------------- yardsticks
def kafka_tools(ctl: Any, bootstrap: str, records: int) -> dict[str, Any]:
    art = ctl.provision(quiet=True)
    cp = f"{art.kafka_home / 'libs'}/*"
    produce = subprocess.run(
        [art.java, "-Xmx512m", "-cp", cp, "org.apache.kafka.tools.ProducerPerformance", "--topic", "bench-yardstick",
         "--num-records", str(records), "--record-size", "1024", "--throughput", "-1",
         "--producer-props", f"bootstrap.servers={bootstrap}"],
        capture_output=True, text=True, timeout=300, check=True)
    last = [ln for ln in produce.stdout.splitlines() if "records sent" in ln][-1]
    produced = float(re.search(r"([\d.]+) records/sec", last).group(1))
    out: dict[str, Any] = {"producer_msgs_per_s": round(produced), "producer_summary": last.strip()}
    try:
        consume = subprocess.run(
            [art.java, "-Xmx512m", "-cp", cp, "org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server",
             bootstrap, "--topic", "bench-yardstick", "--messages", str(records), "--timeout", "60000"],
            capture_output=True, text=True, timeout=300, check=True)
        lines = [ln for ln in consume.stdout.splitlines() if ln.strip()]
        at = next(i for i, ln in enumerate(lines) if "nMsg.sec" in ln)
        header = [h.strip() for h in lines[at].split(",")]
        values = [v.strip() for v in lines[at + 1].split(",")]
        out["consumer_msgs_per_s"] = round(float(values[header.index("nMsg.sec")]))
    except (subprocess.SubprocessError, ValueError, IndexError, StopIteration) as e:
        out["consumer_error"] = str(e)[:300]
    return out


def mongo_inserts(mongodb_url: str, docs: int) -> dict[str, Any]:
    from pymongo import MongoClient

    client = MongoClient(mongodb_url)
    coll = client["bench_yardstick"]["docs"]
    coll.drop()
    body = "x" * 1000
    t0 = time.perf_counter()
    for i in range(docs):
        coll.insert_one({"_id": f"d-{i}", "n": i, "body": body})
    elapsed = time.perf_counter() - t0
    client.drop_database("bench_yardstick")
    client.close()
    return {"inserts_per_s": round(docs / elapsed), "docs": docs, "seconds": round(elapsed, 2)}


async def faststream_hop(bootstrap: str, n: int) -> dict[str, Any]:
    """A FastStream subscriber on A publishing each message to B; the rate at which they arrive on B."""
    from faststream.kafka import KafkaBroker

    suffix = uuid.uuid4().hex[:8]
    src, dst = f"bench-hop-a-{suffix}", f"bench-hop-b-{suffix}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(src, 1, 1), NewTopic(dst, 1, 1)])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    payload = json.dumps({"text": "y" * 1000}).encode()
    for i in range(n):
        await producer.send(src, payload, key=str(i).encode())
    await producer.flush()
    await producer.stop()

    broker = KafkaBroker(bootstrap, logger=None)  # no per-message log lines: the bare hop
    forward = broker.publisher(dst)

    @broker.subscriber(src, group_id=f"hop-{suffix}", auto_offset_reset="earliest")
    async def hop(body: dict[str, Any]) -> None:
        await forward.publish(body)

    reader = AIOKafkaConsumer(dst, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await reader.start()
    await broker.start()
    arrivals: list[float] = []
    t0 = time.monotonic()
    while len(arrivals) < n and time.monotonic() - t0 < 120:
        batch = await reader.getmany(timeout_ms=500)
        now = time.monotonic()
        arrivals += [now] * sum(len(v) for v in batch.values())
    await broker.stop()
    await reader.stop()
    await admin.delete_topics([src, dst])
    await admin.close()
    if len(arrivals) < 2:
        return {"hop_per_s": None, "arrived": len(arrivals)}
    spread = arrivals[-1] - arrivals[0]
    return {"hop_per_s": round((len(arrivals) - 1) / spread) if spread else None, "messages": n,
            "arrived": len(arrivals), "seconds_first_to_last": round(spread, 2),
            "seconds_including_group_join": round(arrivals[-1] - t0, 2)}


# ---------------------------------------------------------------------------------- run
async def measure(args: argparse.Namespace, ctl: Any, stack: Any) -> dict[str, Any]:
    urls, bootstrap = stack.service_urls, stack.kafka_bootstrap
    await online_agents(urls["routing"], TOKEN, dict.fromkeys(AGENTS, CAPACITY))
    lag = Lag(bootstrap)
    await lag.start()
    try:
        say(f"warm-up: {args.warmup:g} s at 2 msg/s")
        warm = await step(urls, lag, 2, args.warmup)
        await lag.drain(60)
        steps: list[dict[str, Any]] = []
        sustained = 0.0
        for rate in args.rates:
            say(f"step: {rate:g} msg/s for {args.step:g} s")
            result = await step(urls, lag, rate, args.step)
            steps.append(result)
            say(f"  accepted {result['accepted']}/{result['sent']}, ingest p99 {result['ingest_response_p99_ms']} ms, "
                f"lag max {result['lag_max']} end {result['lag_at_end']} {result['lag_at_end_per_group']}, "
                f"slope {result['lag_slope_msgs_per_s']}/s → {'kept up' if result['kept_up'] else 'FELL BEHIND'}")
            drained = await lag.drain(args.drain)
            result["drained_after_s"] = None if drained is None else round(drained, 1)
            if not result["kept_up"]:
                break
            sustained = rate
        if steps and steps[-1]["kept_up"] is False and steps[-1]["drained_after_s"] is None:
            say(f"  backlog left after {args.drain:g} s; waiting up to 180 s more")
            await lag.drain(180)
    finally:
        await lag.stop()
    lat_rate = min(500.0, sustained) if sustained else min(args.rates)
    say(f"latency: {lat_rate:g} msg/s for {args.latency:g} s (202 → assigned)")
    latency = await latency_run(urls, bootstrap, lat_rate, args.latency)
    say(f"  p50 {latency['p50']} ms, p99 {latency['p99']} ms, p99.9 {latency['p999']} ms "
        f"over {latency['assigned_measured']} tickets")
    accepted = warm["accepted"] + sum(r["accepted"] for r in steps) + latency["accepted"]
    commands = await db_commands(urls, accepted)
    say(f"database commands per accepted message: {commands['per_message_total']} "
        f"({', '.join(f'{k} {v}' for k, v in commands['per_message'].items())})")
    memory = rss(ctl)
    say("memory: " + ", ".join(f"{k} {v['rss_mb']} MB" for k, v in memory.items()))
    say(f"yardstick: Kafka ProducerPerformance, {args.kafka_records} × 1 KB")
    kafka = await asyncio.to_thread(kafka_tools, ctl, bootstrap, args.kafka_records)
    say(f"  {kafka['producer_msgs_per_s']} records/s produced, {kafka.get('consumer_msgs_per_s')} consumed")
    say(f"yardstick: pymongo insert_one × {args.mongo_docs} (~1 KB) into the same FerretDB")
    mongo = await asyncio.to_thread(mongo_inserts, stack.mongodb_url, args.mongo_docs)
    say(f"  {mongo['inserts_per_s']} inserts/s")
    say(f"yardstick: bare FastStream consume→publish hop × {args.hop_messages}")
    hop = await faststream_hop(bootstrap, args.hop_messages)
    say(f"  {hop['hop_per_s']} hops/s")
    results = {
        "sustained_msgs_per_s": sustained,
        "latency_ms": {"rate_msgs_per_s": lat_rate, "p50": latency["p50"], "p99": latency["p99"],
                       "p999": latency["p999"]},
        "rss_mb": {name: memory[name]["rss_mb"] for name in SERVICES},
        "yardsticks": {"kafka_msgs_per_s": kafka["producer_msgs_per_s"], "mongo_inserts_per_s": mongo["inserts_per_s"],
                       "faststream_hop_per_s": hop["hop_per_s"]},
    }
    detail = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
              "args": {k: v for k, v in vars(args).items() if k != "out"},
              "steps": steps, "latency": latency, "db_commands": commands, "memory": memory, "kafka": kafka, "mongo": mongo,
              "faststream_hop": hop}
    return {"results": results, "detail": detail}


def report(results: dict[str, Any]) -> str:
    s, y, lat = results["sustained_msgs_per_s"], results["yardsticks"], results["latency_ms"]

    def ratio(v: float | None) -> str:
        return f"1 : {v / s:,.0f}" if s and v else "-"
    lines = ["", "deskstream end to end (all five services, real Kafka and FerretDB, one 2-core machine)",
             f"  sustained without growing lag   {s:g} msg/s          (goal ≥ 2,000)",
             f"  202 → assigned at {lat['rate_msgs_per_s']:g} msg/s     p50 {lat['p50']} ms, p99 {lat['p99']} ms, "
             f"p99.9 {lat['p999']} ms   (goal at 500 msg/s: p50 ≤ 10, p99 ≤ 50)",
             "  resident memory (MB)            " + ", ".join(f"{k} {v}" for k, v in results["rss_mb"].items())
             + "   (goal ≤ 150 each)",
             "", "yardsticks, same broker and database, same run           sustained : yardstick",
             f"  Kafka ProducerPerformance (1 KB)  {y['kafka_msgs_per_s']:>10,} msg/s     {ratio(y['kafka_msgs_per_s'])}",
             f"  pymongo insert_one into FerretDB  {y['mongo_inserts_per_s']:>10,} docs/s      {ratio(y['mongo_inserts_per_s'])}",
             f"  bare FastStream consume→publish   {y['faststream_hop_per_s'] or 0:>10,} hops/s      "
             f"{ratio(y['faststream_hop_per_s'])}"]
    return "\n".join(lines)


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter steps and smaller yardsticks (~3 min)")
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=None,
                        help="comma-separated step rates in msg/s (default 2,4,6,8,10,12,16,20,30,40,80,160)")
    parser.add_argument("--keep-stack", action="store_true", help="leave the bench stack running")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json",
                        help="where the results go; the detail goes beside it as <name>-detail.json")
    args = parser.parse_args()
    q = args.quick
    args.rates = args.rates or ([2, 4, 8, 16, 32, 64] if q else [2, 4, 6, 8, 10, 12, 16, 20, 30, 40, 80, 160])
    args.warmup, args.step, args.drain, args.latency = (5, 12, 20, 20) if q else (10, 30, 30, 60)
    args.kafka_records, args.mongo_docs, args.hop_messages = (50_000, 500, 1000) if q else (200_000, 2000, 5000)

    ctl = load_stackctl()
    os.environ.update({"DESKSTREAM_API_TOKEN": TOKEN, "MONGODB_DATABASE": "bench",
                       "INGEST_RATE_LIMIT_PER_MIN": "0",  # the generator reuses senders; measure the pipeline
                       "ROUTING_OFFLINE_GRACE_S": "3600"})
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URL", "SMTP_URL"):
        os.environ.pop(name, None)
    t0 = time.monotonic()
    say(f"starting a stack of its own in {STATE.relative_to(ROOT)} (Kafka :23092, FerretDB :23017, services :23001-5)")
    ctl.clean(state_dir=STATE, quiet=True)
    try:
        stack = ctl.up(state_dir=STATE, port_offset=OFFSET, quiet=True, **PORTS)
        out = asyncio.run(measure(args, ctl, stack))
    finally:
        if not args.keep_stack:
            ctl.clean(state_dir=STATE, quiet=True)
    out["detail"]["total_seconds"] = round(time.monotonic() - t0)
    args.out.write_text(json.dumps(out["results"], indent=2) + "\n")
    detail_path = args.out.with_name(args.out.stem + "-detail.json")
    detail_path.write_text(json.dumps(out["detail"], indent=2) + "\n")
    print(report(out["results"]))
    print(f"\nwritten to {_shown(args.out)} and {_shown(detail_path)} "
          f"in {out['detail']['total_seconds'] // 60} min {out['detail']['total_seconds'] % 60} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
