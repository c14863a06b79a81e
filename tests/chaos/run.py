"""The fault suite (`make chaos`): under continuous multichannel load, kill each service in
turn and all at once, restart the broker and the database — then prove nothing was lost,
doubled or broken.

Runs its own stack (Kafka, FerretDB, the five services) in `.state/chaos` on ports of its
own, so it can run beside `make run` and the test stack. Prints a table — fault, messages
sent, accepted, lost, duplicated, seconds until a new message is filed and assigned again (probed
while the restart runs, as a customer would) and until every killed process is healthy — and
writes it with every invariant checked to `reports/chaos.json`. Exits 1 when any invariant fails.

Invariants, checked after the load has stopped and the system has caught up:
- every message accepted with 202 is in exactly one ticket, exactly once;
- no ticket was assigned twice, and no agent carries more tickets than its capacity;
- every ticket's first-response breach (no agent answers during the run) was announced
  exactly once, and no SLA event was doubled;
- analytics counts exactly the tickets `tickets.events` announced;
- nothing went to `deadletter` (the load is all good input)."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from deploy.local import stack as stackctl  # noqa: E402
from shared.credentials import ChatTokens  # noqa: E402
from shared.kafka import partition_of  # noqa: E402

STATE = ROOT / ".state" / "chaos"
PORTS = {"kafka_port": 21092, "controller_port": 21093, "mongo_port": 21017}
OFFSET = 13000  # services on 21001..21005 (below the ephemeral port range)
SERVICES = ("ingest", "tickets", "routing", "sla", "analytics")
FAULTS = (*SERVICES, "all services", "kafka", "ferretdb")
TOKEN = "chaos-" + uuid.uuid4().hex
CHAT_SECRET = "chaos-chat-" + uuid.uuid4().hex  # so the load can sign its sessions' later messages
FIRST_RESPONSE_S = 4
AGENTS = {f"chaos-agent-{i}": 1000 for i in range(20)}  # room for every ticket a run opens: none waits
PARTITIONS = 6  # of every topic (the local broker's num.partitions)
INSTANCES = 2  # of every service: a fault kills one, and the other takes its partitions over


@dataclass
class Phase:
    fault: str
    sent: int = 0
    accepted: int = 0
    refused: int = 0  # 503 / connection refused while something was down: the sender retries
    lost: int = 0
    duplicated: int = 0
    recover_s: float | None = None  # restart begun → a new message filed and assigned (probed meanwhile)
    restarted_s: float | None = None  # restart begun → every killed process answers /healthz again
    accepting_s: float | None = None  # restart begun → ingest answered 202 to every probe message
    message_ids: list[str] = field(default_factory=list)


class Load:
    """An open-loop sender of realistic customer traffic over five channels."""

    def __init__(self, ingest_url: str, rate: float) -> None:
        self.url = ingest_url
        self.rate = rate
        self.phase: Phase | None = None
        self.sessions: list[str] = []
        self.chat_tokens = ChatTokens(CHAT_SECRET.encode())
        self.mail_threads: list[tuple[str, str]] = []  # (address, first Message-ID)
        self.phones = [f"+9665{n:08d}" for n in random.sample(range(10**7, 10**8), 40)]
        self.rng = random.Random(7)
        self.running = False

    def _request(self) -> tuple[str, dict[str, Any]]:
        kind = self.rng.choices(["chat", "email", "sms", "whatsapp", "webform"], [35, 30, 15, 10, 10])[0]
        n = uuid.uuid4().hex[:10]
        if kind == "chat":
            token = None
            if self.sessions and self.rng.random() < 0.4:  # a later message: with the session's token
                session = self.rng.choice(self.sessions)
                token = self.chat_tokens.issue(session, f"v-{session}")
            else:
                session = f"cs-{n}"
                self.sessions.append(session)
            return "/v1/inbound/chat", {"json": {
                "session_id": session, "message_id": f"cm-{n}", "text": f"Where is order {n}? " + "details " * 20,
                "customer": {"name": "Chaos Customer", "visitor_id": f"v-{session}"},
                "sent_at": "2026-11-24T10:00:00Z", **({"chat_token": token} if token else {})}}
        if kind == "email":
            mail = EmailMessage()
            if self.mail_threads and self.rng.random() < 0.3:
                address, first = self.rng.choice(self.mail_threads)
                mail["In-Reply-To"] = mail["References"] = f"<{first}>"
                mail["Subject"] = "Re: Damaged item"
            else:
                address, first = f"chaos-{n}@example.com", f"{n}@mail.example.com"
                self.mail_threads.append((address, first))
                mail["Subject"] = "Damaged item"
            mail["From"], mail["To"] = address, "help@shop.example"
            mail["Message-ID"] = f"<{n}@mail.example.com>" if mail["In-Reply-To"] else f"<{first}>"
            mail.set_content("The box arrived crushed and the vase is broken. " * 15)
            return "/v1/inbound/email", {"content": mail.as_bytes(), "headers": {"content-type": "message/rfc822"}}
        if kind == "sms":
            return "/v1/inbound/sms", {"data": {
                "MessageSid": f"SM{uuid.uuid4().hex}", "From": self.rng.choice(self.phones), "To": "+15005550006",
                "Body": f"Refund for order {n} please", "NumMedia": "0"}}
        if kind == "whatsapp":
            wa = self.rng.choice(self.phones).lstrip("+")
            return "/v1/inbound/whatsapp", {"json": {"object": "whatsapp_business_account", "entry": [{
                "id": "WABA", "changes": [{"field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550783881", "phone_number_id": "1065"},
                    "contacts": [{"profile": {"name": "Chaos"}, "wa_id": wa}],
                    "messages": [{"from": wa, "id": f"wamid.{n}", "timestamp": str(int(time.time())),
                                  "type": "text", "text": {"body": f"Status of {n}?"}}]}}]}]}}
        return "/v1/inbound/webform", {"json": {
            "name": "Chaos Customer", "email": f"form-{n}@example.com", "subject": "Question",
            "message": f"Do you ship to {n}?"}}

    async def run(self) -> None:
        self.running = True
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            pending: set[asyncio.Task[None]] = set()
            interval = 1 / self.rate
            next_at = time.monotonic()
            while self.running:
                path, kwargs = self._request()
                task = asyncio.create_task(self._send(client, path, kwargs, self.phase))
                pending.add(task)
                task.add_done_callback(pending.discard)
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await asyncio.gather(*pending, return_exceptions=True)

    async def _send(self, client: httpx.AsyncClient, path: str, kwargs: dict[str, Any], phase: Phase) -> None:
        phase.sent += 1
        try:
            r = await client.post(path, **kwargs)
        except httpx.HTTPError:
            phase.refused += 1
            return
        if r.status_code == 202:
            phase.accepted += 1
            phase.message_ids.append(r.json()["message_id"])
        else:
            phase.refused += 1


async def online_agents(routing_url: str, token: str, capacities: dict[str, int]) -> None:
    """Generalists for every channel, online, with the given capacities."""
    async with httpx.AsyncClient(base_url=routing_url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=10) as routing:
        for agent, capacity in capacities.items():
            r = await routing.put(f"/v1/agents/{agent}", json={
                "name": agent, "skills": ["general"], "languages": ["en", "ar"],
                "channels": ["chat", "email", "sms", "whatsapp", "webform", "social", "voice"],
                "capacity": capacity})
            r.raise_for_status()
            (await routing.put(f"/v1/agents/{agent}/presence", json={"status": "online"})).raise_for_status()


async def until(check, timeout: float, interval: float = 0.5) -> float | None:
    """Seconds until `check()` holds, or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if await check():
                return time.monotonic() - t0
        except (httpx.HTTPError, OSError):
            pass
        await asyncio.sleep(interval)
    return None


class Chaos:
    def __init__(self, rate: float, steady_s: float, faults: tuple[str, ...] = ()) -> None:
        self.ctl = stackctl
        self.rate = rate
        self.steady_s = steady_s
        self.faults = faults or FAULTS
        self.urls: dict[str, str] = {}
        self.kafka = ""
        self.auth = {"Authorization": f"Bearer {TOKEN}"}
        self.restarted_at = 0.0  # when the last `restart_missing` saw every process healthy
        self.accepting_at: float | None = None  # when ingest first answered 202 to a whole probe after a restart

    def start(self) -> None:
        os.environ.update({"DESKSTREAM_API_TOKEN": TOKEN, "DESKSTREAM_CHAT_SECRET": CHAT_SECRET,
                           "MONGODB_DATABASE": "chaos",
                           "SLA_DEFAULT_FIRST_RESPONSE_S": str(FIRST_RESPONSE_S), "SLA_DEFAULT_WARN_BEFORE_S": "2",
                           "ROUTING_OFFLINE_GRACE_S": "600"})
        for name in ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URL", "SMTP_URL"):
            os.environ.pop(name, None)
        self.ctl.clean(state_dir=STATE, quiet=True)
        stack = self.ctl.up(state_dir=STATE, port_offset=OFFSET, instances=INSTANCES, quiet=True, **PORTS)
        self.urls, self.kafka = stack.service_urls, stack.kafka_bootstrap

    def restart_missing(self) -> None:
        self.ctl.up(state_dir=STATE, port_offset=OFFSET, instances=INSTANCES, quiet=True, **PORTS)
        self.restarted_at = time.monotonic()

    async def agents(self) -> None:
        await online_agents(self.urls["routing"], TOKEN, AGENTS)

    async def probe(self) -> bool:
        """A fresh chat message on every partition is filed and assigned: the whole pipeline works again,
        whichever process owns which partitions (one probe could land on the surviving process's)."""
        sessions: dict[int, str] = {}
        while len(sessions) < PARTITIONS:
            n = uuid.uuid4().hex[:10]
            sessions.setdefault(partition_of(f"chat:probe-{n}", PARTITIONS), n)  # ingest keys by conversation
        async with httpx.AsyncClient(timeout=5) as c:
            message_ids = []
            for n in sessions.values():
                r = await c.post(f"{self.urls['ingest']}/v1/inbound/chat", json={
                    "session_id": f"probe-{n}", "message_id": f"p-{n}", "text": "probe",
                    "customer": {"name": "Probe", "visitor_id": f"probe-{n}"}, "sent_at": "2026-11-24T10:00:00Z"})
                if r.status_code != 202:
                    return False
                message_ids.append(r.json()["message_id"])
            if self.accepting_at is None:
                self.accepting_at = time.monotonic()

            async def assigned(message_id: str) -> bool:
                f = await c.get(f"{self.urls['tickets']}/v1/messages/{message_id}", headers=self.auth)
                if f.status_code != 200:
                    return False
                t = await c.get(f"{self.urls['tickets']}/v1/tickets/{f.json()['ticket_id']}", headers=self.auth)
                return t.status_code == 200 and t.json().get("assignee") is not None

            async def all_assigned() -> bool:
                return all(await asyncio.gather(*(assigned(m) for m in message_ids)))
            return await until(all_assigned, 60) is not None

    async def fault(self, name: str) -> None:
        if name == "all services":
            for service in SERVICES:
                for n in range(1, INSTANCES + 1):
                    self.ctl.kill(self.ctl.instance_name(service, n), state_dir=STATE, quiet=True)
        else:  # one process: a service's first instance (its second carries on), the broker or the database
            self.ctl.kill(name, state_dir=STATE, quiet=True)

    async def run(self) -> dict[str, Any]:
        say(f"starting a stack of its own in {STATE.relative_to(ROOT)} …")
        self.start()
        await self.agents()
        say(f"load: {self.rate:g} msg/s over chat, email, SMS, WhatsApp and web forms")
        load = Load(self.urls["ingest"], self.rate)
        phases = [Phase("none (steady)")]
        load.phase = phases[0]
        sender = asyncio.create_task(load.run())
        await asyncio.sleep(self.steady_s)
        for fault in self.faults:
            phase = Phase(fault)
            phases.append(phase)
            load.phase = phase
            say(f"fault: SIGKILL {fault}")
            await self.fault(fault)
            await asyncio.sleep(3)  # the load keeps coming while it is down
            # like a supervisor, restart what is missing; meanwhile probe as a customer would: recovered is
            # when the pipeline files and assigns a new message again, by whichever processes are up
            t0 = time.monotonic()
            self.accepting_at = None
            restart = asyncio.create_task(asyncio.to_thread(self.restart_missing))
            healthy = await until(self.probe, 120, interval=0.1)
            phase.recover_s = None if healthy is None else round(time.monotonic() - t0, 1)
            await restart
            phase.restarted_s = round(self.restarted_at - t0, 1)
            phase.accepting_s = None if self.accepting_at is None else round(self.accepting_at - t0, 1)
            say(f"  a new message filed and assigned after {phase.recover_s} s (ingest accepted again after "
                f"{phase.accepting_s} s); every killed process healthy after {phase.restarted_s} s")
            await asyncio.sleep(self.steady_s)
        load.running = False
        await sender
        say("load stopped; checking every accepted message, assignment and SLA event …")
        return await self.verify(phases)

    # ------------------------------------------------------------------ the invariants
    async def verify(self, phases: list[Phase]) -> dict[str, Any]:
        accepted = [(p, m) for p in phases for m in p.message_ids]
        async with httpx.AsyncClient(base_url=self.urls["tickets"], headers=self.auth, timeout=30) as api:
            filed: dict[str, str] = {}
            gate = asyncio.Semaphore(16)

            async def look_up(m: str) -> None:
                async with gate:
                    r = await api.get(f"/v1/messages/{m}")
                    if r.status_code == 200:
                        filed[m] = r.json()["ticket_id"]

            async def all_filed() -> bool:
                await asyncio.gather(*(look_up(m) for _, m in accepted if m not in filed))
                return all(m in filed for _, m in accepted)
            caught_up = await until(all_filed, 180, interval=2)
            occurrences: Counter[str] = Counter()

            async def count(ticket_id: str) -> None:
                async with gate:
                    r = await api.get(f"/v1/tickets/{ticket_id}")
                    occurrences.update(m["message_id"] for m in r.json()["messages"])
            await asyncio.gather(*(count(t) for t in set(filed.values())))
        for phase, m in accepted:
            if occurrences[m] == 0:
                phase.lost += 1
            elif occurrences[m] > 1:
                phase.duplicated += 1

        await asyncio.sleep(FIRST_RESPONSE_S + 4)  # the last tickets' breaches come due
        assignments: dict[str, list[str]] = defaultdict(list)
        created: set[str] = set()

        async def all_assigned() -> bool:  # routing may still be working off a backlog the last fault left
            ticket_events = dedupe(await read_all(self.kafka, "tickets.events"))
            created.clear()
            created.update(e["subject"] for e in ticket_events if e["type"] == "deskstream.ticket.created")
            assignments.clear()
            for e in ticket_events:
                if e["type"] == "deskstream.ticket.assigned":
                    assignments[e["subject"]].append(e["data"]["agent_id"])
            return created <= set(assignments)
        await until(all_assigned, 60, interval=3)
        sla_events = dedupe(await read_all(self.kafka, "sla.events"))
        # the load is all good input: a fault must not make any of it, or what it causes, undeliverable
        dead_letters = [
            f"{e['data'].get('service')}: {e['data'].get('source_topic')}: {e['data'].get('reason')}"
            for e in dedupe(await read_all(self.kafka, "deadletter"))
        ]
        double_assigned = sorted(t for t, agents in assignments.items() if len(agents) > 1)
        load_per_agent = Counter(agents[-1] for agents in assignments.values())
        over_capacity = {a: n for a, n in load_per_agent.items() if n > AGENTS.get(a, 10**9)}
        async with httpx.AsyncClient(base_url=self.urls["routing"], headers=self.auth, timeout=10) as routing:
            agents = {a["id"]: a for a in (await routing.get("/v1/agents")).json()["items"]}
        over_capacity.update({a: v["load"] for a, v in agents.items() if v.get("load", 0) > v["capacity"]})
        unassigned = sorted(created - set(assignments))

        sla_keys = Counter((e["subject"], e["data"]["target"], e["data"].get("cycle", ""), e["type"]) for e in sla_events)
        sla_doubled = [list(k) for k, n in sla_keys.items() if n > 1]
        breached = {e["subject"] for e in sla_events if e["type"] == "deskstream.sla.breached"
                    and e["data"]["target"] == "first_response"}
        sla_missing = sorted(created - breached)

        async with httpx.AsyncClient(base_url=self.urls["analytics"], timeout=10) as analytics:
            async def counted() -> bool:
                return (await analytics.get("/v1/summary")).json()["tickets_total"] == len(created)
            await until(counted, 30)
            analytics_total = (await analytics.get("/v1/summary")).json()["tickets_total"]

        checks = {
            "all_accepted_filed": caught_up is not None,
            "lost": sum(p.lost for p in phases), "duplicated": sum(p.duplicated for p in phases),
            "tickets": len(created), "double_assigned": double_assigned, "unassigned": unassigned,
            "over_capacity": over_capacity, "load_per_agent": dict(load_per_agent),
            "sla_breaches_missing": sla_missing, "sla_events_doubled": sla_doubled,
            "analytics_tickets_total": analytics_total, "tickets_events_created": len(created),
            "dead_letters": dead_letters,
            "every_fault_recovered": all(p.recover_s is not None for p in phases[1:]),
        }
        checks["passed"] = (checks["all_accepted_filed"] and not checks["lost"] and not checks["duplicated"]
                            and not double_assigned and not unassigned and not over_capacity and not sla_missing
                            and not sla_doubled and analytics_total == len(created) and not dead_letters
                            and checks["every_fault_recovered"])
        return {"rate_msgs_per_s": self.rate, "steady_s": self.steady_s,
                "phases": [{k: v for k, v in asdict(p).items() if k != "message_ids"} for p in phases],
                "checks": checks}


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def dedupe(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consumers de-duplicate on the CloudEvents id; so do the checks."""
    seen: dict[str, dict[str, Any]] = {}
    for e in events:
        if isinstance(e, dict) and "id" in e:
            seen.setdefault(e["id"], e)
    return list(seen.values())


async def read_all(bootstrap: str, topic: str, partitions: int = 6) -> list[dict[str, Any]]:
    """Every record of `topic` up to its current end (no consumer group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        records: list[dict[str, Any]] = []
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            batch = await consumer.getmany(timeout_ms=1000)
            for part in batch.values():
                for r in part:
                    try:
                        records.append(json.loads(r.value))
                    except ValueError:
                        pass
        return records
    finally:
        await consumer.stop()


def table(report: dict[str, Any]) -> str:
    rows = [("fault", "sent", "accepted", "refused", "lost", "duplicated", "recovered in s", "restarted in s")]
    for p in report["phases"]:
        steady = p["fault"].startswith("none")
        rows.append((p["fault"], p["sent"], p["accepted"], p["refused"], p["lost"], p["duplicated"],
                     "-" if steady else (p["recover_s"] if p["recover_s"] is not None else "NO"),
                     "-" if steady else p.get("restarted_s")))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    c = report["checks"]
    lines += ["", f"tickets {c['tickets']}, analytics counted {c['analytics_tickets_total']}; "
                  f"double assignments {len(c['double_assigned'])}, unassigned {len(c['unassigned'])}, "
                  f"agents over capacity {len(c['over_capacity'])}; SLA breaches missing {len(c['sla_breaches_missing'])}, "
                  f"SLA events doubled {len(c['sla_events_doubled'])}",
              f"load per agent: {c['load_per_agent']}",
              f"dead letters {len(c['dead_letters'])}" + "".join(f"\n  {d[:300]}" for d in c["dead_letters"][:10]),
              *([f"unassigned: {c['unassigned'][:10]}"] if c["unassigned"] else []),
              "PASSED: nothing lost, nothing doubled" if c["passed"] else "FAILED: see reports/chaos.json"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="messages per second (default 100)")
    parser.add_argument("--steady", type=float, default=6.0, help="seconds of load between faults (default 6)")
    parser.add_argument("--keep", action="store_true", help="leave the chaos stack running afterwards")
    parser.add_argument("--faults", type=lambda v: tuple(f.strip() for f in v.split(",") if f.strip()), default=(),
                        help=f"comma-separated, in order (default all: {','.join(FAULTS)}); CI runs tickets,routing")
    args = parser.parse_args()
    if unknown := [f for f in args.faults if f not in FAULTS]:
        parser.error(f"unknown fault(s): {', '.join(unknown)}")
    chaos = Chaos(args.rate, args.steady, args.faults)
    try:
        report = asyncio.run(chaos.run())
    finally:
        if not args.keep:
            chaos.ctl.clean(state_dir=STATE, quiet=True)
    out = ROOT / "reports" / "chaos.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"\nwritten to {out.relative_to(ROOT)}")
    return 0 if report["checks"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
