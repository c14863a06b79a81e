"""The reference pipeline: a yardstick for deskstream's end-to-end throughput.

A bare pipeline of deskstream's five-process shape — HTTP ingest → Kafka → tickets →
routing → tickets, with sla and analytics beside routing — that keeps the same guarantees
in the same order (202 after acks=all; each consumer group commits after its writes and
publishes) and writes the same number of documents and records per message, but has no
business rules: state is a dict, routing is "least-loaded agent", every write is an insert.
It is stepped up the way bench/run.py steps deskstream, so deskstream's sustained rate can
be read as a fraction of what this machine does with this shape.

1. starts Kafka and FerretDB of its own (`--state-dir`, default .state/reference, Kafka
   26092/26093, FerretDB 26017) and creates the three topics;
2. starts the five processes (`python -m bench.reference <role>`, ingest on 26001);
3. steps an open-loop load of ~1 KB chat messages (`--rates`, `--step` s each) and keeps the
   highest rate at which every request got 202, requests did not pile up at ingest, and
   the summed lag of the four consumer groups did not grow over the step's second half and
   was at most ~1 s of traffic at its end: `reference_pipeline_msgs_per_s`;
4. at min(1000, that rate) measures 202 → the ticket's "assigned" record (Kafka timestamp);
5. reads CPU seconds of every process (the five, Kafka, FerretDB, the load generator) from
   /proc/<pid>/stat around each step, per accepted message;
6. yardstick: `insert_many` of 100 × ~1 KB documents into a FerretDB collection already
   holding 20,000: docs/s and FerretDB CPU ms per document;
7. prints a table, writes bench/results-reference.json, stops everything and cleans the
   state dir (unless `--keep-stack`).

    flock /tmp/deskstream-bench.lock .venv/bin/python -m bench.reference          # ~5-8 min
    flock /tmp/deskstream-bench.lock .venv/bin/python -m bench.reference --quick  # ~3 min

The two cores are shared, so every step also reports how much CPU processes other than the
pipeline's took, and a step lost while they took more than `--busy-threshold` cores is run
again (`--busy-retries`); every attempt is kept in the results.

The work per message is set by the shape options (`--tickets-docs`, `--tickets-records`,
`--sla-docs`, `--analytics-docs`, sizes, `--partitions`, ...); see `--help`.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import os
import platform
import random
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.reference_http import LoadResult, OpenLoopClient  # noqa: E402
from bench.reference_roles import (  # noqa: E402
    ASSIGNED, GROUP_TOPICS, ROLES, TOPIC_COMMANDS, TOPIC_EVENTS, TOPIC_INGEST, Shape, event_type, run_async, run_role)

DEFAULT_STATE = ROOT / ".state" / "reference"
DEFAULT_RATES = [250, 500, 1000, 1250, 1500, 2000, 3000]
QUICK_RATES = [250, 500, 1000, 2000]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


# ---------------------------------------------------------------------------------- verdict (pure)
def lag_slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, lag): how fast the backlog grows (records/s)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    den = sum((t - mx) ** 2 for t, _ in points)
    return sum((t - mx) * (v - my) for t, v in points) / den if den else 0.0


def step_verdict(rate: float, duration: float, sent: int, accepted: int, pending_at_end: int,
                 samples: list[tuple[float, float]]) -> dict[str, Any]:
    """Did the pipeline keep up with `rate`? The same tests bench/run.py applies to deskstream
    (lag slope over the second half, end lag, requests pending at ingest), except that every
    request must get its 202: the reference has no reason to refuse any."""
    second_half = [(t, v) for t, v in samples if t >= duration / 2]
    slope = lag_slope(second_half)
    end_lag = samples[-1][1] if samples else 0
    reasons = []
    if accepted < sent:
        reasons.append(f"{sent - accepted} of {sent} requests without 202")
    if pending_at_end > max(5, rate):
        reasons.append(f"{pending_at_end} requests pending at ingest when the clock stopped")
    if slope > max(0.2, 0.02 * rate):
        reasons.append(f"lag growing {slope:.1f}/s over the second half")
    if end_lag > max(5, rate):
        reasons.append(f"lag {end_lag:g} at the end (> 1 s of traffic)")
    return {"kept_up": not reasons, "reasons": reasons, "lag_slope_per_s": round(slope, 2), "lag_at_end": end_lag,
            "lag_max": max((v for _, v in samples), default=0)}


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


# ---------------------------------------------------------------------------------- CPU from /proc
def stat_cpu_seconds(stat_line: str, clk_tck: int = CLK_TCK) -> float:
    """utime + stime of a /proc/<pid>/stat line. The command name (field 2) may hold spaces and
    parentheses, so the fields are counted from the last ')'."""
    fields = stat_line.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / clk_tck  # fields 14 and 15 of proc(5)


def cpu_seconds(pid: int) -> float | None:
    try:
        return stat_cpu_seconds(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, IndexError, ValueError):
        return None


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float | None]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def cpu_per_message(before: dict[str, float | None], after: dict[str, float | None], messages: int
                    ) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, b in before.items():
        a = after.get(name)
        out[name] = None if a is None or b is None or not messages else round((a - b) / messages, 6)
    return out


def machine_busy_seconds(text: str | None = None) -> float:
    """CPU seconds all cores spent busy since boot (the `cpu` line of /proc/stat, less idle and
    iowait). The machine is shared, so each step also reports what everyone else used."""
    if text is None:
        text = Path("/proc/stat").read_text()
    fields = [int(x) for x in text.split("\n", 1)[0].split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # user nice system idle iowait irq softirq steal
    return busy / CLK_TCK


def pid_listening_on(port: int) -> int | None:
    """The pid holding a listening TCP socket on `port` (ours only: other users' fds are hidden)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{cols[9]}]")
    if not inodes:
        return None
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                if os.readlink(fd.path) in inodes:
                    return int(entry.name)
        except OSError:
            continue
    return None


# ---------------------------------------------------------------------------------- traffic
class ChatTraffic:
    """~`body_bytes` chat webhooks; a share of them open a new session (so a new ticket), the
    rest continue a recent one. Callable as the client's `make(n)`; `answered` is its
    `on_answer`: a session is continued only once its first message got its 202, as a chat
    customer writes again after the first message went through. (Continuing it earlier lets
    the second message overtake the first on another connection, and then the ticket would
    not be opened by the message the latency run is timing.)"""

    def __init__(self, new_ticket_share: float = 0.6, body_bytes: int = 1000, seed: int = 7) -> None:
        import orjson

        self.dumps = orjson.dumps
        self.rng = random.Random(seed)
        self.share = new_ticket_share
        self.run = uuid.uuid4().hex[:6]  # ids differ between runs on a kept stack
        self.counter = itertools.count()
        self.sessions: deque[str] = deque(maxlen=2000)
        self.opening: dict[str, str] = {}  # opening message id → its session, until its 202
        self.openers: set[str] = set()
        self.record_openers = False
        empty = len(self._body("s-" + "0" * 12, "m-" + "0" * 16, ""))
        self.text = ("Where is my order? It has not arrived and tracking has not changed. " * 40)[
            :max(1, body_bytes - empty)]

    def _body(self, session: str, mid: str, text: str) -> bytes:
        return self.dumps({"session_id": session, "message_id": mid, "text": text,
                           "customer": {"name": "Reference Customer", "visitor_id": f"v-{session}"},
                           "sent_at": "2026-11-24T10:00:00Z"})

    def __call__(self, _n: int) -> tuple[str, bytes]:
        i = next(self.counter)
        mid = f"m-{self.run}-{i:09d}"
        if self.sessions and self.rng.random() >= self.share:
            session = self.sessions[self.rng.randrange(len(self.sessions))]
        else:
            session = f"s-{self.run}-{i:09d}"
            self.opening[mid] = session
            if self.record_openers:
                self.openers.add(mid)
        return mid, self._body(session, mid, self.text)

    def answered(self, key: str, status: int) -> None:
        session = self.opening.pop(key, None)
        if session is not None and status == 202:
            self.sessions.append(session)


# ---------------------------------------------------------------------------------- lag
class LagProbe:
    """Committed offsets of the four consumer groups against the topics' end offsets. A
    partition a group has never committed counts from 0 (the topics are new and the groups
    start at the earliest offset), so early lag is not hidden."""

    def __init__(self, bootstrap: str, partitions: int) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient

        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        self.tps = {g: [TopicPartition(t, p) for t in topics for p in range(partitions)]
                    for g, topics in GROUP_TOPICS.items()}

    async def start(self) -> None:
        await self.admin.start()
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def per_group(self) -> dict[str, int]:
        everything = sorted({tp for tps in self.tps.values() for tp in tps})
        ends, *committed = await asyncio.gather(
            self.consumer.end_offsets(everything),
            *(self.admin.list_consumer_group_offsets(g) for g in self.tps))
        out = {}
        for (group, tps), done in zip(self.tps.items(), committed):
            lag = 0
            for tp in tps:
                meta = done.get(tp)
                lag += max(0, ends[tp] - (meta.offset if meta is not None and meta.offset >= 0 else 0))
            out[group] = lag
        return out

    async def drain(self, timeout: float, below: int = 5) -> float | None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if sum((await self.per_group()).values()) <= below:
                return time.monotonic() - t0
            await asyncio.sleep(0.5)
        return None


# ---------------------------------------------------------------------------------- measuring
def _client(ingest_url: str, traffic: ChatTraffic, record_keys: bool = False) -> OpenLoopClient:
    u = urlsplit(ingest_url)
    return OpenLoopClient(u.hostname or "127.0.0.1", u.port or 80, "/chat", traffic, record_keys=record_keys,
                          on_answer=traffic.answered)


def _http(res: LoadResult) -> dict[str, Any]:
    return {"sent": res.sent, "accepted": res.accepted, "statuses": {str(k): v for k, v in res.statuses.items()},
            "errors": dict(res.errors), "pending_at_end": res.pending_at_end, "connections": res.connections,
            "response_p50_ms": _ms(pct(res.response_s, 0.5)), "response_p99_ms": _ms(pct(res.response_s, 0.99))}


async def run_step(ingest_url: str, traffic: ChatTraffic, lag: LagProbe, pids: dict[str, int], rate: float,
                   duration: float, drain_s: float) -> dict[str, Any]:
    """One open-loop step, lag sampled every second; CPU from the step's start until its
    backlog drained, so all the work its messages caused is charged to them."""
    before = cpu_snapshot(pids)
    busy0 = machine_busy_seconds()
    t0 = time.monotonic()
    task = asyncio.create_task(_client(ingest_url, traffic).run(rate, duration))
    samples: list[tuple[float, float]] = []
    per_group: dict[str, int] = {}
    while not task.done():
        per_group = await lag.per_group()
        samples.append((time.monotonic() - t0, sum(per_group.values())))
        await asyncio.wait({task}, timeout=max(0.0, 1 - (time.monotonic() - t0) % 1))
    res = task.result()
    verdict = step_verdict(rate, duration, res.sent, res.accepted, res.pending_at_end, samples)
    drained = await lag.drain(drain_s)
    after = cpu_snapshot(pids)
    elapsed = time.monotonic() - t0
    ours = sum(after[k] - before[k] for k in pids if after[k] is not None and before[k] is not None)
    busy = machine_busy_seconds() - busy0
    return {"rate": rate, "seconds": round(elapsed, 1), **_http(res), **verdict,
            "machine_busy_cores": round(busy / elapsed, 2), "others_busy_cores": round(max(0.0, busy - ours) / elapsed, 2),
            "lag_at_end_per_group": per_group, "drained_after_s": None if drained is None else round(drained, 1),
            "cpu_s": {k: None if after[k] is None or before[k] is None else round(after[k] - before[k], 2)
                      for k in pids},
            "cpu_s_per_msg": cpu_per_message(before, after, res.accepted)}


async def latency_run(bootstrap: str, ingest_url: str, traffic: ChatTraffic, partitions: int, rate: float,
                      duration: float, wait_s: float = 120, pids: dict[str, int] | None = None) -> dict[str, Any]:
    """For every message that opened a ticket: wall time of its 202 → Kafka timestamp of the
    ticket's "assigned" record on B (set by the tickets process when it published it)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    import orjson

    tail = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await tail.start()
    tps = [TopicPartition(TOPIC_EVENTS, p) for p in range(partitions)]
    tail.assign(tps)
    await tail.seek_to_end(*tps)
    for tp in tps:
        await tail.position(tp)  # resolve now, so nothing published after this point is skipped
    assigned_at: dict[str, float] = {}  # opening message id → assigned record's timestamp
    stop = asyncio.Event()

    async def read() -> None:
        while not stop.is_set():
            for records in (await tail.getmany(timeout_ms=200)).values():
                for r in records:
                    if event_type(r) == ASSIGNED:  # the header first: most records are not
                        assigned_at.setdefault(orjson.loads(r.value)["opened_by"], r.timestamp / 1000)

    reader = asyncio.create_task(read())
    before, busy0, t_load = cpu_snapshot(pids or {}), machine_busy_seconds(), time.monotonic()
    traffic.openers.clear()
    traffic.record_openers = True
    try:
        res = await _client(ingest_url, traffic, record_keys=True).run(rate, duration)
    finally:
        traffic.record_openers = False
    wanted = [m for m in res.accepted_wall if m in traffic.openers]
    # the machine is shared: say how much of it the pipeline had while latency was measured
    after, busy, load_s = cpu_snapshot(pids or {}), machine_busy_seconds() - busy0, time.monotonic() - t_load
    ours = sum(after[k] - before[k] for k in before if after[k] is not None and before[k] is not None)
    t0 = time.monotonic()
    while time.monotonic() - t0 < wait_s and not all(m in assigned_at for m in wanted):
        await asyncio.sleep(0.5)
    stop.set()
    await reader
    await tail.stop()
    lat = [assigned_at[m] - res.accepted_wall[m] for m in wanted if m in assigned_at]
    return {"rate_msgs_per_s": rate, "seconds": duration, **_http(res), "tickets_opened": len(wanted),
            "assigned_measured": len(lat), "waited_after_load_s": round(time.monotonic() - t0, 1),
            "machine_busy_cores": round(busy / load_s, 2),
            "others_busy_cores": round(max(0.0, busy - ours) / load_s, 2) if pids else None,
            "p50": _ms(pct(lat, 0.5)), "p90": _ms(pct(lat, 0.9)), "p99": _ms(pct(lat, 0.99)),
            "p999": _ms(pct(lat, 0.999)), "max": _ms(max(lat) if lat else None)}


async def measure(bootstrap: str, ingest_url: str, *, rates: list[float], step_s: float, partitions: int = 6,
                  pids: dict[str, int] | None = None, warmup_s: float = 15, warmup_rate: float = 250,
                  drain_s: float = 30,
                  latency_s: float = 30, latency_cap: float = 1000, new_ticket_share: float = 0.6,
                  body_bytes: int = 1000, mongodb_url: str | None = None, yardstick_docs: int = 30_000,
                  busy_retries: int = 2, busy_threshold: float = 0.25,
                  log: Callable[[str], None] = say) -> dict[str, Any]:
    """Step the load up through `rates` against a running reference pipeline (ingest at
    `ingest_url`, consumer groups on `bootstrap`), then measure latency and, when
    `mongodb_url` is given, the insert_many yardstick. `pids` (name → pid) are the processes
    whose CPU is charged per message; this process is added as "loadgen". A step that falls
    behind while processes not in `pids` used more than `busy_threshold` cores is run again,
    up to `busy_retries` times."""
    pids = {**(pids or {}), "loadgen": os.getpid()}
    traffic = ChatTraffic(new_ticket_share, body_bytes)
    lag = LagProbe(bootstrap, partitions)
    await lag.start()
    steps: list[dict[str, Any]] = []
    sustained = 0.0
    try:
        if warmup_s:
            # a freshly started JVM compiles its hot paths for the first tens of seconds (Kafka's idle
            # CPU fell from ~45 % to ~13 % of a core over the first minute): not the first step's cost
            log(f"warm-up: {warmup_s:g} s at {warmup_rate:g} msg/s")
            await _client(ingest_url, traffic).run(warmup_rate, warmup_s)
            await lag.drain(60)
        for rate in rates:
            for attempt in range(1 + max(0, busy_retries)):
                log(f"step: {rate:g} msg/s for {step_s:g} s" + (f" (again: attempt {attempt + 1})" if attempt else ""))
                s = await run_step(ingest_url, traffic, lag, pids, rate, step_s, drain_s)
                s["attempt"] = attempt + 1
                steps.append(s)
                cpu = ", ".join(f"{k} {v * 1000:.2f}" for k, v in s["cpu_s_per_msg"].items() if v is not None)
                log(f"  202s {s['accepted']}/{s['sent']}, http p99 {s['response_p99_ms']} ms, pending at end "
                    f"{s['pending_at_end']}, lag max {s['lag_max']} end {s['lag_at_end']} {s['lag_at_end_per_group']}, "
                    f"slope {s['lag_slope_per_s']}/s → "
                    f"{'kept up' if s['kept_up'] else 'FELL BEHIND: ' + '; '.join(s['reasons'])}")
                log(f"  CPU ms per message: {cpu}; machine busy {s['machine_busy_cores']} cores, "
                    f"{s['others_busy_cores']} of them not ours")
                if not s["kept_up"] and s["drained_after_s"] is None:
                    log("  backlog left; waiting up to 180 s more")
                    await lag.drain(180)
                # the two cores are shared: a step lost while someone else took a real share of
                # them says little about the pipeline, so it is run again (each try is kept)
                if s["kept_up"] or s["others_busy_cores"] <= busy_threshold:
                    break
                log(f"  other processes took {s['others_busy_cores']} cores (> {busy_threshold:g}): "
                    "this step is run again" if attempt < busy_retries else "  no retries left")
            if not s["kept_up"]:
                break
            sustained = max(sustained, rate)
    finally:
        await lag.stop()
    lat_rate = min(latency_cap, sustained) if sustained else min(rates)
    log(f"latency: {lat_rate:g} msg/s for {latency_s:g} s (202 → assigned)")
    latency = await latency_run(bootstrap, ingest_url, traffic, partitions, lat_rate, latency_s, pids=pids)
    log(f"  p50 {latency['p50']} ms, p99 {latency['p99']} ms, p99.9 {latency['p999']} ms over "
        f"{latency['assigned_measured']}/{latency['tickets_opened']} tickets; machine busy "
        f"{latency['machine_busy_cores']} cores, {latency['others_busy_cores']} of them not ours")
    yardstick = None
    if mongodb_url and yardstick_docs:
        log(f"yardstick: insert_many of 100 × ~1 KB, {yardstick_docs} documents, into a collection of 20,000")
        yardstick = await asyncio.to_thread(mongo_insert_many_docs_per_s, mongodb_url, docs=yardstick_docs,
                                            ferretdb_pid=pids.get("ferretdb"))
        log(f"  {yardstick['docs_per_s']} docs/s, FerretDB {yardstick['ferretdb_cpu_ms_per_doc']} CPU ms per document")
    best = next((s for s in reversed(steps) if s["kept_up"] and s["rate"] == sustained), None)
    return {"reference_pipeline_msgs_per_s": sustained,
            "latency_ms": {k: latency[k] for k in ("rate_msgs_per_s", "p50", "p90", "p99", "p999", "max",
                                                   "others_busy_cores")},
            "cpu_s_per_msg_at_sustained": best["cpu_s_per_msg"] if best else None,
            "ferretdb_cpu_ms_per_msg_at_sustained": (round(best["cpu_s_per_msg"]["ferretdb"] * 1000, 3)
                                                     if best and best["cpu_s_per_msg"].get("ferretdb") is not None
                                                     else None),
            "yardstick_insert_many": yardstick, "steps": steps, "latency": latency,
            "load": {"new_ticket_share": new_ticket_share, "body_bytes": body_bytes, "warmup_s": warmup_s,
                     "busy_retries": busy_retries, "busy_threshold_cores": busy_threshold,
                     "warmup_rate": warmup_rate,
                     "step_s": step_s, "drain_s": drain_s, "latency_s": latency_s}}


# ---------------------------------------------------------------------------------- yardstick
def mongo_insert_many_docs_per_s(mongodb_url: str, *, docs: int = 30_000, prefill: int = 20_000,
                                 doc_bytes: int = 1000, batch: int = 100, ferretdb_pid: int | None = None,
                                 database: str = "reference_yardstick") -> dict[str, Any]:
    """insert_many of `batch` ~`doc_bytes` documents into a collection already holding
    `prefill`: documents a second and, when the server's process is found (given, or the one
    listening on the URL's port), its CPU ms per document. Drops its database afterwards."""
    from pymongo import MongoClient

    if ferretdb_pid is None:
        ferretdb_pid = pid_listening_on(urlsplit(mongodb_url).port or 27017)
    client = MongoClient(mongodb_url, appname="ref-yardstick")
    try:
        client.drop_database(database)
        coll = client[database]["docs"]
        pad = "x" * max(0, doc_bytes - 80)
        for start in range(0, prefill, batch):
            coll.insert_many([{"_id": f"p-{i:08d}", "n": i, "at": time.time(), "pad": pad}
                              for i in range(start, min(prefill, start + batch))], ordered=False)
        batches = [[{"_id": f"d-{i:08d}", "n": i, "at": 0.0, "pad": pad} for i in range(s, min(docs, s + batch))]
                   for s in range(0, docs, batch)]  # built before the clock starts
        cpu0 = cpu_seconds(ferretdb_pid) if ferretdb_pid else None
        t0 = time.perf_counter()
        for chunk in batches:
            coll.insert_many(chunk, ordered=False)
        elapsed = time.perf_counter() - t0
        cpu1 = cpu_seconds(ferretdb_pid) if ferretdb_pid else None
        in_collection = coll.estimated_document_count()
    finally:
        client.drop_database(database)
        client.close()
    return {"docs_per_s": round(docs / elapsed), "docs": docs, "batch": batch, "doc_bytes": doc_bytes,
            "prefilled": prefill, "in_collection_after": in_collection, "seconds": round(elapsed, 2),
            "ferretdb_pid": ferretdb_pid,
            "ferretdb_cpu_ms_per_doc": None if cpu0 is None or cpu1 is None else round((cpu1 - cpu0) * 1000 / docs, 3)}


# ---------------------------------------------------------------------------------- the processes
class Pipeline:
    """The five role processes, started here and stopped by their own pids."""

    def __init__(self, shape: Shape, bootstrap: str, mongodb_url: str, state: Path, ingest_port: int) -> None:
        self.shape, self.bootstrap, self.mongodb_url = shape, bootstrap, mongodb_url
        self.run_dir = state / "run" / "reference"
        self.log_dir = state / "log"
        self.ingest_port = ingest_port
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, timeout: float = 90) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for f in self.run_dir.glob("*"):
            f.unlink()
        for role in ROLES:
            cmd = [sys.executable, "-m", "bench.reference", role, "--bootstrap", self.bootstrap,
                   "--mongodb-url", self.mongodb_url, "--run-dir", str(self.run_dir),
                   "--ingest-port", str(self.ingest_port), "--parent-pid", str(os.getpid()), *self.shape.to_argv()]
            with open(self.log_dir / f"ref-{role}.log", "ab") as log:
                self.procs[role] = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                                    stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = {r: p.returncode for r, p in self.procs.items() if p.poll() is not None}
            if dead:
                raise RuntimeError(f"reference processes exited at start: {dead}; logs in {self.log_dir}\n"
                                   + self.tail(next(iter(dead))))
            if all((self.run_dir / f"{r}.ready").exists() for r in ROLES):
                return
            time.sleep(0.2)
        missing = [r for r in ROLES if not (self.run_dir / f"{r}.ready").exists()]
        raise RuntimeError(f"not ready after {timeout:g} s: {missing}; logs in {self.log_dir}")

    def tail(self, role: str, lines: int = 20) -> str:
        try:
            return "\n".join((self.log_dir / f"ref-{role}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def pids(self) -> dict[str, int]:
        return {r: p.pid for r, p in self.procs.items()}

    def died(self) -> dict[str, int]:
        return {r: p.returncode for r, p in self.procs.items() if p.poll() is not None}

    def stop(self, timeout: float = 20) -> dict[str, Any]:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + timeout
        for role, p in self.procs.items():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        stats = {}
        for role in self.procs:
            try:
                stats[role] = json.loads((self.run_dir / f"{role}.stats.json").read_text())
            except (OSError, ValueError):
                stats[role] = None
        return stats


def infra_pids(ctl: Any, state: Path) -> dict[str, int]:
    paths = ctl.StatePaths.of(state)
    out = {}
    for name in ("ferretdb", "kafka"):
        try:
            out[name] = int(paths.pid(name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


async def create_topics(bootstrap: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for topic in (TOPIC_INGEST, TOPIC_EVENTS, TOPIC_COMMANDS):
            try:
                await admin.create_topics([NewTopic(topic, partitions, 1)])
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


# ---------------------------------------------------------------------------------- report
def per_message_counts(stats: dict[str, Any]) -> dict[str, Any]:
    accepted = (stats.get("ingest") or {}).get("accepted") or 0
    out: dict[str, Any] = {"accepted_messages": accepted}
    for role in ROLES[1:]:
        s = stats.get(role) or {}
        if accepted:
            out[role] = {"records_in": round(s.get("records_in", 0) / accepted, 2),
                         "docs": round(s.get("docs", 0) / accepted, 2),
                         "insert_calls": round(s.get("insert_calls", 0) / accepted, 3),
                         "records_out": round(s.get("records_out", 0) / accepted, 2),
                         "mean_batch": round(s.get("records_in", 0) / max(1, s.get("batches", 0)), 1),
                         "ms_per_batch": {k: round(s.get(f"{k}_s", 0) * 1000 / max(1, s.get("batches", 0)), 2)
                                          for k in ("insert", "publish", "commit", "batch")}}
    return out


COLUMNS = ("ingest", "tickets", "routing", "sla", "analytics", "ferretdb", "kafka", "loadgen")


def report(out: dict[str, Any]) -> str:
    lines = ["", "reference pipeline (five bare processes, same shape as deskstream, real Kafka and FerretDB)",
             "", f"{'rate':>6} {'202s':>13} {'pend':>5} {'http p99':>9} {'lag max':>8} {'lag end':>8} "
             f"{'slope/s':>8}  {'':<11} {'busy/others':>12}  CPU ms per message: " + " ".join(f"{c:>9}" for c in COLUMNS)]
    for s in out["steps"]:
        cpu = " ".join(f"{(s['cpu_s_per_msg'].get(c) or 0) * 1000:>9.3f}" for c in COLUMNS)
        lines.append(f"{s['rate']:>6g}{'*' if s.get('attempt', 1) > 1 else ' '}{s['accepted']:>5}/{s['sent']:<6} {s['pending_at_end']:>5} "
                     f"{s['response_p99_ms'] or 0:>7.1f}ms {s['lag_max']:>8} {s['lag_at_end']:>8} "
                     f"{s['lag_slope_per_s']:>8.1f}  {'kept up' if s['kept_up'] else 'fell behind':<11} "
                     f"{s['machine_busy_cores']:>6.2f}/{s['others_busy_cores']:<5.2f}  {'':<20}{cpu}")
    lat = out["latency_ms"]
    failed = out["steps"][-1] if out["steps"] and not out["steps"][-1]["kept_up"] else None
    if failed and failed.get("others_busy_cores", 0) > 0.25:
        lines.append(f"  note: other processes on this machine used {failed['others_busy_cores']} cores during the "
                     f"{failed['rate']:g} msg/s step that fell behind; the ceiling may be understated: run again")
    lines += ["", f"  reference_pipeline_msgs_per_s   {out['reference_pipeline_msgs_per_s']:g}",
              (f"  202 → assigned at {lat['rate_msgs_per_s']:g} msg/s   p50 {lat['p50']} ms, p99 {lat['p99']} ms, "
               f"p99.9 {lat['p999']} ms (other processes took {lat.get('others_busy_cores')} cores meanwhile)")]
    best = out.get("cpu_s_per_msg_at_sustained")
    if best:
        rate = out["reference_pipeline_msgs_per_s"]
        total = sum(v for k, v in best.items() if v is not None and k != "loadgen")
        lines.append("  CPU ms per message at that rate " + ", ".join(
            f"{k} {v * 1000:.3f}" for k, v in best.items() if v is not None)
            + f"; pipeline (all but loadgen) {total * 1000:.2f} ms = {total * rate:.2f} cores")
    y = out.get("yardstick_insert_many")
    if y:
        lines.append(f"  yardstick insert_many ×100 ~1 KB into 20,000: {y['docs_per_s']:,} docs/s, "
                     f"FerretDB {y['ferretdb_cpu_ms_per_doc']} CPU ms per document")
    counts = out.get("per_message")
    if counts and counts.get("accepted_messages"):
        lines.append("  per accepted message (whole run): " + "; ".join(
            f"{r} {c['docs']} docs / {c['records_out']} records out / {c['records_in']} in (mean batch {c['mean_batch']})"
            for r, c in counts.items() if isinstance(c, dict)))
        lines.append("  ms per batch (insert / publish / commit / whole batch): " + "; ".join(
            f"{r} {c['ms_per_batch']['insert']} / {c['ms_per_batch']['publish']} / {c['ms_per_batch']['commit']} / "
            f"{c['ms_per_batch']['batch']}" for r, c in counts.items() if isinstance(c, dict)))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.reference", description=__doc__.split("\n\n")[0],
        epilog="Roles (started by the run itself): python -m bench.reference {" + ",".join(ROLES) + "} --help",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    run = p.add_argument_group("run")
    run.add_argument("--quick", action="store_true", help=f"rates {QUICK_RATES}, 12 s steps, 15 s latency run")
    run.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=None,
                     help=f"comma-separated step rates in msg/s (default {','.join(map(str, DEFAULT_RATES))})")
    run.add_argument("--step", type=float, default=None, help="seconds per step (default 25)")
    run.add_argument("--warmup", type=float, default=15, help="seconds of unmeasured load before the first step")
    run.add_argument("--warmup-rate", type=float, default=250, help="the warm-up's rate in msg/s")
    run.add_argument("--drain", type=float, default=30, help="seconds to wait for the backlog after each step")
    run.add_argument("--latency", type=float, default=None, help="seconds of the latency run (default 30)")
    run.add_argument("--busy-retries", type=int, default=2,
                     help="run a step that fell behind again (up to this many times) when other processes "
                          "used more than --busy-threshold cores during it")
    run.add_argument("--busy-threshold", type=float, default=0.25, help="cores (default 0.25)")
    run.add_argument("--latency-cap", type=float, default=1000, help="the latency run's rate: min(this, sustained)")
    run.add_argument("--new-ticket-share", type=float, default=0.6,
                     help="share of messages that open a new chat session (the rest continue one)")
    run.add_argument("--body-bytes", type=int, default=1000, help="size of each POST /chat body")
    run.add_argument("--yardstick-docs", type=int, default=30_000, help="insert_many yardstick size (0: skip)")
    run.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
    run.add_argument("--kafka-port", type=int, default=26092)
    run.add_argument("--controller-port", type=int, default=26093)
    run.add_argument("--mongo-port", type=int, default=26017)
    run.add_argument("--ingest-port", type=int, default=26001)
    run.add_argument("--keep-stack", action="store_true", help="leave Kafka and FerretDB running and the state dir")
    run.add_argument("--out", type=Path, default=ROOT / "bench" / "results-reference.json")
    Shape.add_args(p)
    return p


def run_against(bootstrap: str, mongodb_url: str, *, state: Path, infra: dict[str, int], rates: list[float],
                step_s: float, latency_s: float = 30, ingest_port: int = 26001, log: Callable[[str], None] = say,
                **options: Any) -> dict[str, Any]:
    """The reference pipeline on a broker and database someone else started (`make bench`'s), with its
    default shape; `infra` names their pids (kafka, ferretdb) for the CPU per message."""
    shape = Shape.from_args(build_parser().parse_args([]))
    run_async(create_topics(bootstrap, shape.partitions))
    pipeline = Pipeline(shape, bootstrap, mongodb_url, state, ingest_port)
    log("starting the five reference processes")
    pipeline.start()
    try:
        out = run_async(measure(bootstrap, f"http://127.0.0.1:{ingest_port}", rates=rates, step_s=step_s,
                                partitions=shape.partitions, pids={**pipeline.pids(), **infra}, latency_s=latency_s,
                                mongodb_url=None, log=log, **options))
        out["died_during_run"] = pipeline.died()
    finally:
        stats = pipeline.stop()
    out["per_message"] = per_message_counts(stats)
    out["shape"] = dataclasses.asdict(shape)
    return out


def run_cli(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    shape = Shape.from_args(args)
    args.rates = args.rates or (QUICK_RATES if args.quick else DEFAULT_RATES)
    args.step = args.step or (12 if args.quick else 25)
    args.latency = args.latency or (15 if args.quick else 30)
    from deploy.local import stack as ctl

    for name in ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URL"):
        os.environ.pop(name, None)  # a stack of our own, never someone else's servers
    state = args.state_dir.resolve()
    t0 = time.monotonic()
    say(f"starting Kafka :{args.kafka_port} and FerretDB :{args.mongo_port} in {state}")
    ctl.clean(state_dir=state, quiet=True)
    pipeline: Pipeline | None = None
    stats: dict[str, Any] = {}
    try:
        infra = ctl.infra_up(state_dir=state, kafka_port=args.kafka_port, controller_port=args.controller_port,
                             mongo_port=args.mongo_port, quiet=True)
        run_async(create_topics(infra.kafka_bootstrap, shape.partitions))
        pipeline = Pipeline(shape, infra.kafka_bootstrap, infra.mongodb_url, state, args.ingest_port)
        say("starting the five reference processes")
        pipeline.start()
        pids = {**pipeline.pids(), **infra_pids(ctl, state)}
        say("pids: " + ", ".join(f"{k} {v}" for k, v in pids.items()))
        out = run_async(measure(
            infra.kafka_bootstrap, f"http://127.0.0.1:{args.ingest_port}", rates=args.rates, step_s=args.step,
            partitions=shape.partitions, pids=pids, warmup_s=args.warmup, warmup_rate=args.warmup_rate,
            drain_s=args.drain,
            latency_s=args.latency, latency_cap=args.latency_cap, new_ticket_share=args.new_ticket_share,
            busy_retries=args.busy_retries, busy_threshold=args.busy_threshold,
            body_bytes=args.body_bytes, mongodb_url=infra.mongodb_url, yardstick_docs=args.yardstick_docs))
        out["died_during_run"] = pipeline.died()
    finally:
        if pipeline is not None:
            stats = pipeline.stop()
            for role, proc in pipeline.procs.items():
                if proc.returncode:  # crashed, or did not stop when asked: show why before the logs go
                    print(f"--- {role} exited {proc.returncode}; last lines of its log:\n{pipeline.tail(role)}")
        if not args.keep_stack:
            ctl.clean(state_dir=state, quiet=True)
    out["per_message"] = per_message_counts(stats)
    out["process_stats"] = stats
    out["shape"] = dataclasses.asdict(shape)
    out["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                      "loadavg_at_end": os.getloadavg()}
    out["command"] = "python -m bench.reference " + " ".join(argv)
    out["total_seconds"] = round(time.monotonic() - t0)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(report(out))
    if out["died_during_run"]:
        print(f"\nWARNING: processes exited during the run: {out['died_during_run']}")
    print(f"\nwritten to {args.out} in {out['total_seconds'] // 60} min {out['total_seconds'] % 60} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ROLES:
        return run_role(argv[0], argv[1:])
    return run_cli(argv)


if __name__ == "__main__":
    sys.exit(main())
