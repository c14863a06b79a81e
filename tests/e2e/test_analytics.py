"""Analytics on the real stack, after the demo's traffic (deploy/demo.py, what `make run`
plays): the summary, the dashboard in Chromium and a replay of the topics into an empty store
all show the numbers counted here, independently, from `tickets.events` and `sla.events`.

Other tests share the stack and keep it busy (SLA timers, re-routing), so every comparison is
made at a quiet moment, checked rather than waited for: the topics' end offsets are read, every
record up to them is counted here, analytics' consumer group has committed them all, the summary
was computed after that, and the end offsets have not moved by the time the comparison's other
side (a replay, a page rendered in Chromium) is in hand."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime
from html.parser import HTMLParser
from typing import Any

import pymongo
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from deploy import demo
from tests.conftest import ROOT
from tests.e2e.helpers import poll

TOPICS = ("tickets.events", "sla.events")
ANALYTICS_GROUPS = "analytics-"  # every analytics instance reads everything and says how far, as `analytics-<n>`
BACKLOG = ("new", "open", "answered", "postponed")  # statuses in which a ticket is still owed work
NOT_REAL_REQUESTS = ("spam", "deleted", "purged")  # left out of recurring problems
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TICKET = "deskstream.ticket."
SLA = "deskstream.sla."


# ---------------------------------------------------------------- the topics, read here

async def read_topics(bootstrap: str, timeout: float = 20.0) -> tuple[dict[TopicPartition, int], list[dict]]:
    """Every record of the two topics up to their end offsets as they are now (the cut),
    read from the beginning with a plain consumer outside any group."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="deskstream-e2e-analytics")
    await admin.start()
    try:
        described = await admin.describe_topics(list(TOPICS))
    finally:
        await admin.close()
    partitions = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                client_id="deskstream-e2e-analytics")
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[dict] = []
        pending = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
        deadline = time.monotonic() + timeout
        while pending:
            assert time.monotonic() < deadline, "the topics could not be read to their end"
            for tp, batch in (await consumer.getmany(*pending, timeout_ms=500)).items():
                # in order within each partition, which is all Kafka orders
                records += [{**parse(r.value), "_topic": tp.topic, "_partition": tp.partition}
                            for r in batch if r.offset < ends[tp]]
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
        return ends, records
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="deskstream-e2e-analytics")
    await consumer.start()
    try:
        return await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


def parse(value: bytes | None) -> dict[str, Any]:
    try:
        body = json.loads(value or b"")
    except (ValueError, RecursionError):
        return {}
    return body if isinstance(body, dict) else {}


async def committed(bootstrap: str, prefix: str) -> dict[TopicPartition, int]:
    """How far every analytics instance has read: the least of their positions, per partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="deskstream-e2e-analytics")
    await admin.start()
    try:
        groups = [g[0] for g in await admin.list_consumer_groups() if g[0].startswith(prefix)]
        least: dict[TopicPartition, int] = {}
        for group in groups:
            for tp, meta in (await admin.list_consumer_group_offsets(group)).items():
                least[tp] = min(least.get(tp, meta.offset), meta.offset)
    finally:
        await admin.close()
    return least


# ---------------------------------------------------------------- counting, independently of analytics

@dataclasses.dataclass
class Counted:
    """What the records say, counted with nothing but the event contract (shared/events.py)."""

    tickets: dict[str, dict[str, Any]]  # id → channel, status, assignee, tags (as the last record leaves it)
    replied: dict[str, str]  # ticket → the agent who answered first
    resolved: Counter  # agent → resolutions of tickets they held
    reopened: Counter  # agent → tickets that came back to them after a resolution
    ever_resolved: set[str]
    handled: dict[str, set[str]]  # agent → tickets ever assigned to them
    sla: dict[str, Counter]  # target → warning / breached / met

    @property
    def by_channel(self) -> dict[str, int]:
        return dict(Counter(t["channel"] for t in self.tickets.values()))

    @property
    def by_status(self) -> dict[str, int]:
        return dict(Counter(t["status"] for t in self.tickets.values()))

    @property
    def backlog(self) -> dict[str, int]:
        return {s: self.by_status.get(s, 0) for s in BACKLOG}

    def agents(self) -> dict[str, dict[str, int]]:
        open_now = Counter(t["assignee"] for t in self.tickets.values() if t["status"] in BACKLOG and t["assignee"])
        first = Counter(self.replied.values())
        names = set(self.handled) | set(first) | set(self.resolved) | set(self.reopened) | set(open_now)
        return {a: {"handled": len(self.handled.get(a, ())), "open": open_now[a], "first_responses": first[a],
                    "resolved": self.resolved[a], "reopened": self.reopened[a]} for a in names if a}

    def top_tags(self) -> list[dict[str, Any]]:
        tags = Counter(tag for t in self.tickets.values() if t["status"] not in NOT_REAL_REQUESTS
                       for tag in dict.fromkeys(t["tags"]))
        return [{"tag": tag, "tickets": n} for tag, n in sorted(tags.items(), key=lambda kv: (-kv[1], kv[0]))[:10]]


def count(records: list[dict[str, Any]]) -> Counted:
    c = Counted({}, {}, Counter(), Counter(), set(), defaultdict(set), defaultdict(Counter))
    seen: set[str] = set()
    for r in records:
        kind, data = r.get("type", ""), r.get("data") or {}
        if not r.get("id") or r["id"] in seen:
            continue  # unreadable, or delivered twice (CloudEvents ids are unique)
        seen.add(r["id"])
        if kind == TICKET + "purged":
            c.tickets.setdefault(data["ticket_id"], {"tags": []}).update(status="purged", assignee=None, tags=[],
                                                                         version=2**62)
        elif kind.startswith(TICKET) and "ticket" in data:
            snap = data["ticket"]
            ticket = c.tickets.setdefault(snap["id"], {"version": -1})
            ticket["channel"] = snap["channel"]
            # the highest version is the ticket now; of records of one version the later one,
            # as a customer's message and the reopening it caused carry the same version
            if snap["version"] >= ticket["version"]:
                ticket.update(version=snap["version"], status=snap["status"], assignee=snap.get("assignee"),
                              tags=snap.get("tags") or [])
            if kind == TICKET + "replied":
                c.replied.setdefault(snap["id"], data["agent_id"])
            elif kind == TICKET + "assigned":
                c.handled[data["agent_id"]].add(snap["id"])
            elif kind in (TICKET + "status_changed", TICKET + "reopened") and data["to_status"] == "resolved":
                c.ever_resolved.add(snap["id"])
                if snap.get("assignee"):
                    c.resolved[snap["assignee"]] += 1
            elif kind == TICKET + "reopened" and snap.get("assignee"):
                c.reopened[snap["assignee"]] += 1
        elif kind.startswith(SLA):
            c.sla[data["target"]][kind.removeprefix(SLA)] += 1
    return c


# ---------------------------------------------------------------- a quiet moment

@dataclasses.dataclass
class Cut:
    ends: dict[TopicPartition, int]
    records: list[dict[str, Any]]
    summary: dict[str, Any]

    @property
    def counted(self) -> Counted:
        return count(self.records)


class Analytics:
    def __init__(self, stack) -> None:
        self.stack = stack

    def summary(self) -> dict[str, Any]:
        with self.stack.client("analytics", auth=False) as c:
            r = c.get("/v1/summary")
        assert r.status_code == 200, r.text
        return r.json()

    async def cut(self, timeout: float = 25.0) -> Cut:
        """Every record up to the topics' end offsets counted here, and a summary analytics
        computed after handling exactly those records."""
        bootstrap, deadline = self.stack.kafka_bootstrap, time.monotonic() + timeout
        while time.monotonic() < deadline:
            ends, records = await read_topics(bootstrap)
            caught_up = False
            while time.monotonic() < deadline:  # analytics has handled every record before the cut
                done = await committed(bootstrap, ANALYTICS_GROUPS)
                if caught_up := all(done.get(tp, 0) >= end for tp, end in ends.items()):
                    break
                await asyncio.sleep(0.2)
            asked, summary = time.time(), None
            while caught_up and time.monotonic() < deadline:  # and has recomputed its numbers since
                s = self.summary()
                if s["as_of"] and datetime.fromisoformat(s["as_of"]).timestamp() > asked:
                    summary = s
                    break
                await asyncio.sleep(0.2)
            if summary and await end_offsets(bootstrap, list(ends)) == ends:
                return Cut(ends, records, summary)
        pytest.fail(f"no quiet moment on the topics in {timeout:.0f} s")

    def at_a_quiet_moment(self, fn, attempts: int = 4) -> tuple[Cut, Any]:
        """`fn(cut)` for a cut the topics have not moved past by the time `fn` returned."""
        for _ in range(attempts):
            cut = asyncio.run(self.cut())
            result = fn(cut)
            if asyncio.run(end_offsets(self.stack.kafka_bootstrap, list(cut.ends))) == cut.ends:
                return cut, result
        pytest.fail(f"the topics kept moving during {attempts} attempts")


@pytest.fixture(scope="module")
def demo_tickets(stack, agent) -> dict[str, dict[str, Any]]:
    """The demo's morning of traffic, played through ingest on every channel."""
    client = demo.Client(urls=stack.urls, token=stack.token)
    tickets = demo.traffic(client, run=uuid.uuid4().hex[:8])
    unassigned = [t for t, row in tickets.items() if not row["assignee"]]
    assert not unassigned, f"the e2e agent has room for every ticket, yet {unassigned} waited"

    def unanswered_ones_breached() -> bool:  # their first-response target is 3 s on this stack
        _, records = asyncio.run(read_topics(stack.kafka_bootstrap))
        return waiting(tickets) <= {r["data"]["ticket_id"] for r in records if r.get("type") == SLA + "breached"}

    assert poll(unanswered_ones_breached, timeout=20, interval=1), "unanswered demo tickets never breached"
    return tickets


def waiting(tickets: dict[str, dict[str, Any]]) -> set[str]:
    return {t for t, row in tickets.items() if row["conversation"].outcome == "waiting"}


@pytest.fixture(scope="module")
def analytics(stack, demo_tickets) -> Analytics:
    a = Analytics(stack)
    cut, _ = a.at_a_quiet_moment(lambda cut: None)
    # topics left over from an earlier session cannot be compared with this session's store: the
    # ticket of each partition's first record is known to this session's tickets service (or purged)
    purged = {r["data"]["ticket_id"] for r in cut.records if r.get("type") == TICKET + "purged"}
    firsts: dict[int, str] = {}
    for r in cut.records:
        if r["_topic"] == "tickets.events" and "ticket" in (r.get("data") or {}):
            firsts.setdefault(r["_partition"], r["data"]["ticket"]["id"])
    with stack.client("tickets") as tickets:
        strangers = [t for t in set(firsts.values()) - purged if tickets.get(f"/v1/tickets/{t}").status_code == 404]
    if strangers:
        pytest.skip(f"the test stack's topics begin with tickets of an earlier session ({', '.join(strangers)}): "
                    "clean it first (deploy/local/stackctl.py clean --state-dir .state/test)")
    return a


# ---------------------------------------------------------------- the tests

def comparable(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary without what moves with the clock alone (ages, `as_of`, the windows' edges)."""
    out = json.loads(json.dumps(summary))
    for key in ("as_of", "window", "last_24h"):
        out.pop(key)
    out["backlog"].pop("by_age")
    out["backlog"].pop("oldest_age_s")
    return out


def test_the_summary_equals_what_the_topics_say_after_the_demo(analytics, demo_tickets):
    cut, _ = analytics.at_a_quiet_moment(lambda cut: None)
    c, s = cut.counted, cut.summary

    # the demo's traffic is in there: every channel, answers, resolutions, a reopening, breaches
    assert set(demo_tickets) <= set(c.tickets)
    assert {c.tickets[t]["channel"] for t in demo_tickets} == {
        "chat", "email", "sms", "whatsapp", "social", "webform", "voice"}
    played = {t: row["conversation"] for t, row in demo_tickets.items()}
    assert set(c.replied) & set(played) == {t for t, p in played.items() if p.reply and p.outcome != "waiting"}
    assert c.ever_resolved & set(played) == {t for t, p in played.items() if p.outcome in ("resolved", "reopened")}
    assert {t for t, p in played.items() if p.outcome == "reopened"} <= {
        t for t in played if c.tickets[t]["status"] == "open"}
    assert c.sla["first_response"]["breached"] >= len(waiting(demo_tickets)) > 0

    assert s["tickets_by_channel"] == c.by_channel and s["tickets_total"] == len(c.tickets)
    assert s["tickets_by_status"] == c.by_status
    assert s["backlog"]["by_status"] == c.backlog and s["backlog"]["total"] == sum(c.backlog.values())
    assert s["first_response"]["count"] == len(c.replied)
    assert s["resolution"]["count"] == len(c.ever_resolved)
    assert {a["agent_id"]: {k: a[k] for k in ("handled", "open", "first_responses", "resolved", "reopened")}
            for a in s["agents"]} == c.agents()
    assert s["sla"] == {target: dict(kinds) for target, kinds in c.sla.items()}
    assert s["top_tags"] == c.top_tags()


def test_replaying_the_topics_into_an_empty_store_gives_the_live_summary(analytics, stack):
    database = f"{stack.database}_replay_{uuid.uuid4().hex[:6]}"

    def replay(cut: Cut) -> dict[str, Any]:
        done = subprocess.run([sys.executable, "-m", "services.analytics.replay", "--database", database,
                               "--drop", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "MONGODB_DATABASE": database})
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)

    try:
        cut, replayed = analytics.at_a_quiet_moment(replay)
    finally:
        with pymongo.MongoClient(os.environ["MONGODB_URL"]) as client:
            client.drop_database(database)
    assert replayed["tickets_total"] == len(cut.counted.tickets) > 0
    assert comparable(replayed) == comparable(cut.summary)


@dataclasses.dataclass
class Node:
    tag: str
    attrs: dict[str, str | None]
    children: list[Node | str] = dataclasses.field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    def find(self, id_: str) -> Node | None:
        if self.attrs.get("id") == id_:
            return self
        return next((found for c in self.children if isinstance(c, Node) and (found := c.find(id_))), None)

    def cells(self, *classes: str) -> list[list[str]]:
        """The texts of each child row's cells: `td`s, or the children with one of `classes`."""
        return [[c.text for c in row.children if isinstance(c, Node)
                 and (c.tag == "td" or c.attrs.get("class") in classes)]
                for row in self.children if isinstance(row, Node)]


class Page(HTMLParser):
    """The page as Chromium left it (`--dump-dom`), as a tree."""

    VOID = {"meta", "link", "br", "img", "input", "hr", "source", "wbr", "area", "base", "col", "embed"}

    def __init__(self, html: str) -> None:
        super().__init__()
        self.root = Node("#document", {})
        self.open = [self.root]
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs))
        self.open[-1].children.append(node)
        if tag not in self.VOID:
            self.open.append(node)

    def handle_endtag(self, tag):
        if any(n.tag == tag for n in self.open[1:]):
            while self.open.pop().tag != tag:
                pass

    def handle_data(self, data):
        self.open[-1].children.append(data)

    def text(self, id_: str) -> str:
        node = self.root.find(id_)
        assert node is not None, f"no #{id_} on the page"
        return node.text

    def rows(self, id_: str) -> list[list[str]]:
        node = self.root.find(id_)
        assert node is not None, f"no #{id_} on the page"
        return node.cells("name", "value")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: chromium)")
def test_the_dashboard_shows_the_demos_numbers(analytics, stack):
    def render(cut: Cut) -> Page:
        with tempfile.TemporaryDirectory() as profile:
            done = subprocess.run(
                [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--virtual-time-budget=4000", "--dump-dom",
                 f"{stack.urls['analytics']}/dashboard"], capture_output=True, text=True, timeout=90)
        assert "<main" in done.stdout, done.stderr[-2000:]
        return Page(done.stdout)

    cut, page = analytics.at_a_quiet_moment(render)
    c = cut.counted
    assert page.text("status").startswith("live · numbers as of")
    assert page.text("kpi-total") == str(len(c.tickets)) == str(cut.summary["tickets_total"])
    assert page.text("kpi-24h") == str(cut.summary["last_24h"]["tickets_created"])
    assert page.text("kpi-backlog") == str(sum(c.backlog.values()))
    met, breached = (sum(kinds[k] for kinds in c.sla.values()) for k in ("met", "breached"))
    assert page.text("kpi-sla-hint") == f"{met} met · {breached} breached"
    assert {row[0]: [int(row[i]) for i in (1, 2, 3, 5, 6)] for row in page.rows("agent-rows")} == {
        agent: [n["open"], n["handled"], n["first_responses"], n["resolved"], n["reopened"]]
        for agent, n in c.agents().items()}
    assert [(tag, int(n)) for tag, n in page.rows("tags")] == [(t["tag"], t["tickets"]) for t in c.top_tags()]
    assert dict(page.rows("backlog-status")) == {s: str(n) for s, n in c.backlog.items()}
    # the volume chart's legend: tickets per channel over the last 24 hours (all of this session's)
    legend = [node.text for node in page.root.find("volume-legend").children if isinstance(node, Node)]
    assert sorted(legend) == sorted(f"{ch} ({n})" for ch, n in c.by_channel.items())
