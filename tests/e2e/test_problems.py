"""Recurring problems on the real stack (issue 19): twenty customers report one fault of one product, in
their own words, in English and Arabic, on chat → analytics lists one problem with those twenty tickets
(GET /v1/problems, /v1/problems/{id}) and `deskstream.problem.detected` is sent once for it, which a
webhook subscribed to `deskstream.problem.*` receives."""

from __future__ import annotations

import random
import uuid

import pytest

from shared import topics
from tests.e2e.helpers import chat_message, file_chat, poll, read_topic, run
from tests.e2e.test_webhooks import Receiver, subscribe

pytestmark = pytest.mark.e2e

ENGLISH = [
    "My air fryer {code} gets very hot and there's a burning smell",
    "the {code} fryer overheats after a few minutes, is it safe?",
    "Hi, I saw sparks from the air fryer {code}, it overheats",
    "air fryer model {code} is overheating badly",
    "{code} air fryer: burning smell every time I use it",
]
ARABIC = [
    "القلاية الهوائية {code} تسخن بشكل غير طبيعي وفيها رائحة حريق",
    "طلعت شرارة من القلاية {code}",
    "قلاية {code} حرارتها عالية وريحة حريق",
    "القلاية {code} يسخن جسمها كثير، هل هي آمنة؟",
]


def test_twenty_customers_reporting_one_fault_in_two_languages_are_one_problem(stack, agent):
    code = f"AF-{random.randint(10000, 99999)}"
    rng = random.Random(code)
    product_team = Receiver()
    webhook_id = subscribe(stack, product_team, events=["deskstream.problem.*"])
    ticket_ids = set()
    for i in range(20):
        text = rng.choice(ENGLISH if i % 2 else ARABIC).format(code=code)
        _, ticket_id = file_chat(stack, chat_message(session=f"fryer-{uuid.uuid4().hex[:10]}", text=text))
        ticket_ids.add(ticket_id)
    assert len(ticket_ids) == 20

    def ours() -> dict | None:
        with stack.client("analytics") as analytics:
            listed = analytics.get("/v1/problems").json()["problems"]
        return next((p for p in listed if code.replace("-", "") in p["skus"] and p["tickets"] == 20), None)

    problem = poll(ours, timeout=30.0)
    assert problem, "no problem with the twenty tickets was listed"
    assert "overheating" in problem["label"] and problem["customers"] == 20
    assert set(problem["languages"]) == {"en", "ar"} and problem["channels"] == ["chat"]
    assert set(problem["ticket_ids"]) <= ticket_ids and problem["first_seen"] <= problem["last_seen"]
    with stack.client("analytics") as analytics:
        whole = analytics.get(f"/v1/problems/{problem['id']}").json()
        assert analytics.get("/v1/problems/PB-NOSUCHTHING").status_code == 404
    assert set(whole["ticket_ids"]) == ticket_ids

    events = run(
        read_topic(
            stack.kafka_bootstrap,
            topics.TICKETS_EVENTS,
            until=lambda rs: any(
                r.get("type") == "deskstream.problem.detected" and r.get("subject") == problem["id"] for r in rs
            ),
        )
    )
    detected = {
        r["id"]: r
        for r in events
        if r.get("type") == "deskstream.problem.detected" and r.get("subject") == problem["id"]
    }
    assert len(detected) == 1, "the problem was announced more than once (or never)"
    (announced,) = detected.values()
    assert announced["_key"] == problem["id"] and announced["data"]["tickets"] >= 10
    assert set(announced["data"]["ticket_ids"]) <= ticket_ids

    hooked = poll(lambda: [e for e in product_team.accepted if e.get("subject") == problem["id"]], timeout=15.0)
    product_team.close()
    with stack.client("tickets") as tickets:
        assert tickets.delete(f"/v1/webhooks/{webhook_id}").status_code == 204
    assert [e["type"] for e in hooked or []] == ["deskstream.problem.detected"]
    assert hooked[0]["id"] == announced["id"]
