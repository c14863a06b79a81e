"""A day of routing on the real stack: 10 agents of different skills, languages, channels and
capacities, and many tickets (500 in the full run) arriving on chat, email, SMS and web forms
in English, Arabic and Spanish, about orders, refunds, invoices and passwords.

It proves, from the assignment events on `tickets.events` and the agents' loads:
- every ticket goes to an agent who fits it (channel, language, skill at the level a rule asks);
- no agent ever carries more tickets than their capacity;
- load is balanced: no ticket went to an agent while another who fits it was less loaded
  relative to capacity (the spread of load/capacity over all agents is printed);
- tickets nobody can take now wait, and are assigned as tickets are resolved, until none wait.

The size is `ROUTING_SCENARIO_TICKETS` (default 60, which fits the CI budget on FerretDB;
the full scenario is `ROUTING_SCENARIO_TICKETS=500`)."""
from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
import uuid
from email.message import EmailMessage
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from shared import topics
from tests.e2e.helpers import poll

pytestmark = pytest.mark.e2e

TICKETS = int(os.environ.get("ROUTING_SCENARIO_TICKETS", "60"))

# name: (languages, channels, skills, capacity)
AGENTS: dict[str, tuple[list[str], list[str], list[str], int]] = {
    "sc-amira": (["ar", "en"], ["chat", "email"], ["refunds:4", "billing:2"], 6),
    "sc-bilal": (["ar"], ["chat", "sms"], ["tech:3"], 4),
    "sc-carmen": (["es", "en"], ["email", "webform"], ["billing:4", "refunds:2"], 5),
    "sc-diego": (["es"], ["chat", "sms", "webform"], ["tech:2", "refunds:3"], 4),
    "sc-emma": (["en"], ["chat", "webform"], [], 8),
    "sc-farid": (["ar", "en"], ["email", "sms", "webform"], ["billing:3", "tech:4"], 5),
    "sc-grace": (["en"], ["email", "sms"], ["refunds:2", "tech:5"], 3),
    "sc-hana": (["ar", "es"], ["chat", "email", "webform"], ["refunds:2", "billing:2", "tech:2"], 6),
    "sc-ivan": (["en", "es"], ["chat", "email", "sms", "webform"], [], 7),
    "sc-jamal": (["ar", "en", "es"], ["sms", "webform"], ["refunds:5", "billing:5", "tech:3"], 2),
}
CAPACITY = sum(a[3] for a in AGENTS.values())

# what a ticket is about → the skill (and minimum level) a rule asks for, and the words that say so
NEEDS = {"order": None, "refund": "refunds:2", "invoice": "billing:2", "password": "tech:2"}
RULE_WORDS = {"refund": ["refund", "استرداد", "reembolso"], "invoice": ["invoice", "فاتورة", "factura"],
              "password": ["password", "كلمة المرور", "contraseña"]}
TEXTS = {
    ("en", "order"): "Hello, where is my order {n}? Please check, thanks.",
    ("en", "refund"): "Hello, I want a refund for my order {n}, please.",
    ("en", "invoice"): "Please send me the invoice for my order {n}, thank you.",
    ("en", "password"): "I cannot reset my password and my account is locked, please help ({n}).",
    ("ar", "order"): "مرحبا، أين طلبي رقم {n}؟ شكرا",
    ("ar", "refund"): "السلام عليكم، أريد استرداد المبلغ للطلب رقم {n}",
    ("ar", "invoice"): "أرسلوا لي فاتورة الطلب رقم {n} من فضلكم",
    ("ar", "password"): "لا أستطيع تغيير كلمة المرور لحسابي {n}",
    ("es", "order"): "Hola, ¿dónde está mi pedido {n}? Gracias",
    ("es", "refund"): "Hola, quiero un reembolso de mi pedido {n}, gracias",
    ("es", "invoice"): "Hola, necesito la factura de mi pedido {n}, gracias",
    ("es", "password"): "Hola, no puedo cambiar mi contraseña, por favor ayuda {n}",
}


def parse(skill: str) -> tuple[str, int]:
    name, _, level = skill.partition(":")
    return name, int(level or 1)


def fits(agent: str, *, channel: str, language: str | None, need: str | None) -> bool:
    """Written here from the scenario's own table, not taken from the routing code."""
    languages, channels, skills, _ = AGENTS[agent]
    levels = dict(parse(s) for s in skills)
    if need:
        name, level = parse(need)
        if levels.get(name, 0) < level:
            return False
    return channel in channels and (language in (None, "und") or language in languages)


def plan(count: int, seed: int = 5) -> list[tuple[str, str, str]]:
    """(language, channel, subject) for each ticket, only combinations some agent can take."""
    combos = [(lang, ch, kind) for lang in ("en", "ar", "es") for ch in ("chat", "email", "sms", "webform")
              for kind in NEEDS if any(fits(a, channel=ch, language=lang, need=NEEDS[kind]) for a in AGENTS)]
    rng = random.Random(seed)
    return [combos[i % len(combos)] if i < len(combos) else rng.choice(combos) for i in range(count)]


class Tail:
    """Reads `tickets.events` in a thread from the end as it is now, keeping every record."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.stopping = False
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(topics.TICKETS_EVENTS, bootstrap_servers=self.bootstrap, group_id=None,
                                    auto_offset_reset="latest", enable_auto_commit=False)
        await consumer.start()
        try:
            while not consumer.assignment():
                await asyncio.sleep(0.05)
            for tp in consumer.assignment():
                await consumer.position(tp)  # pin "the end as it is now" before anything is sent
            self.ready.set()
            while not self.stopping:
                batch = await consumer.getmany(timeout_ms=200)
                with self.lock:
                    self.events.extend(json.loads(r.value) for part in batch.values() for r in part)
        finally:
            await consumer.stop()

    def __enter__(self) -> Tail:
        self.thread.start()
        assert self.ready.wait(30), "could not subscribe to tickets.events"
        return self

    def __exit__(self, *_: Any) -> None:
        self.stopping = True
        self.thread.join(10)

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.events)


def send(stack, ingest, language: str, channel: str, kind: str, n: int, run: str) -> str:
    """Post one customer message on its channel; returns the ingest message id."""
    text = TEXTS[(language, kind)].format(n=f"{run}-{n}")
    who = f"{run}-{n}"
    if channel == "chat":
        r = ingest.post("/v1/inbound/chat", json={
            "session_id": f"s-{who}", "message_id": f"m-{who}", "text": text, "sent_at": "2026-11-23T10:00:00Z",
            "customer": {"name": f"Customer {n}", "email": f"c-{who}@example.com", "visitor_id": f"v-{who}"}})
    elif channel == "email":
        mail = EmailMessage()
        mail["From"] = f"Customer {n} <c-{who}@example.com>"
        mail["To"] = "help@shop.example"
        mail["Subject"] = text[:40]
        mail["Message-ID"] = f"<{who}@mail.example.com>"
        mail["Date"] = "Mon, 23 Nov 2026 10:00:00 +0300"
        mail.set_content(text)
        r = ingest.post("/v1/inbound/email", content=mail.as_bytes(), headers={"content-type": "message/rfc822"})
    elif channel == "sms":
        r = ingest.post("/v1/inbound/sms", data={"MessageSid": f"SM{uuid.uuid4().hex}", "From": f"+96650{n:07d}",
                                                 "To": "+15005550006", "Body": text, "NumMedia": "0"})
    else:
        r = ingest.post("/v1/inbound/webform", json={"name": f"Customer {n}", "email": f"c-{who}@example.com",
                                                     "subject": text[:40], "message": text})
    assert r.status_code == 202, r.text
    return r.json()["message_id"]


def capacity_sweep(events: list[dict[str, Any]], ours: set[str]) -> dict[str, int]:
    """The most tickets each agent held at once, replaying assignments and resolutions in time order."""
    held: dict[str, set[str]] = {}
    peak: dict[str, int] = {}
    holder: dict[str, str] = {}
    for e in sorted(events, key=lambda e: e["time"]):
        tid = e["subject"]
        if tid not in ours:
            continue
        if e["type"] == "deskstream.ticket.assigned":
            if tid in holder:
                held[holder[tid]].discard(tid)
            holder[tid] = e["data"]["agent_id"]
            held.setdefault(holder[tid], set()).add(tid)
            peak[holder[tid]] = max(peak.get(holder[tid], 0), len(held[holder[tid]]))
        elif e["type"] == "deskstream.ticket.status_changed" and e["data"]["to_status"] == "resolved" and tid in holder:
            held[holder.pop(tid)].discard(tid)
    return peak


def balance_violations(assignments: list[dict[str, Any]], what: dict[str, tuple[str, str, str]],
                       usage: dict[str, float]) -> list[tuple[str, str, str, float, float]]:
    """Tickets given to an agent while another agent who fits them was less loaded (relative to
    capacity) by more than one ticket's worth. `usage` is each agent's final share while the
    load only grows (no ticket resolved yet), so it bounds what they had at any earlier moment."""
    had: dict[str, int] = {}
    bad = []
    for e in sorted(assignments, key=lambda e: e["time"]):
        agent, (_, _, kind), snap = e["data"]["agent_id"], what[e["subject"]], e["data"]["ticket"]
        before = had.get(agent, 0) / AGENTS[agent][3]
        had[agent] = had.get(agent, 0) + 1
        for other in AGENTS:
            if other != agent and fits(other, channel=snap["channel"], language=snap["language"], need=NEEDS[kind]) \
                    and before > usage[other] + 1 / AGENTS[agent][3]:
                bad.append((e["subject"], agent, other, round(before, 2), round(usage[other], 2)))
    return bad


def spread(agents: dict[str, dict[str, Any]]) -> tuple[float, dict[str, float]]:
    usage = {name: agents[name]["load"] / agents[name]["capacity"] for name in AGENTS}
    return max(usage.values()) - min(usage.values()), usage


def test_many_tickets_go_to_agents_who_fit_never_over_capacity_balanced_and_the_queue_drains(stack):
    run = uuid.uuid4().hex[:6]
    routing, tickets, ingest = stack.client("routing"), stack.client("tickets"), stack.client("ingest")
    started = time.monotonic()
    others = {a["id"]: a["presence"] for a in routing.get("/v1/agents").json()["items"] if a["id"] not in AGENTS}
    for other, status in others.items():  # only the scenario's agents take tickets meanwhile
        if status == "online":
            assert routing.put(f"/v1/agents/{other}/presence", json={"status": "away"}).status_code == 200
    for kind, words in RULE_WORDS.items():
        rule = {"name": f"scenario {kind}", "order": 50, "when": {"text_any": words},
                "then": {"require_skills": [NEEDS[kind]]}}
        assert routing.put(f"/v1/rules/scenario-{kind}", json=rule).status_code == 200
    for name, (languages, channels, skills, capacity) in AGENTS.items():
        body = {"name": name, "skills": skills, "languages": languages, "channels": channels, "capacity": capacity}
        assert routing.put(f"/v1/agents/{name}", json=body).status_code == 200
        assert routing.put(f"/v1/agents/{name}/presence", json={"status": "online"}).status_code == 200
    samples: list[dict[str, dict[str, Any]]] = []  # every look at the agents, for the capacity check

    try:
        with Tail(stack.kafka_bootstrap) as tail:
            mix = plan(TICKETS)
            messages: dict[str, tuple[str, str, str]] = {}  # message id -> (language, channel, subject)

            def ticket_ids() -> dict[str, str]:
                return {e["data"]["message"]["message_id"]: e["subject"] for e in tail.snapshot()
                        if e["type"] == "deskstream.ticket.created" and e["data"]["message"]["message_id"] in messages}

            def assigned_ids() -> set[str]:
                return {e["subject"] for e in tail.snapshot() if e["type"] == "deskstream.ticket.assigned"}

            def look() -> dict[str, Any]:
                """The agents now, and how many of this run's tickets they hold and how many wait
                (tickets of other tests may be about too)."""
                ours = set(ticket_ids().values())
                agents = {a["id"]: a for a in routing.get("/v1/agents").json()["items"] if a["id"] in AGENTS}
                queue = routing.get("/v1/queue", params={"limit": 1000}).json()["items"]
                samples.append(agents)
                return {"agents": agents, "held": sum(len(ours & set(a["tickets"])) for a in agents.values()),
                        "waiting": sum(1 for item in queue if item["ticket_id"] in ours)}

            # 1. a first wave about orders, below capacity: it spreads over the agents who fit
            first = [i for i, (_, _, kind) in enumerate(mix) if kind == "order"][: CAPACITY // 2]
            for i in first:
                messages[send(stack, ingest, *mix[i], i, run)] = mix[i]
            assert poll(lambda: len(ticket_ids()) == len(first) and set(ticket_ids().values()) <= assigned_ids(),
                        timeout=60), "the first wave was not assigned"
            half_spread, half_usage = spread(look()["agents"])
            first_wave_tickets = set(ticket_ids().values())
            phases = {"first_wave_s": round(time.monotonic() - started, 1)}

            # 2. the rest, far more than the agents can hold: they fill up and the rest wait
            for i in (i for i in range(len(mix)) if i not in set(first)):
                messages[send(stack, ingest, *mix[i], i, run)] = mix[i]
            filed = poll(lambda: len(ticket_ids()) == len(mix), timeout=60 + len(mix))
            assert filed, f"only {len(ticket_ids())} of {len(mix)} messages became tickets"
            full = poll(lambda: (lambda now: now if now["held"] + now["waiting"] == len(mix) else None)(look()),
                        timeout=60 + len(mix))  # every ticket routed: held by an agent or waiting
            assert full, "routing did not take up every ticket"
            waiting_at_peak = full["waiting"]
            phases["all_filed_and_routed_s"] = round(time.monotonic() - started, 1)

            # 3. agents resolve what they hold; the waiting tickets are assigned as slots free up
            resolved: set[str] = set()
            queue_lengths = [waiting_at_peak]
            deadline = time.monotonic() + 120 + 3 * len(mix)
            while len(resolved) < len(mix) and time.monotonic() < deadline:
                queue_lengths.append(look()["waiting"])
                holding = sorted(assigned_ids() & set(ticket_ids().values()) - resolved)  # what agents see as theirs
                for tid in holding:
                    r = tickets.post(f"/v1/tickets/{tid}/status", json={"status": "resolved"})
                    assert r.status_code == 200, r.text
                    resolved.add(tid)
                if not holding:
                    time.sleep(0.2)
            assert len(resolved) == len(mix), f"{len(mix) - len(resolved)} tickets were never assigned"
            phases["all_assigned_and_resolved_s"] = round(time.monotonic() - started, 1)
            assert poll(lambda: (lambda now: now["held"] == 0 and now["waiting"] == 0)(look()), timeout=30)
            ours = set(ticket_ids().values())
            assert poll(lambda: sum(1 for e in tail.snapshot() if e["type"] == "deskstream.ticket.status_changed"
                                    and e["subject"] in ours and e["data"]["to_status"] == "resolved") >= len(ours),
                        timeout=30)
            events = tail.snapshot()
    finally:
        for kind in RULE_WORDS:
            routing.delete(f"/v1/rules/scenario-{kind}")
        for name in AGENTS:
            routing.put(f"/v1/agents/{name}/presence", json={"status": "offline"})
        for other, status in others.items():
            if status == "online":
                routing.put(f"/v1/agents/{other}/presence", json={"status": "online"})
        for c in (routing, tickets, ingest):
            c.close()

    # every ticket went to an agent who fits it, once, and no one was ever over capacity
    what = {e["subject"]: messages[e["data"]["message"]["message_id"]] for e in events
            if e["type"] == "deskstream.ticket.created" and e["data"]["message"]["message_id"] in messages}
    assignments = [e for e in events if e["type"] == "deskstream.ticket.assigned" and e["subject"] in what]
    unassigned = set(what) - {e["subject"] for e in assignments}
    assert not unassigned, [(t, [e["type"].rsplit(".", 1)[1] for e in events if e["subject"] == t]) for t in unassigned]
    misfits = []
    for e in assignments:
        _, channel, kind = what[e["subject"]]
        snap = e["data"]["ticket"]
        if not fits(e["data"]["agent_id"], channel=snap["channel"], language=snap["language"], need=NEEDS[kind]) \
                or snap["channel"] != channel:
            misfits.append((e["subject"], e["data"]["agent_id"], snap["channel"], snap["language"], kind))
    assert not misfits, misfits
    assert len(assignments) == len(what), "a ticket was assigned more than once"
    peak = capacity_sweep(events, set(what))
    assert all(peak.get(name, 0) <= AGENTS[name][3] for name in AGENTS), peak
    assert all(a["load"] <= a["capacity"] for sample in samples for a in sample.values())

    # the numbers for the note: how the first wave spread, and each agent's share of all the work
    served = {name: sum(1 for e in assignments if e["data"]["agent_id"] == name) for name in AGENTS}
    report = {
        "tickets": len(what), "agents": len(AGENTS), "capacity": CAPACITY, "seconds": round(time.monotonic() - started, 1),
        "phases": phases, "first_wave": len(first), "first_wave_spread": round(half_spread, 2),
        "first_wave_usage": {n: round(u, 2) for n, u in half_usage.items()},
        "peak_held": peak, "waiting_at_peak": waiting_at_peak,
        "queue_while_resolving": queue_lengths[:: max(1, len(queue_lengths) // 12)] + [0],
        "tickets_per_agent": served,
        "tickets_per_slot": {n: round(served[n] / AGENTS[n][3], 1) for n in AGENTS},
    }
    print("\nrouting scenario:", json.dumps(report, ensure_ascii=False))
    # balance: nobody was given a ticket while someone else who fits it sat (relatively) idler
    first_assignments = [e for e in assignments if e["subject"] in first_wave_tickets]
    assert not balance_violations(first_assignments, what, half_usage), report
    assert waiting_at_peak >= len(what) - CAPACITY
    # while agents only resolve (no new tickets), the queue only ever shrinks, down to nothing
    assert all(before >= after for before, after in zip(queue_lengths, queue_lengths[1:])), queue_lengths
