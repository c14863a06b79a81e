"""`make run`: start the whole stack, load a demo retailer, play customer traffic through
it, print what happened, and keep running until Ctrl-C (then stop everything cleanly).

`make demo` (`--no-wait`) only plays the traffic against a stack that is already up."""
from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PORTS = {"ingest": 8001, "tickets": 8002, "routing": 8003, "sla": 8004, "analytics": 8005}

AGENTS = {
    "layla": {"name": "Layla Haddad", "skills": ["orders", "returns"], "languages": ["ar", "en"],
              "channels": ["chat", "email", "whatsapp"], "capacity": 4, "team": "front-line"},
    "omar": {"name": "Omar Saleh", "skills": ["payments", "orders"], "languages": ["ar", "en"],
             "channels": ["chat", "sms", "voice"], "capacity": 3, "team": "front-line"},
    "sara": {"name": "Sara Lindqvist", "skills": ["returns", "warranty"], "languages": ["en"],
             "channels": ["chat", "email", "social"], "capacity": 3, "team": "specialists"},
}
POLICIES = {
    "chat-fast": {"name": "Chat: first answer within 15 minutes", "match": {"channel": "chat"},
                  "first_response_s": 900, "warn_before_s": 300, "order": 10},
    "standard": {"name": "Everything else: first answer within six hours", "match": {},
                 "first_response_s": 6 * 3600, "warn_before_s": 1800, "order": 100},
}
CONVERSATIONS = [
    ("Noura Al-Harbi", "noura@example.com", ["Hi, my order #10442 still shows 'processing' after 5 days. Can you check?",
                                             "It was the blue kettle, paid with Mada."]),
    ("James Carter", "james.carter@example.com", ["The jacket I received is the wrong size. How do I return it?"]),
    ("فاطمة الزهراني", "fatima@example.com", ["مرحبا، تم خصم المبلغ مرتين من بطاقتي للطلب 10457"]),
    ("Lina Park", "lina.park@example.com", ["Do you ship to Dammam? Checkout says unavailable."]),
    ("Ahmed Youssef", "ahmed.y@example.com", ["My warranty claim for the blender got no reply, it's been a week.",
                                              "Claim number is W-2231."]),
]


def load_stackctl():
    spec = importlib.util.spec_from_file_location("stackctl", ROOT / "deploy" / "local" / "stackctl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Client:
    def __init__(self) -> None:
        token = os.environ.get("DESKSTREAM_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(headers=headers, timeout=10)

    def call(self, method: str, service: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, f"http://127.0.0.1:{PORTS[service]}{path}", **kw)

    def ok(self, method: str, service: str, path: str, **kw: Any) -> Any:
        r = self.call(method, service, path, **kw)
        if r.status_code >= 400:
            raise SystemExit(f"demo: {method} {service}{path} answered {r.status_code}: {r.text[:200]}")
        return r.json()


def wait_for(fn, timeout: float = 30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := fn():
            return value
        time.sleep(0.25)
    return None


def play(client: Client) -> list[dict[str, Any]]:
    print("\n== Loading the demo retailer")
    for agent_id, profile in AGENTS.items():
        client.ok("PUT", "routing", f"/v1/agents/{agent_id}", json=profile)
        client.ok("PUT", "routing", f"/v1/agents/{agent_id}/presence", json={"status": "online"})
        print(f"   agent {profile['name']:<16} skills {', '.join(profile['skills']):<18} capacity {profile['capacity']}")
    for policy_id, policy in POLICIES.items():
        client.ok("PUT", "sla", f"/v1/policies/{policy_id}", json=policy)
        print(f"   SLA policy {policy['name']}")

    print("\n== Customers write in (web chat)")
    run = uuid.uuid4().hex[:6]
    accepted: list[tuple[str, str, str]] = []
    for n, (name, email, lines) in enumerate(CONVERSATIONS):
        session = f"demo-{run}-{n}"
        for i, text in enumerate(lines):
            body = {"session_id": session, "message_id": f"{session}-{i}", "text": text,
                    "customer": {"name": name, "email": email, "visitor_id": f"visitor-{run}-{n}"},
                    "sent_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            message_id = client.ok("POST", "ingest", "/v1/inbound/chat", json=body)["message_id"]
            accepted.append((name, text, message_id))
            if i == 0 and n == 0:  # a widget that retries: the same message again changes nothing
                again = client.ok("POST", "ingest", "/v1/inbound/chat", json=body)["message_id"]
                print(f"   (resent {message_id}: same id {again == message_id})")
            print(f"   202 {message_id}  {name}: {text[:60]}")

    print("\n== Filed into tickets and assigned")
    tickets: dict[str, dict[str, Any]] = {}
    for name, _, message_id in accepted:
        filed = wait_for(lambda: (lambda r: r.json() if r.status_code == 200 else None)(
            client.call("GET", "tickets", f"/v1/messages/{message_id}")))
        if not filed:
            raise SystemExit(f"demo: message {message_id} was not filed within 30 s")
        tickets[filed["ticket_id"]] = {"customer": name}
    for ticket_id, row in tickets.items():
        ticket = wait_for(lambda: (lambda t: t if t.get("assignee") else None)(
            client.ok("GET", "tickets", f"/v1/tickets/{ticket_id}")), timeout=20) or \
            client.ok("GET", "tickets", f"/v1/tickets/{ticket_id}")
        sla = wait_for(lambda: (lambda r: r.json() if r.status_code == 200 else None)(
            client.call("GET", "sla", f"/v1/tickets/{ticket_id}/sla")), timeout=20)
        target = sla["targets"][0] if sla else {}
        row.update(status=ticket["status"], assignee=ticket.get("assignee") or "(queued)",
                   messages=len(ticket["messages"]), due=target.get("due", "?"), policy=target.get("policy_id", "?"))
        print(f"   {ticket_id}  {row['customer']:<16} {row['messages']} msg  {row['status']:<8} "
              f"→ {row['assignee']:<8} first response due {row['due']} ({row['policy']})")

    first = next(iter(tickets))
    agent = tickets[first]["assignee"]
    if agent != "(queued)":
        print("\n== An agent answers")
        reply = client.ok("POST", "tickets", f"/v1/tickets/{first}/replies",
                          json={"agent_id": agent, "text": "Thanks for waiting! Your order ships today."})
        met = wait_for(lambda: (lambda s: s if s["targets"][0]["state"] == "met" else None)(
            client.ok("GET", "sla", f"/v1/tickets/{first}/sla")), timeout=20)
        print(f"   {first} is {reply['status']}; first-response SLA {'met' if met else 'still running'}")
    return list(tickets.values())


def summary(client: Client) -> None:
    s = wait_for(lambda: (lambda x: x if x["tickets_total"] else None)(client.ok("GET", "analytics", "/v1/summary")),
                 timeout=15) or client.ok("GET", "analytics", "/v1/summary")
    agents = client.ok("GET", "routing", "/v1/agents")
    print("\n== Summary")
    print(f"   tickets so far: {s['tickets_total']} {s['tickets_by_channel']}")
    print("   agents: " + ", ".join(f"{a['id']} {a['load']}/{a['capacity']}" for a in agents["items"])
          + f"; waiting in queue: {agents['queue_length']}")
    print("   dashboard:  http://127.0.0.1:8005/dashboard")
    print("   metrics:    http://127.0.0.1:800{1..5}/metrics     health: /healthz on each")
    print("   events:     Kafka 127.0.0.1:9092 topics tickets.events, sla.events, deadletter")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-wait", action="store_true", help="play the traffic against a running stack and exit")
    args = parser.parse_args(argv)
    stackctl = load_stackctl()
    if not args.no_wait:
        print("== Starting Kafka, FerretDB and the five services (first run downloads and builds them)")
        try:
            stackctl.up()
        except stackctl.StackError as exc:
            print(f"stackctl: {exc}", file=sys.stderr)
            return 1
    client = Client()
    try:
        play(client)
        summary(client)
    except httpx.HTTPError as exc:
        print(f"demo: a service did not answer: {exc}", file=sys.stderr)
        return 1
    if args.no_wait:
        return 0
    print("\nThe stack keeps running. Press Ctrl-C to stop it.")
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        while not stop["now"]:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    print("\n== Stopping")
    stackctl.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
