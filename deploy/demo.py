"""`make run`: start the whole stack, load a demo retailer, play a morning of customer
traffic through it, print what happened, and keep running until Ctrl-C (then stop
everything cleanly).

`make demo` (`--no-wait`) only loads the retailer and plays the traffic against a stack
that is already up. The traffic (`traffic()`) is the same the end-to-end tests play
against their own stack, so what the dashboard shows after a demo is what they check."""
from __future__ import annotations

import argparse
import dataclasses
import email.utils
import os
import signal
import smtplib
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("ingest", "tickets", "routing", "sla", "analytics")
DEFAULT_PORTS = {"ingest": 8001, "tickets": 8002, "routing": 8003, "sla": 8004, "analytics": 8005}
SHOP_PHONE = "+966115550100"
SHOP_EMAIL = "help@shop.example"

AGENTS = {
    "layla": {"name": "Layla Haddad", "skills": ["orders", "returns"], "languages": ["ar", "en"],
              "channels": ["chat", "email", "whatsapp", "webform"], "capacity": 6, "team": "front-line"},
    "omar": {"name": "Omar Saleh", "skills": ["payments", "orders"], "languages": ["ar", "en"],
             "channels": ["chat", "sms", "voice", "whatsapp"], "capacity": 5, "team": "front-line"},
    "sara": {"name": "Sara Lindqvist", "skills": ["returns", "warranty"], "languages": ["en"],
             "channels": ["chat", "email", "social", "webform"], "capacity": 5, "team": "specialists"},
}
POLICIES = {
    # live chat is answered within a minute or not at all: the chats the demo leaves
    # unanswered breach this a minute after it ends, so the dashboard shows breaches live
    "chat-live": {"name": "Live chat: first answer within a minute", "match": {"channel": "chat"},
                  "first_response_s": 60, "warn_before_s": 30, "resolution_s": 4 * 3600, "order": 10},
    "standard": {"name": "Everything else: first answer within six hours, solved within three days", "match": {},
                 "first_response_s": 6 * 3600, "warn_before_s": 1800, "resolution_s": 3 * 86400, "order": 100},
}
RULES = {
    "payments-urgent": {"name": "Money taken twice goes to payments, urgently", "order": 10,
                        "when": {"text_any": ["charged twice", "double charge", "خصم المبلغ مرتين"]},
                        "then": {"priority": "urgent", "require_skills": ["payments"], "add_tags": ["billing"]}},
}


@dataclasses.dataclass(frozen=True)
class Conversation:
    """One customer's request and what the team does with it."""

    channel: str
    customer: str
    lines: tuple[str, ...]  # what the customer writes before anyone answers
    tags: tuple[str, ...]  # the agent's triage: the product and the kind of problem
    outcome: str  # waiting | answered | resolved | reopened (resolved, then the customer writes again)
    reply: str | None = None  # None: solved without a written answer (the phone call was the answer)
    again: str | None = None  # the customer's message after the resolution, for "reopened"
    priority: str | None = None
    subject: str | None = None


CONVERSATIONS = (
    Conversation("chat", "Noura Al-Harbi",
                 ("Hi, my order #10442 still shows 'processing' after 5 days. Can you check?",
                  "It was the blue kettle, paid with Mada."),
                 ("kettle", "late-delivery"), "resolved", "Thanks for waiting! Your kettle ships today."),
    Conversation("email", "James Carter", ("The jacket I received is the wrong size. How do I return it?",),
                 ("jacket", "returns"), "resolved", "Sorry about that! A return label is attached to this mail.",
                 subject="Wrong size jacket"),
    Conversation("whatsapp", "فاطمة الزهراني", ("مرحبا، تم خصم المبلغ مرتين من بطاقتي للطلب 10457",),
                 ("double-charge",), "answered", "نعتذر عن ذلك، تم رفع طلب استرداد المبلغ المكرر.",
                 priority="urgent"),
    Conversation("chat", "Lina Park", ("Do you ship to Dammam? Checkout says unavailable.",),
                 ("shipping-area",), "resolved", "We do! The checkout issue is fixed, please try again."),
    Conversation("email", "Ahmed Youssef",
                 ("My warranty claim for the blender got no reply, it's been a week.", "Claim number is W-2231."),
                 ("blender", "warranty"), "waiting", subject="Warranty claim W-2231"),
    Conversation("sms", "Khalid Mansour", ("Where is my order 10471? Tracking hasn't moved since Sunday.",),
                 ("late-delivery",), "reopened", "It is with the courier and arrives tomorrow.",
                 again="Still nothing today. Can someone call me?"),
    Conversation("voice", "Huda Saeed",
                 ("Customer says the kettle leaks from the base after two uses and wants a replacement.",),
                 ("kettle", "damaged"), "resolved", None),
    Conversation("social", "Mark Ellis", ("@shop my headphones stopped charging after 2 weeks. Not happy.",),
                 ("headphones", "warranty"), "answered", "Sorry to hear that, Mark! Sent you a DM to sort it out."),
    Conversation("webform", "Grace Kim", ("I returned the jacket 10 days ago and the refund hasn't arrived.",),
                 ("jacket", "refund"), "resolved", "The refund went out today; banks take 3-5 days.",
                 subject="Refund not received"),
    Conversation("whatsapp", "Yusuf Demir", ("Do you have the kettle in white?",), ("kettle", "presales"),
                 "resolved", "Yes, the white one is in stock."),
    Conversation("chat", "Sophie Martin", ("I was charged twice for order 10502!",), ("double-charge",), "waiting",
                 priority="urgent"),
    Conversation("email", "Rania Aziz", ("The blender arrived with a cracked jar.",), ("blender", "damaged"),
                 "answered", "So sorry! A replacement jar is on its way.", subject="Damaged blender"),
    Conversation("sms", "Faisal Otaibi", ("Please cancel my order 10510.",), ("cancellation",), "resolved",
                 "Done, order 10510 is cancelled and refunded."),
    Conversation("chat", "سلمان العتيبي", ("طلبي متأخر منذ أسبوع، متى يصل؟",), ("late-delivery",), "waiting"),
    Conversation("webform", "Daniel Berg", ("How do I register the blender for the two-year warranty?",),
                 ("blender", "warranty"), "waiting", subject="Warranty registration"),
    Conversation("social", "Amira Nasser", ("Driver left my parcel in the rain, the headphones box is soaked.",),
                 ("headphones", "damaged"), "resolved", "We're sending a new pair today, sorry Amira!"),
)


def default_urls() -> dict[str, str]:
    """Where `make up` puts the services (the same `<NAME>_HTTP_PORT` variables they read)."""
    return {name: f"http://127.0.0.1:{os.environ.get(f'{name.upper()}_HTTP_PORT', port)}"
            for name, port in DEFAULT_PORTS.items()}


class Client:
    def __init__(self, urls: dict[str, str] | None = None, token: str | None = None) -> None:
        self.urls = urls or default_urls()
        # ingest's SMTP door moves with its HTTP port (deploy/local/stackctl.py: 2525 + the stack's offset)
        ingest_port = int(self.urls["ingest"].rsplit(":", 1)[1])
        self.smtp_port = int(os.environ.get("INGEST_SMTP_PORT") or 2525 + ingest_port - 8001)
        token = token or os.environ.get("DESKSTREAM_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(headers=headers, timeout=10)

    def call(self, method: str, service: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, f"{self.urls[service]}{path}", **kw)

    def ok(self, method: str, service: str, path: str, **kw: Any) -> Any:
        r = self.call(method, service, path, **kw)
        if r.status_code >= 400:
            raise SystemExit(f"demo: {method} {service}{path} answered {r.status_code}: {r.text[:200]}")
        return r.json() if r.content else None


def wait_for(fn, timeout: float = 30.0, interval: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := fn():
            return value
        time.sleep(interval)
    return None


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---------------------------------------------------------------- the retailer

def setup(client: Client) -> None:
    """Agents, SLA policies and an automation rule of a small online shop."""
    print("\n== Loading the demo retailer")
    for agent_id, profile in AGENTS.items():
        client.ok("PUT", "routing", f"/v1/agents/{agent_id}", json=profile)
        client.ok("PUT", "routing", f"/v1/agents/{agent_id}/presence", json={"status": "online"})
        print(f"   agent {profile['name']:<16} {profile['team']:<12} skills {', '.join(profile['skills']):<18} "
              f"capacity {profile['capacity']}")
    for policy_id, policy in POLICIES.items():
        client.ok("PUT", "sla", f"/v1/policies/{policy_id}", json=policy)
        print(f"   SLA policy {policy['name']}")
    for rule_id, rule in RULES.items():
        client.ok("PUT", "routing", f"/v1/rules/{rule_id}", json=rule)
        print(f"   rule {rule['name']}")


# ---------------------------------------------------------------- customers write in, on every channel

class Customer:
    """How one conversation's customer reaches the shop: ids unique to this run, so a second
    demo on the same data starts new conversations instead of continuing old ones."""

    def __init__(self, run: str, n: int, conversation: Conversation) -> None:
        self.run, self.n, self.c = run, n, conversation
        self.key = f"demo-{run}-{n}"
        local = "".join(ch for ch in conversation.customer.lower() if ch.isascii() and ch.isalnum()) or "customer"
        self.email = f"{local}+{run}{n}@example.com"
        self.phone = f"+9665{(int(run, 16) * 31 + n) % 10**8:08d}"
        self.sent = 0
        self.chat_token: str | None = None  # what the session's first message was answered with
        self.answer = "202"  # how the door took the last message

    def write(self, client: Client, text: str) -> str:
        """Send one message the way its channel delivers it; returns ingest's message id."""
        i, self.sent = self.sent, self.sent + 1
        ch, name, mid = self.c.channel, self.c.customer, f"{self.key}-{i}"
        if ch == "chat":
            r = client.ok("POST", "ingest", "/v1/inbound/chat", json={
                "session_id": self.key, "message_id": mid, "text": text, "sent_at": now_iso(),
                "customer": {"name": name, "email": self.email, "visitor_id": f"visitor-{self.key}"},
                **({"chat_token": self.chat_token} if self.chat_token else {})})
            self.chat_token = r.get("chat_token") or self.chat_token
        elif ch == "email":
            mail = EmailMessage()
            mail["From"] = email.utils.formataddr((name, self.email))
            mail["To"] = SHOP_EMAIL
            mail["Subject"] = ("Re: " if i else "") + (self.c.subject or text[:60])
            mail["Date"] = email.utils.formatdate(usegmt=True)
            mail["Message-ID"] = f"<{mid}@example.com>"
            if i:
                mail["In-Reply-To"] = mail["References"] = f"<{self.key}-0@example.com>"
            mail.set_content(text)
            if self.n % 2:  # every other mail customer's MX delivers to the SMTP door, as a real MX would
                self.answer = "250 smtp"
                return smtp_door(mail, client.smtp_port)
            r = client.ok("POST", "ingest", "/v1/inbound/email", content=mail.as_bytes(),
                          headers={"Content-Type": "message/rfc822"})
        elif ch == "sms":
            r = client.ok("POST", "ingest", "/v1/inbound/sms",
                          data={"MessageSid": f"SM{mid}", "From": self.phone, "To": SHOP_PHONE, "Body": text})
        elif ch == "whatsapp":
            wa = self.phone.removeprefix("+")
            r = client.ok("POST", "ingest", "/v1/inbound/whatsapp", json={
                "object": "whatsapp_business_account", "entry": [{"changes": [{"value": {
                    "metadata": {"display_phone_number": SHOP_PHONE.removeprefix("+")},
                    "contacts": [{"wa_id": wa, "profile": {"name": name}}],
                    "messages": [{"from": wa, "id": f"wamid.{mid}", "timestamp": str(int(time.time())),
                                  "type": "text", "text": {"body": text}}]}}]}]})
        elif ch == "social":
            r = client.ok("POST", "ingest", "/v1/inbound/social", json={
                "network": "x", "message_id": mid, "text": text, "sent_at": now_iso(),
                "author": {"handle": f"@{self.key}", "name": name}})
        elif ch == "webform":
            r = client.ok("POST", "ingest", "/v1/inbound/webform", json={
                "name": name, "email": self.email, "subject": self.c.subject, "message": text})
        elif ch == "voice":
            r = client.ok("POST", "ingest", "/v1/inbound/voice", json={
                "call_id": f"CA{mid}", "from": self.phone, "to": SHOP_PHONE, "started_at": now_iso(),
                "duration_s": 184, "transcript": text})
        else:
            raise ValueError(f"no such channel: {ch}")
        return r["message_id"]


def smtp_door(mail: EmailMessage, port: int) -> str:
    """Deliver a mail to ingest's SMTP door and return the message id its 250 names: the door answers
    only once Kafka holds the mail."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo()
        smtp.mail(email.utils.parseaddr(mail["From"])[1])
        smtp.rcpt(SHOP_EMAIL)
        code, reply = smtp.data(mail.as_bytes())
    if code != 250:
        raise SystemExit(f"demo: the SMTP door answered {code} {reply.decode(errors='replace')}")
    return reply.decode().split()[-1]


def filed(client: Client, message_id: str, timeout: float = 30.0) -> str:
    found = wait_for(lambda: (lambda r: r.json() if r.status_code == 200 else None)(
        client.call("GET", "tickets", f"/v1/messages/{message_id}")), timeout=timeout)
    if not found:
        raise SystemExit(f"demo: message {message_id} was not filed within {timeout:.0f} s")
    return found["ticket_id"]


def traffic(client: Client, run: str | None = None, conversations: tuple[Conversation, ...] = CONVERSATIONS,
            assign_timeout: float = 6.0) -> dict[str, dict[str, Any]]:
    """A morning of customer traffic on every channel, and what the agents do with it:
    triage (tags, priority), answers, resolutions, a customer who comes back after the
    resolution, and requests nobody has answered yet. Returns the tickets by id."""
    run = run or uuid.uuid4().hex[:8]
    print("\n== Customers write in")
    people = [Customer(run, n, c) for n, c in enumerate(conversations)]
    firsts = []
    for person in people:
        # a conversation's messages share a thread key, which keeps them in order on Kafka:
        # the follow-ups need not wait for the first to be filed
        firsts.append([person.write(client, text) for text in person.c.lines][0])
        for text in person.c.lines:
            print(f"   {person.answer:<8} {person.c.channel:<9} {person.c.customer:<16} {text[:58]}")
    tickets: dict[str, dict[str, Any]] = {}
    for person, message_id in zip(people, firsts):
        ticket_id = filed(client, message_id)
        tickets[ticket_id] = {"ticket_id": ticket_id, "conversation": person.c, "customer": person}

    print("\n== Filed into tickets and routed")
    wait_for(lambda: all(client.ok("GET", "tickets", f"/v1/tickets/{t}").get("assignee") for t in tickets),
             timeout=assign_timeout, interval=0.3)
    for ticket_id, row in tickets.items():
        ticket = client.ok("GET", "tickets", f"/v1/tickets/{ticket_id}")
        row.update(assignee=ticket.get("assignee"), status=ticket["status"])
        print(f"   {ticket_id}  {row['conversation'].channel:<9} {row['conversation'].customer:<16} "
              f"{len(ticket['messages'])} msg → {row['assignee'] or '(waiting in the queue)'}")

    print("\n== Agents triage, answer and resolve")
    # agents work side by side, each ticket in its own order: triage, answer, resolve
    with ThreadPoolExecutor(max_workers=4) as agents:
        handled = agents.map(lambda t: triage(client, tickets[t]) and act(client, tickets[t]), tickets)
        pending = [t for t, done in zip(list(tickets), handled) if not done]
        # resolutions free agents, and routing hands them what waits in the queue
        while pending and wait_for(lambda: any(assignee(client, t) for t in pending), timeout=3):
            pending = [t for t, done in zip(pending, agents.map(lambda t: act(client, tickets[t]), pending))
                       if not done]
    for ticket_id in pending:
        print(f"   {ticket_id}  nobody free to answer yet")
    # the customer who wrote again: their ticket is open again once the message is filed
    for ticket_id, row in tickets.items():
        if row["conversation"].outcome == "reopened" and row["assignee"]:
            row["status"] = wait_for(lambda: (lambda s: s if s == "open" else None)(
                client.ok("GET", "tickets", f"/v1/tickets/{ticket_id}")["status"]), timeout=20) or row["status"]
    return tickets


def assignee(client: Client, ticket_id: str) -> str | None:
    return client.ok("GET", "tickets", f"/v1/tickets/{ticket_id}").get("assignee")


def triage(client: Client, row: dict[str, Any]) -> bool:
    """Tags for the product and the kind of problem, and the priority when it is not normal."""
    c, ticket_id, actor = row["conversation"], row["ticket_id"], row["assignee"] or "lead"
    client.ok("POST", "tickets", f"/v1/tickets/{ticket_id}/tags", json={"add": list(c.tags), "actor": actor})
    if c.priority:
        client.ok("PUT", "tickets", f"/v1/tickets/{ticket_id}/priority", json={"priority": c.priority, "actor": actor})
    return True


def act(client: Client, row: dict[str, Any]) -> bool:
    """The assigned agent answers and resolves as the conversation goes; False when the
    ticket has nobody assigned yet."""
    c, ticket_id = row["conversation"], row["ticket_id"]
    if c.outcome == "waiting":
        return True
    agent = row["assignee"] = row["assignee"] or assignee(client, ticket_id)
    if agent is None:
        return False
    if c.reply:
        client.ok("POST", "tickets", f"/v1/tickets/{ticket_id}/replies", json={"agent_id": agent, "text": c.reply})
    if c.outcome in ("resolved", "reopened"):
        client.ok("POST", "tickets", f"/v1/tickets/{ticket_id}/status", json={"status": "resolved", "actor": agent})
    if c.outcome == "reopened" and c.again:
        row["customer"].write(client, c.again)
    print(f"   {ticket_id}  {agent:<8} {c.outcome:<9} {', '.join(c.tags)}")
    return True


# ---------------------------------------------------------------- what it adds up to

def settled(client: Client, tickets: int, timeout: float = 20.0) -> dict[str, Any]:
    """The summary once it counts `tickets` tickets and has stopped moving: the same counts
    in two reads a refresh apart (analytics recomputes them at least every 2 s)."""
    def counts(s: dict[str, Any]) -> tuple:
        return (s["tickets_total"], s["tickets_by_status"], s["sla"], s["first_response"]["count"],
                s["resolution"]["count"], s["agents"])

    end, last = time.monotonic() + timeout, None
    while True:
        s = client.ok("GET", "analytics", "/v1/summary")
        if (s["tickets_total"] >= tickets and last is not None and counts(s) == counts(last)) \
                or time.monotonic() > end:
            return s
        last = s
        time.sleep(2.5)


def summary(client: Client, tickets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Print the numbers once analytics has counted every demo ticket; the dashboard's
    address is the last line."""
    s = settled(client, len(tickets))
    agents = client.ok("GET", "routing", "/v1/agents")
    sla = {k: sum(row[k] for row in s["sla_compliance"]) for k in ("met", "breached")}
    print("\n== Summary")
    print(f"   tickets:   {s['tickets_total']} — " + ", ".join(f"{ch} {n}" for ch, n in sorted(
        s["tickets_by_channel"].items(), key=lambda kv: -kv[1])))
    print(f"   backlog:   {s['backlog']['total']} ("
          + ", ".join(f"{st} {n}" for st, n in s["backlog"]["by_status"].items() if n)
          + f"); resolved {s['tickets_by_status'].get('resolved', 0)}")
    print(f"   answers:   {s['first_response']['count']} first responses; SLA met {sla['met']}, "
          f"breached {sla['breached']} (unanswered chats breach their one-minute target soon: watch the page)")
    print("   recurring: " + ", ".join(f"{t['tag']} {t['tickets']}" for t in s["top_tags"][:6]))
    print("   agents:    " + ", ".join(f"{a['id']} {a['load']}/{a['capacity']}" for a in agents["items"])
          + f"; waiting in the queue: {agents['queue_length']}")
    print(f"   metrics:   /metrics and /healthz on each service, e.g. {client.urls['tickets']}/metrics; "
          "events on Kafka topics tickets.events, sla.events, deadletter")
    print(f"   dashboard: {client.urls['analytics']}/dashboard")
    return s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-wait", action="store_true", help="play the traffic against a running stack and exit")
    args = parser.parse_args(argv)
    from deploy.local import stack as stackctl

    if not args.no_wait:
        print("== Starting Kafka, FerretDB and the five services (first run downloads and builds them)")
        try:
            stackctl.up()
        except stackctl.StackError as exc:
            print(f"stackctl: {exc}", file=sys.stderr)
            return 1
    client = Client(token=stackctl.api_token())
    try:
        setup(client)
        tickets = traffic(client)
        from deploy import demo_recurring  # issue 19: a duplicate caught, a problem on the dashboard

        demo_recurring.play(client, uuid.uuid4().hex[:8])
        from deploy import demo_csat  # issue 18: customers confirm resolutions and rate them

        demo_csat.play(client, tickets)
        summary(client, tickets)
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
