"""`make run`'s part for issue 19: a customer who tweets and then mails about the same order (the mail's
ticket is marked `duplicate_of` the tweet's), and a dozen customers reporting one fault of one blender in
English and Arabic (one recurring problem, on the dashboard's "Top problems today")."""

from __future__ import annotations

import email.utils
import random
import time
from email.message import EmailMessage
from typing import Any

PROBLEM_REPORTS = (
    "My blender {code} gets very hot and there's a burning smell",
    "الخلاط {code} يسخن بشكل غير طبيعي وفيه رائحة حريق",
    "the {code} blender overheats after a minute, is it safe?",
    "طلعت شرارة من الخلاط {code}",
    "Saw sparks from my blender {code}, it overheats",
    "خلاط {code} حرارته عالية وريحة حريق",
)
CHANNELS = ("chat", "whatsapp", "sms", "webform")


def _wait(fn, timeout: float, interval: float = 0.3) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := fn():
            return value
        time.sleep(interval)
    return None


def _filed(client, message_id: str) -> str | None:
    found = _wait(
        lambda: (lambda r: r.json() if r.status_code == 200 else None)(
            client.call("GET", "tickets", f"/v1/messages/{message_id}")
        ),
        timeout=30,
    )
    return found["ticket_id"] if found else None


def duplicate(client, run: str) -> None:
    order = str(int(run, 16) % 900000 + 100000)
    address = f"khalid+{run}@example.com"
    tweet = client.ok(
        "POST",
        "ingest",
        "/v1/inbound/social",
        json={
            "network": "x",
            "message_id": f"dup-{run}",
            "sent_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "author": {"handle": f"@khalid{run}", "name": "Khalid"},
            "text": f"@shop my kettle from order {order} arrived with a cracked lid 😡",
        },
    )
    first = _filed(client, tweet["message_id"])
    customer = client.ok("GET", "tickets", f"/v1/tickets/{first}")["customer"]["id"]
    # the agent who read both knows the address is the same person's (docs/security.md)
    client.ok("POST", "tickets", f"/v1/customers/{customer}/identities", json={"identity": f"email:{address}"})
    mail = EmailMessage()
    mail["From"], mail["To"] = email.utils.formataddr(("Khalid", address)), "help@shop.example"
    mail["Subject"], mail["Message-ID"] = f"Order {order}", f"<dup-{run}@example.com>"
    mail.set_content(f"السلام عليكم،\nوصلت الغلاية مكسورة والغطاء مشعور، رقم الطلب {order}.\nخالد")
    sent = client.ok(
        "POST", "ingest", "/v1/inbound/email", content=mail.as_bytes(), headers={"Content-Type": "message/rfc822"}
    )
    second = _filed(client, sent["message_id"])
    marked = _wait(lambda: client.ok("GET", "tickets", f"/v1/tickets/{second}").get("duplicate_of"), timeout=10)
    print(f"   {first}  social    Khalid           tweet: kettle of order {order} arrived cracked")
    print(
        f"   {second}  email     Khalid           the same in Arabic, a mail → "
        + (f"duplicate_of {marked['ticket_id']} (score {marked['score']})" if marked else "not marked (yet)")
    )


def problem(client, run: str, customers: int = 12) -> None:
    code = f"BL-{int(run, 16) % 9000 + 1000}"
    rng = random.Random(run)
    for n in range(customers):
        key, text = f"fault-{run}-{n}", PROBLEM_REPORTS[n % len(PROBLEM_REPORTS)].format(code=code)
        channel = CHANNELS[n % len(CHANNELS)]
        phone = f"+9665{rng.randrange(10**8):08d}"
        if channel == "chat":
            client.ok(
                "POST",
                "ingest",
                "/v1/inbound/chat",
                json={
                    "session_id": key,
                    "message_id": key,
                    "text": text,
                    "sent_at": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "customer": {"name": f"Customer {n}", "email": f"{key}@example.com", "visitor_id": key},
                },
            )
        elif channel == "whatsapp":
            wa = phone.removeprefix("+")
            client.ok(
                "POST",
                "ingest",
                "/v1/inbound/whatsapp",
                json={
                    "object": "whatsapp_business_account",
                    "entry": [
                        {
                            "changes": [
                                {
                                    "value": {
                                        "metadata": {"display_phone_number": "966115550100"},
                                        "contacts": [{"wa_id": wa, "profile": {"name": f"Customer {n}"}}],
                                        "messages": [
                                            {
                                                "from": wa,
                                                "id": f"wamid.{key}",
                                                "timestamp": str(int(time.time())),
                                                "type": "text",
                                                "text": {"body": text},
                                            }
                                        ],
                                    }
                                }
                            ]
                        }
                    ],
                },
            )
        elif channel == "sms":
            client.ok(
                "POST",
                "ingest",
                "/v1/inbound/sms",
                data={"MessageSid": f"SM{key}", "From": phone, "To": "+966115550100", "Body": text},
            )
        else:
            client.ok(
                "POST",
                "ingest",
                "/v1/inbound/webform",
                json={"name": f"Customer {n}", "email": f"{key}@example.com", "subject": "Blender", "message": text},
            )
    found = _wait(
        lambda: next(
            (
                p
                for p in client.ok("GET", "analytics", "/v1/problems")["problems"]
                if code.replace("-", "") in p["skus"] and p["tickets"] >= customers
            ),
            None,
        ),
        timeout=30,
    )
    if found:
        print(
            f"   {found['id']}  {found['label']}: {found['tickets']} tickets of {found['customers']} customers, "
            f"{'/'.join(found['languages'])} on {', '.join(found['channels'])}"
            + ("; deskstream.problem.detected sent" if found["detected"] else "")
        )
    else:
        print(f"   the {code} reports are not grouped yet: GET /v1/problems on analytics shows them once they are")


def play(client, run: str) -> None:
    print("\n== The same request twice, and one problem many customers share")
    duplicate(client, run)
    problem(client, run)
