"""`make bench`: end-to-end throughput, latency, database cost and memory of deskstream, with what the
machine can do measured in the same run on the same broker and database.

1. starts a private stack (`.state/bench`, Kafka 23092/23093, FerretDB 23017, services 23001..23005)
   with two processes of every service, an API token and online agents of large capacity;
2. steps an open-loop load (requests sent on a clock by bench/loadgen.py, not waiting for answers)
   of ~1 KB messages over chat, email, SMS, WhatsApp and web forms up through `--rates`; a step
   counts as kept up when every request got its 202, answers did not fall behind, and the summed lag
   of the consumer groups did not grow over the second half and is small at the end —
   `sustained_msgs_per_s`. Per step: CPU of every process, FerretDB's CPU and the database commands
   the services sent, per accepted message;
3. 202 → `deskstream.ticket.assigned` (its Kafka timestamp) for every message that opened a ticket,
   at 250 msg/s (the issue's floor) right after the warm-up, before any step overloads the stack,
   and after the steps at min(1,000, sustained) when that differs;
4. resident memory of every process;
5. yardsticks on the same broker and database: Kafka's ProducerPerformance, pymongo insert_one and
   insert_many (batches of 100) into FerretDB, a bare FastStream consume→publish hop;
6. ingest alone (bench/ingest_alone.py): one ingest process, nothing else consuming;
7. the reference pipeline (bench/reference.py): a bare five-process pipeline of the same shape,
   stepped up the same way on the same broker and database;
8. writes bench/results.json (the agreed keys) and bench/results-detail.json, prints the report.

    flock /tmp/deskstream-bench.lock make bench                 # ~20 min
    flock /tmp/deskstream-bench.lock make bench ARGS=--quick    # ~8 min
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
from urllib.parse import urlencode

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import ingest_alone, loadgen, reference  # noqa: E402
from deploy.local import stack as stackctl  # noqa: E402
from tests.chaos.run import CHAT_SECRET, Load, online_agents  # noqa: E402  (the realistic five-channel request mix)

STATE = ROOT / ".state" / "bench"
PORTS = {"kafka_port": 23092, "controller_port": 23093, "mongo_port": 23017}
OFFSET = 15000  # services on 23001..23005 (instances' own ports 23101.., 23201..), below the ephemeral range
SERVICES = ("ingest", "tickets", "routing", "sla", "analytics")
INSTANCES = 2
TOKEN = "bench-" + uuid.uuid4().hex
AGENTS = [f"bench-agent-{i}" for i in range(200)]
CAPACITY = 1000  # the API's maximum; 200 agents hold every ticket a run opens (up to 200,000)
IGNORED_GROUPS = ("it-", "ref-", "hop-")  # other tools' groups on a shared broker


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


# ---------------------------------------------------------------------------------- load
class Mix(Load):
    """The chaos suite's five-channel request mix, as the bytes bench/loadgen.py sends."""

    def __init__(self) -> None:
        super().__init__("", 1.0)

    def __call__(self) -> tuple[str, bytes, str]:
        path, kwargs = self._request()
        if "json" in kwargs:
            return path, orjson.dumps(kwargs["json"]), "application/json"
        if "data" in kwargs:
            return path, urlencode(kwargs["data"]).encode(), "application/x-www-form-urlencoded"
        return path, kwargs["content"], kwargs["headers"]["content-type"]


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


# ---------------------------------------------------------------------------------- what the machine does
def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def processes(ctl: Any) -> dict[str, int]:
    """Every process of the stack: kafka, ferretdb and each service instance."""
    paths = ctl.StatePaths.of(STATE)
    out: dict[str, int] = {}
    for name in ("kafka", "ferretdb", *(ctl.instance_name(s, n) for s in SERVICES for n in range(1, INSTANCES + 1))):
        pid = ctl.running_pid(paths, name)
        if pid is not None:
            out[name] = pid
    return out


def cpu_of(pids: dict[str, int]) -> dict[str, float | None]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def by_service(per_process: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in per_process.items():
        service = name.rsplit("-", 1)[0] if name.rsplit("-", 1)[-1].isdigit() else name
        out[service] = out.get(service, 0.0) + value
    return out


def instance_urls(ctl: Any) -> dict[str, str]:
    """Each service process's own port (its /metrics are its own)."""
    return {ctl.instance_name(s, n): f"http://127.0.0.1:{ctl.instance_port(s, n, OFFSET)}"
            for s in SERVICES for n in range(1, INSTANCES + 1)}


def _counted(metric: str) -> re.Pattern[str]:
    return re.compile(rf"^{metric}\{{([^}}]*)\}} (\S+)$", re.M)


COMMANDS = _counted("deskstream_db_commands_total")
DOCUMENTS = _counted("deskstream_db_documents_total")  # the statements of writes: FerretDB's cost is per document


async def db_commands(urls: dict[str, str], counted: re.Pattern[str] = COMMANDS) -> dict[str, dict[str, float]]:
    """What each process asked the database so far (its `deskstream_db_commands_total`, or with
    `DOCUMENTS` the documents its writes carried), by command and collection; commands of the start
    (create, listCollections, buildInfo, ping) left out."""
    out: dict[str, dict[str, float]] = {}
    async with httpx.AsyncClient(timeout=10) as http:
        for name, url in urls.items():
            try:
                text = (await http.get(f"{url}/metrics")).text
            except httpx.HTTPError:
                continue
            counts: dict[str, float] = {}
            for labels, n in counted.findall(text):
                found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
                if found.get("command") in ("create", "listCollections", "buildInfo", "ping", "createIndexes"):
                    continue
                counts[f"{found.get('command', '?')} {found.get('collection', '')}".strip()] = float(n)
            out[name] = counts
    return out


def commands_between(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, float]:
    """Commands sent between two readings, by service and command."""
    out: dict[str, float] = {}
    for name, counts in after.items():
        service = name.rsplit("-", 1)[0] if name.rsplit("-", 1)[-1].isdigit() else name
        for key, n in counts.items():
            delta = n - before.get(name, {}).get(key, 0.0)
            if delta:
                out[f"{service}: {key}"] = out.get(f"{service}: {key}", 0.0) + delta
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def rss(pids: dict[str, int]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        out[name] = round(int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024, 1)
    return out


# ---------------------------------------------------------------------------------- lag
class Lag:
    """Committed offsets of the stack's consumer groups against the topics' end offsets."""

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
        return {group: lag for group, (lag, _) in (await self.snapshot()).items()}

    async def snapshot(self) -> dict[str, tuple[int, int]]:
        """Per group: its lag, and the summed end offsets of what it reads (their growth is its input rate)."""
        out: dict[str, tuple[int, int]] = {}
        for group, _ in await self.admin.list_consumer_groups():
            if group.startswith(IGNORED_GROUPS):
                continue
            committed = await self.admin.list_consumer_group_offsets(group)
            if not committed:
                continue
            ends = await self.consumer.end_offsets(list(committed))
            out[group] = (sum(max(0, ends[tp] - (m.offset if m.offset >= 0 else 0)) for tp, m in committed.items()),
                          sum(ends.values()))
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


def slope(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx, my = sum(t for t, _ in points) / n, sum(v for _, v in points) / n
    den = sum((t - mx) ** 2 for t, _ in points)
    return sum((t - mx) * (v - my) for t, v in points) / den if den else 0.0


async def step(ctl: Any, urls: dict[str, str], lag: Lag, rate: float, duration: float) -> dict[str, Any]:
    """One open-loop step, lag sampled every second; CPU and database commands over the step."""
    pids = processes(ctl)
    own = instance_urls(ctl)
    commands0, docs0 = await db_commands(own), await db_commands(own, DOCUMENTS)
    cpu0, t0 = cpu_of(pids), time.monotonic()
    load = asyncio.create_task(loadgen.run_open_loop("127.0.0.1", int(urls["ingest"].rsplit(":", 1)[1]), Mix(),
                                                     rate, duration, connections=128))
    samples: list[tuple[float, int, dict[str, int]]] = []
    first = await lag.snapshot()
    while not load.done():
        groups = await lag.snapshot()
        samples.append((time.monotonic() - t0, sum(v for v, _ in groups.values()), groups))
        await asyncio.sleep(1)
    res = await load
    elapsed = time.monotonic() - t0
    cpu1, commands1, docs1 = cpu_of(pids), await db_commands(own), await db_commands(own, DOCUMENTS)
    accepted = res.statuses.get("202", 0)
    cpu = {k: round((cpu1[k] - cpu0[k]) / elapsed, 3) for k in pids if cpu0.get(k) is not None and cpu1.get(k) is not None}
    commands = commands_between(commands0, commands1)
    documents = commands_between(docs0, docs1)
    second_half = [(t, v) for t, v, _ in samples if t >= duration / 2]
    last = samples[-1][2] if samples else {}
    end_lag = samples[-1][1] if samples else 0
    # each group's input over the step (records/s), and its lag at the end in seconds of that input
    span = samples[-1][0] if samples else elapsed
    flow = {g: max(1.0, (last[g][1] - first.get(g, (0, last[g][1]))[1]) / max(1.0, span)) for g in last}
    behind_s = {g: round(last[g][0] / flow[g], 2) for g in last}
    answered = res.answered_per_s()
    growth = slope(second_half)
    # kept up: every request answered 202 on time, no group more than 2 s of its own input behind at
    # the end, and the summed backlog not growing over the second half (≤ 2 % of the summed input)
    kept = (accepted >= 0.99 * res.requests and res.unanswered == 0 and answered >= 0.9 * rate
            and all(last[g][0] <= 50 or behind_s[g] <= 2.0 for g in last)
            and growth <= max(1.0, 0.02 * sum(flow.values())))
    ferret_ms = (cpu1["ferretdb"] - cpu0["ferretdb"]) * 1000 / max(1, accepted) if "ferretdb" in cpu else None
    return {"rate": rate, "seconds": round(elapsed, 1), "sent": res.requests, "accepted": accepted,
            "statuses": res.statuses, "unanswered": res.unanswered, "errors": dict(res.errors),
            "answered_per_s": answered,
            "ingest_response_p50_ms": res.percentile_ms(0.5), "ingest_response_p99_ms": res.percentile_ms(0.99),
            "lag_slope_msgs_per_s": round(growth, 2), "lag_max": max((v for _, v, _ in samples), default=0),
            "lag_at_end": end_lag, "lag_at_end_per_group": {g: v for g, (v, _) in last.items()},
            "lag_at_end_s_per_group": behind_s, "input_per_s_per_group": {g: round(v, 1) for g, v in flow.items()},
            "cores": cpu, "cores_by_service": {k: round(v, 3) for k, v in by_service(cpu).items()},
            "cpu_ms_per_msg": {k: round(v * elapsed * 1000 / max(1, accepted), 3) for k, v in by_service(cpu).items()},
            "ferretdb_cpu_ms_per_msg": None if ferret_ms is None else round(ferret_ms, 3),
            "db_commands": commands,
            "db_commands_per_msg": round(sum(commands.values()) / max(1, accepted), 3),
            "db_documents_per_msg": {k: round(v / max(1, accepted), 3) for k, v in documents.items()},
            "kept_up": kept}


# ---------------------------------------------------------------------------------- latency
async def latency_run(urls: dict[str, str], bootstrap: str, rate: float, duration: float) -> dict[str, Any]:
    """202 (wall clock) → the ticket's `assigned` record's Kafka timestamp, for messages that opened one."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    await consumer._client.force_metadata_update()  # noqa: SLF001 - the topic's partitions, now
    parts = [TopicPartition("tickets.events", p) for p in sorted(consumer.partitions_for_topic("tickets.events"))]
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)
    for tp in parts:
        await consumer.position(tp)
    ticket_of: dict[str, str] = {}
    filed: set[str] = set()
    assigned_at: dict[str, float] = {}
    stop = asyncio.Event()

    async def tail() -> None:
        while not stop.is_set():
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    try:
                        e = orjson.loads(r.value)
                    except orjson.JSONDecodeError:
                        continue
                    kind = e.get("type")
                    if kind in ("deskstream.ticket.created", "deskstream.ticket.message_added"):
                        filed.add(e["data"]["message"]["message_id"])
                        if kind == "deskstream.ticket.created":
                            ticket_of[e["data"]["message"]["message_id"]] = e["subject"]
                    elif kind == "deskstream.ticket.assigned":
                        assigned_at.setdefault(e["subject"], r.timestamp / 1000)

    reader = asyncio.create_task(tail())
    wall = time.time() - time.perf_counter()  # perf_counter → wall clock
    res = await loadgen.run_open_loop("127.0.0.1", int(urls["ingest"].rsplit(":", 1)[1]), Mix(), rate, duration,
                                      connections=128)
    accepted = {m: wall + a for m, a, s in zip(res.message_id, res.answered, res.status) if s == 202 and m and a}

    def done() -> bool:
        return all(m in filed for m in accepted) and all(
            ticket_of[m] in assigned_at for m in accepted if m in ticket_of)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 300 and not done():
        await asyncio.sleep(1)
    stop.set()
    await reader
    await consumer.stop()
    lat = [assigned_at[ticket_of[m]] - at for m, at in accepted.items() if m in ticket_of and ticket_of[m] in assigned_at]
    return {"rate_msgs_per_s": rate, "seconds": duration, "sent": res.requests, "accepted": len(accepted),
            "filed": sum(1 for m in accepted if m in filed), "caught_up_s_after_load": round(time.monotonic() - t0, 1),
            "tickets_opened": sum(1 for m in accepted if m in ticket_of), "assigned_measured": len(lat),
            "p50": _ms(pct(lat, 0.5)), "p90": _ms(pct(lat, 0.9)), "p99": _ms(pct(lat, 0.99)),
            "p999": _ms(pct(lat, 0.999)), "max": _ms(max(lat) if lat else None),
            "ingest_response_p50_ms": res.percentile_ms(0.5), "ingest_response_p99_ms": res.percentile_ms(0.99)}


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
    return {"producer_msgs_per_s": round(float(re.search(r"([\d.]+) records/sec", last).group(1))),
            "producer_summary": last.strip()}


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
    broker = KafkaBroker(bootstrap, logger=None)
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
        arrivals += [time.monotonic()] * sum(len(v) for v in batch.values())
    await broker.stop()
    await reader.stop()
    await admin.delete_topics([src, dst])
    await admin.close()
    spread = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0
    return {"hop_per_s": round((len(arrivals) - 1) / spread) if spread else None, "messages": n,
            "arrived": len(arrivals)}


# ---------------------------------------------------------------------------------- the run
async def deskstream(args: argparse.Namespace, ctl: Any, stack: Any) -> dict[str, Any]:
    urls, bootstrap = stack.service_urls, stack.kafka_bootstrap
    await online_agents(urls["routing"], TOKEN, dict.fromkeys(AGENTS, CAPACITY))
    lag = Lag(bootstrap)
    await lag.start()
    steps: list[dict[str, Any]] = []
    sustained, best = 0.0, None
    latencies: list[dict[str, Any]] = []

    async def latency(rate: float) -> None:
        say(f"latency: {rate:g} msg/s for {args.latency:g} s (202 → assigned)")
        latencies.append(await latency_run(urls, bootstrap, rate, args.latency))
        say(f"  p50 {latencies[-1]['p50']} ms, p99 {latencies[-1]['p99']} ms, p99.9 {latencies[-1]['p999']} ms over "
            f"{latencies[-1]['assigned_measured']} tickets")
    try:
        say(f"warm-up: {args.warmup:g} s at 100 msg/s")
        await step(ctl, urls, lag, 100, args.warmup)
        await lag.drain(60)
        # the floor first, on a stack that has not been overloaded yet
        await latency(250.0)
        await lag.drain(60)
        for rate in args.rates:
            say(f"step: {rate:g} msg/s for {args.step:g} s")
            result = await step(ctl, urls, lag, rate, args.step)
            steps.append(result)
            say(f"  202 {result['accepted']}/{result['sent']} (answered {result['answered_per_s']}/s), ingest p99 "
                f"{result['ingest_response_p99_ms']} ms, lag max {result['lag_max']} end {result['lag_at_end']}, slope "
                f"{result['lag_slope_msgs_per_s']}/s → {'kept up' if result['kept_up'] else 'FELL BEHIND'}")
            say(f"  behind at the end (s of each group's input): {result['lag_at_end_s_per_group']}")
            say(f"  cores {result['cores_by_service']}; FerretDB {result['ferretdb_cpu_ms_per_msg']} ms and "
                f"{result['db_commands_per_msg']} database commands per message")
            drained = await lag.drain(args.drain)
            result["drained_after_s"] = None if drained is None else round(drained, 1)
            if not result["kept_up"]:
                if drained is None:
                    say("  backlog left; waiting up to 180 s more")
                    await lag.drain(180)
                break
            sustained, best = rate, result
    finally:
        await lag.stop()
    if (rate := min(1000.0, sustained or 250.0)) != 250.0:
        await latency(rate)
    memory = rss(processes(ctl))
    say("memory (MB): " + ", ".join(f"{k} {v}" for k, v in memory.items()))
    return {"sustained": sustained, "best": best, "steps": steps, "latency": latencies, "memory": memory}


async def yardsticks(args: argparse.Namespace, ctl: Any, stack: Any) -> dict[str, Any]:
    say(f"yardstick: Kafka ProducerPerformance, {args.kafka_records} × 1 KB")
    kafka = await asyncio.to_thread(kafka_tools, ctl, stack.kafka_bootstrap, args.kafka_records)
    say(f"  {kafka['producer_msgs_per_s']} records/s")
    say(f"yardstick: pymongo insert_one × {args.mongo_docs} (~1 KB) into the same FerretDB")
    mongo = await asyncio.to_thread(mongo_inserts, stack.mongodb_url, args.mongo_docs)
    say(f"  {mongo['inserts_per_s']} inserts/s")
    say("yardstick: insert_many of 100 × ~1 KB into a collection of 20,000")
    many = await asyncio.to_thread(reference.mongo_insert_many_docs_per_s, stack.mongodb_url, docs=args.many_docs,
                                   ferretdb_pid=processes(ctl).get("ferretdb"))
    say(f"  {many['docs_per_s']} docs/s, FerretDB {many['ferretdb_cpu_ms_per_doc']} ms a document")
    say(f"yardstick: bare FastStream consume→publish hop × {args.hop_messages}")
    hop = await faststream_hop(stack.kafka_bootstrap, args.hop_messages)
    say(f"  {hop['hop_per_s']} hops/s")
    return {"kafka": kafka, "mongo": mongo, "insert_many": many, "faststream_hop": hop}


def report(results: dict[str, Any]) -> str:
    s, y = results["sustained_msgs_per_s"], results["yardsticks"]
    lat = results["latency_ms"]
    ref = results.get("reference_pipeline_msgs_per_s")
    lines = ["", f"deskstream end to end (five services, {INSTANCES} process(es) each, real Kafka and FerretDB, one 2-core machine)",
             f"  sustained, lag not growing       {s:g} msg/s   (floor ≥ 500, goal 2,000)"
             + (f"; reference pipeline {ref:g} msg/s → ratio {s / ref:.2f}" if ref else ""),
             f"  202 → assigned at {lat['rate_msgs_per_s']:g} msg/s      p50 {lat['p50']} ms, p99 {lat['p99']} ms "
             "(floor p99 ≤ 250 ms at 250)",
             f"  database commands per message     {results['db_commands_per_msg']}   (≤ 3)",
             f"  FerretDB CPU per message          {results['ferretdb_cpu_ms_per_msg']} ms   (≤ 1.5)",
             f"  ingest alone                      {results['ingest_alone_req_per_s']} chat requests/s   (≥ 1,500)",
             "  resident memory (MB, per process) " + ", ".join(f"{k} {v}" for k, v in results["rss_mb"].items())
             + "   (≤ 250)",
             "", "yardsticks, same broker and database, same run",
             f"  Kafka ProducerPerformance (1 KB)     {y['kafka_msgs_per_s']:>10,} msg/s",
             f"  pymongo insert_one into FerretDB     {y['mongo_inserts_per_s']:>10,} docs/s",
             f"  insert_many of 100 into FerretDB     {results['mongo_insert_many_docs_per_s']:>10,} docs/s",
             f"  bare FastStream consume→publish      {y['faststream_hop_per_s'] or 0:>10,} hops/s"]
    return "\n".join(lines)


def main() -> int:
    global INSTANCES
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter steps and smaller yardsticks")
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=None,
                        help="comma-separated step rates in msg/s (default 100,150,200,250,300,400,500,750,1000,1500,2000)")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference pipeline")
    parser.add_argument("--keep-stack", action="store_true", help="leave the bench stack running")
    parser.add_argument("--instances", type=int, default=INSTANCES, help="processes per service (default 2)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json",
                        help="where the results go; the detail goes beside it as <name>-detail.json")
    args = parser.parse_args()
    INSTANCES = args.instances
    q = args.quick
    args.rates = args.rates or ([100, 200, 300, 500] if q else [100, 150, 200, 250, 300, 400, 500, 750, 1000, 1500, 2000])
    args.ref_rates = [250, 500, 1000, 1250, 1500, 2000, 3000]
    args.warmup, args.step, args.drain, args.latency = (20, 20, 30, 20) if q else (40, 60, 45, 60)
    args.kafka_records, args.mongo_docs, args.many_docs, args.hop_messages = (
        (50_000, 500, 10_000, 1000) if q else (200_000, 2000, 30_000, 5000))

    ctl = stackctl
    os.environ.update({"DESKSTREAM_API_TOKEN": TOKEN, "DESKSTREAM_CHAT_SECRET": CHAT_SECRET, "MONGODB_DATABASE": "bench",
                       "INGEST_RATE_LIMIT_PER_MIN": "0",  # the generator reuses senders; measure the pipeline
                       "ROUTING_OFFLINE_GRACE_S": "3600"})
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URL", "SMTP_URL"):
        os.environ.pop(name, None)
    t0 = time.monotonic()
    say(f"starting a stack of its own in {STATE.relative_to(ROOT)} (Kafka :23092, FerretDB :23017, services "
        f":23001-5, {INSTANCES} processes each)")
    ctl.clean(state_dir=STATE, quiet=True)
    detail: dict[str, Any] = {}
    try:
        stack = ctl.up(state_dir=STATE, port_offset=OFFSET, instances=INSTANCES, quiet=True, **PORTS)
        run = asyncio.run(deskstream(args, ctl, stack))
        detail["deskstream"] = run
        detail["yardsticks"] = asyncio.run(yardsticks(args, ctl, stack))
        # ingest alone: the other services stopped, one ingest process
        ctl.down(state_dir=STATE, services_only=True, quiet=True)
        ctl.up(state_dir=STATE, port_offset=OFFSET, instances=1, only=["ingest"], quiet=True, **PORTS)
        pid = processes(ctl).get("ingest")
        say("ingest alone: one process, nothing else consuming")
        detail["ingest_alone"] = asyncio.run(ingest_alone.measure(
            stack.service_urls["ingest"], pid=pid, bootstrap=stack.kafka_bootstrap, say=say,
            others={k: v for k, v in processes(ctl).items() if k in ("kafka", "ferretdb")}))
        ctl.down(state_dir=STATE, services_only=True, quiet=True)
        if not args.no_reference:
            say("reference pipeline: five bare processes of the same shape on the same broker and database")
            infra = {k: v for k, v in processes(ctl).items() if k in ("kafka", "ferretdb")}
            detail["reference"] = reference.run_against(
                stack.kafka_bootstrap, stack.mongodb_url, state=STATE, infra=infra, rates=args.ref_rates,
                step_s=args.step, latency_s=args.latency, ingest_port=PORTS["mongo_port"] + 2, log=say)
    finally:
        if not args.keep_stack:
            ctl.clean(state_dir=STATE, quiet=True)
    run, y = detail["deskstream"], detail["yardsticks"]
    best = run["best"] or {}
    headline = run["latency"][0]
    memory: dict[str, float] = {}
    for name, mb in run["memory"].items():
        service = name.rsplit("-", 1)[0] if name.rsplit("-", 1)[-1].isdigit() else name
        memory[service] = max(memory.get(service, 0.0), mb)
    results = {
        "sustained_msgs_per_s": run["sustained"],
        "instances_per_service": INSTANCES,
        "latency_ms": {"rate_msgs_per_s": headline["rate_msgs_per_s"], "p50": headline["p50"], "p99": headline["p99"],
                       "p999": headline["p999"]},
        "latency_ms_at_sustained": {k: run["latency"][-1][k] for k in ("rate_msgs_per_s", "p50", "p99", "p999")},
        "rss_mb": {s: memory.get(s) for s in SERVICES},
        "db_commands_per_msg": best.get("db_commands_per_msg"),
        "ferretdb_cpu_ms_per_msg": best.get("ferretdb_cpu_ms_per_msg"),
        "ingest_alone_req_per_s": detail["ingest_alone"].get("ingest_alone_req_per_s"),
        "ingest_p99_ms_at_1000": detail["ingest_alone"].get("ingest_p99_ms_at_1000"),
        "mongo_insert_many_docs_per_s": y["insert_many"]["docs_per_s"],
        "reference_pipeline_msgs_per_s": (detail.get("reference") or {}).get("reference_pipeline_msgs_per_s"),
        "yardsticks": {"kafka_msgs_per_s": y["kafka"]["producer_msgs_per_s"],
                       "mongo_inserts_per_s": y["mongo"]["inserts_per_s"],
                       "faststream_hop_per_s": y["faststream_hop"]["hop_per_s"]},
    }
    detail.update({"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "total_seconds": round(time.monotonic() - t0),
                   "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                               "platform": platform.platform()},
                   "args": {k: v for k, v in vars(args).items() if k != "out"}})
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    detail_path = args.out.with_name(args.out.stem + "-detail.json")
    detail_path.write_text(json.dumps(detail, indent=2, default=str) + "\n")
    print(report(results))
    print(f"\nwritten to {args.out} and {detail_path} in "
          f"{detail['total_seconds'] // 60} min {detail['total_seconds'] % 60} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
