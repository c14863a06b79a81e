"""One chat message through all five services, on real Kafka and FerretDB, each
service its own process."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from tests.e2e.helpers import chat_message, file_chat, poll, read_topic, run

pytestmark = pytest.mark.e2e


def test_every_service_is_healthy_and_exposes_metrics(stack):
    for name in stack.urls:
        with stack.client(name, auth=False) as c:
            health = c.get("/healthz")
            assert health.status_code == 200 and health.json()["checks"] == {"kafka": True, "mongodb": True}
            metrics = c.get("/metrics")
            assert metrics.status_code == 200 and "deskstream_service_ready 1.0" in metrics.text


def test_chat_message_becomes_one_assigned_ticket_with_an_sla_deadline(stack, agent):
    message = chat_message()
    with stack.client("ingest") as ingest:
        first = ingest.post("/v1/inbound/chat", json=message)
        again = ingest.post("/v1/inbound/chat", json=message)
    assert first.status_code == again.status_code == 202
    assert first.json()["message_id"] == again.json()["message_id"]
    message_id, ticket_id = file_chat(stack, message)
    assert message_id == first.json()["message_id"]

    with stack.client("tickets") as tickets:
        ticket = poll(lambda: (lambda t: t if t.get("assignee") else None)(tickets.get(f"/v1/tickets/{ticket_id}").json()))
    assert ticket, "the ticket was never assigned"
    assert ticket["id"] == ticket_id and ticket["status"] == "new" and ticket["channel"] == "chat"
    assert ticket["assignee"] == agent
    assert [m["direction"] for m in ticket["messages"]] == ["inbound"]  # the duplicate added nothing
    assert ticket["messages"][0]["text"] == message["text"]
    assert f"email:{message['customer']['email']}" in ticket["customer"]["identities"]
    assert {"created", "message_received", "assigned"} <= {e["type"] for e in ticket["timeline"]}
    assert all(e["at"] for e in ticket["timeline"])

    with stack.client("sla") as sla:
        clocks = poll(lambda: (lambda r: r.json() if r.status_code == 200 else None)(sla.get(f"/v1/tickets/{ticket_id}/sla")))
    target = clocks["targets"][0]
    assert target["target"] == "first_response" and target["policy_id"] == "default"
    created = datetime.fromisoformat(ticket["created_at"])
    assert datetime.fromisoformat(target["due"]) == created + timedelta(seconds=3)  # SLA_DEFAULT_FIRST_RESPONSE_S

    with stack.client("tickets") as tickets:
        customer = tickets.get(f"/v1/customers/{ticket['customer']['id']}").json()
    assert ticket_id in [t["id"] for t in customer["tickets"]]


def test_tickets_events_carry_cloudevents_in_order_for_other_systems(stack, agent):
    _, ticket_id = file_chat(stack, chat_message())

    def seen(records):
        return {"deskstream.ticket.created", "deskstream.ticket.assigned"} <= {
            r.get("type") for r in records if r.get("subject") == ticket_id}

    records = [r for r in run(read_topic(stack.kafka_bootstrap, "tickets.events", until=seen))
               if r.get("subject") == ticket_id]
    assert seen(records)
    for r in records:
        assert r["specversion"] == "1.0" and r["id"] and r["source"].startswith("deskstream/")
        assert r["time"] and r["datacontenttype"] == "application/json" and r["_key"] == ticket_id
    types = [r["type"] for r in records]
    assert types.index("deskstream.ticket.created") < types.index("deskstream.ticket.assigned")
    assert len({r["_partition"] for r in records}) == 1  # one ticket, one partition, in order


def test_a_late_first_response_raises_one_breach_and_an_answer_stops_the_clock(stack, agent):
    _, late = file_chat(stack, chat_message())
    _, prompt = file_chat(stack, chat_message())
    with stack.client("tickets") as tickets:
        r = tickets.post(f"/v1/tickets/{prompt}/replies", json={"agent_id": agent, "text": "On its way!"})
        assert r.status_code == 201 and r.json()["status"] == "answered"

    def done(records):
        kinds = {(r["subject"], r["type"]) for r in records if "subject" in r}
        return (late, "deskstream.sla.breached") in kinds and (prompt, "deskstream.sla.met") in kinds

    records = run(read_topic(stack.kafka_bootstrap, "sla.events", until=done, timeout=40))
    assert done(records)
    breaches = [r for r in records if r.get("subject") == late and r["type"] == "deskstream.sla.breached"]
    assert len({r["id"] for r in breaches}) == 1
    assert breaches[0]["data"]["target"] == "first_response"
    assert not [r for r in records if r.get("subject") == prompt and r["type"] == "deskstream.sla.breached"]
    with stack.client("sla") as sla:
        states = {t["target"]: t["state"] for t in sla.get(f"/v1/tickets/{prompt}/sla").json()["targets"]}
    assert states == {"first_response": "met"}


def test_analytics_counts_tickets_per_channel_on_metrics(stack, agent):
    file_chat(stack, chat_message())

    def count():
        with stack.client("analytics", auth=False) as c:
            m = re.search(r'^deskstream_tickets_created_total\{channel="chat"\} (\d+)', c.get("/metrics").text, re.M)
            summary = c.get("/v1/summary").json()
        return m and int(float(m.group(1))) >= 1 and summary["tickets_by_channel"].get("chat", 0) >= 1

    assert poll(count, timeout=30)


def test_agent_endpoints_need_the_token_and_bad_input_gets_a_clear_4xx(stack):
    with stack.client("tickets", auth=False) as anonymous:
        r = anonymous.get("/v1/tickets")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    with stack.client("ingest") as ingest:
        r = ingest.post("/v1/inbound/chat", content=b"{not json", headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500 and "error" in r.json()
        r = ingest.post("/v1/inbound/chat", json={"session_id": "s"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    with stack.client("tickets") as tickets:
        assert tickets.get("/v1/tickets/TK-DOESNOTEXIST").status_code == 404
        assert tickets.get("/v1/tickets", params={"status": "{\"$ne\": null}"}).status_code == 422


def test_a_poison_record_is_dead_lettered_and_the_pipeline_keeps_flowing(stack, agent):
    from aiokafka import AIOKafkaProducer

    marker = b"poison-" + stack.database.encode()

    async def send():
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait("ingest.messages", marker + b" \x00 not json", key=marker)
        finally:
            await producer.stop()

    run(send())
    letters = run(read_topic(stack.kafka_bootstrap, "deadletter",
                             until=lambda rs: any(r.get("data", {}).get("source_key") == marker.decode() for r in rs)))
    letter = next(r for r in letters if r.get("data", {}).get("source_key") == marker.decode())
    assert letter["data"]["source_topic"] == "ingest.messages" and letter["data"]["service"] == "tickets"
    assert letter["data"]["reason"]
    file_chat(stack, chat_message())  # still flowing


@pytest.mark.parametrize("victim", ["tickets", "routing", "sla", "analytics", "ingest"])
def test_no_accepted_message_is_lost_when_a_service_is_killed(stack, agent, victim):
    import httpx

    with stack.client("analytics", auth=False) as c:
        counted_before = c.get("/v1/summary").json()["tickets_total"]
    stack.kill(victim)
    accepted = []
    with stack.client("ingest") as ingest:
        for i in range(10):
            try:
                r = ingest.post("/v1/inbound/chat", json=chat_message(text=f"order question {i}"))
            except httpx.TransportError:
                continue  # ingest itself is down: nothing was accepted
            assert r.status_code == 202
            accepted.append(r.json()["message_id"])
    assert victim == "ingest" or len(accepted) == 10
    stack.restart(victim)
    if not accepted:
        with stack.client("ingest") as ingest:
            accepted = [ingest.post("/v1/inbound/chat", json=chat_message()).json()["message_id"] for _ in range(3)]

    with stack.client("tickets") as tickets, stack.client("sla") as sla:
        def ticket_of(m):
            r = tickets.get(f"/v1/messages/{m}")
            return r.json()["ticket_id"] if r.status_code == 200 else None

        assert poll(lambda: all(ticket_of(m) for m in accepted), timeout=60), "an accepted message was lost"
        ticket_ids = [ticket_of(m) for m in accepted]
        assert len(set(ticket_ids)) == len(accepted)  # one session each: one ticket each, each message once
        assert poll(lambda: all(tickets.get(f"/v1/tickets/{t}").json()["assignee"] == agent for t in ticket_ids),
                    timeout=60), "a ticket was never assigned"
        assert poll(lambda: all(sla.get(f"/v1/tickets/{t}/sla").status_code == 200 for t in ticket_ids), timeout=60)
        for t in ticket_ids:
            ticket = tickets.get(f"/v1/tickets/{t}").json()
            assert len(ticket["messages"]) == 1
            assert [e["type"] for e in ticket["timeline"]].count("assigned") == 1
    with stack.client("analytics", auth=False) as c:
        assert poll(lambda: c.get("/v1/summary").json()["tickets_total"] >= counted_before + len(accepted), timeout=30)


def test_dead_letters_can_be_redriven_once_the_cause_is_fixed(stack, agent):
    """A record dead-lettered for a cause that is later fixed goes back to its topic whole."""
    import json as _json

    from aiokafka import AIOKafkaProducer

    from deploy.redrive import redrive
    from shared.events import EventType, make_event
    from tests.unit.test_ticket_lifecycle import chat

    # a message event whose customer is missing can never be filed: it is dead-lettered
    good = make_event(EventType.MESSAGE_RECEIVED, chat(f"redrive-{stack.database}"), source="test",
                      subject="x").model_dump(mode="json")
    broken = _json.loads(_json.dumps(good))
    del broken["data"]["customer"]
    key = f"redrive-{stack.database}"

    async def send(body):
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait("ingest.messages", _json.dumps(body).encode(), key=key.encode())
        finally:
            await producer.stop()

    run(send(broken))
    assert run(read_topic(stack.kafka_bootstrap, "deadletter",
                          until=lambda rs: any(r.get("data", {}).get("source_key") == key for r in rs)))
    sent, _ = run(redrive(stack.kafka_bootstrap, topic="ingest.messages", service="tickets", dry_run=False, idle_s=2))
    assert sent >= 1  # re-driven: the same bytes fail again and are dead-lettered again, nothing lost
    letters = run(read_topic(stack.kafka_bootstrap, "deadletter",
                             until=lambda rs: sum(r.get("data", {}).get("source_key") == key for r in rs) >= 2))
    assert sum(r.get("data", {}).get("source_key") == key for r in letters) >= 2
