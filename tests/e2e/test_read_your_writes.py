"""Read your writes across tickets processes: the test stack runs two of them, each serving the API on
the shared port and on a port of its own. An agent's reply answered 201 by one process is seen at once
by a read served by the other — the ticket, its messages and the lists — whichever owns the ticket; and settings an
admin saves through one process apply at once on the others."""
from __future__ import annotations

import uuid

import httpx

from deploy.local import stack as stackctl
from tests.conftest import SERVICE_PORT_OFFSET
from tests.e2e.helpers import chat_message, file_chat, poll


def instance(stack, n: int) -> httpx.Client:
    port = stackctl.instance_port("tickets", n, SERVICE_PORT_OFFSET)
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {stack.token}"},
                        timeout=10)


def test_a_reply_answered_by_one_tickets_process_is_read_at_once_from_the_other(stack, agent):
    one, two = instance(stack, 1), instance(stack, 2)
    with one, two:
        health = [client.get("/healthz").json() for client in (one, two)]
        assert [h["status"] for h in health] == ["ok", "ok"]
        assert health[0]["instance"] != health[1]["instance"]  # two processes, not one answering on both ports
        for n in range(6):  # tickets land on different partitions, so on either owner
            writer, reader = (one, two) if n % 2 == 0 else (two, one)
            _, ticket_id = file_chat(stack, chat_message(text=f"Where is parcel {n}?"))
            text = f"Your parcel {n} left the depot this morning."
            r = writer.post(f"/v1/tickets/{ticket_id}/replies", json={"agent_id": agent, "text": text})
            assert r.status_code == 201, r.text
            ticket = reader.get(f"/v1/tickets/{ticket_id}")
            assert ticket.status_code == 200, ticket.text
            body = ticket.json()
            assert [m["text"] for m in body["messages"]][-1] == text
            assert body["status"] == "answered"
            listed = reader.get("/v1/tickets", params={"status": "answered", "limit": 200}).json()
            assert ticket_id in [t["id"] for t in listed["items"]]


def routing_instance(stack, n: int) -> httpx.Client:
    port = stackctl.instance_port("routing", n, SERVICE_PORT_OFFSET)
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {stack.token}"},
                        timeout=10)


def test_a_rule_saved_through_one_routing_process_applies_at_once_on_the_other(stack, agent):
    word = f"warm{uuid.uuid4().hex[:6]}"
    tag = f"rule-{uuid.uuid4().hex[:6]}"
    # both routing processes read (and cache) the rules for tickets of their partitions
    warm = [file_chat(stack, chat_message(text=f"{word} hello {n}"))[1] for n in range(6)]
    with routing_instance(stack, 1) as one, instance(stack, 1) as tickets:
        rule = {"name": "Tag at once", "order": 5, "when": {"text_any": [f"now{word}"]}, "then": {"add_tags": [tag]}}
        assert one.put(f"/v1/rules/{tag}", json=rule).status_code == 200
        try:
            filed = [file_chat(stack, chat_message(text=f"now{word} where is it? {n}"))[1] for n in range(6)]
            for ticket_id in filed:  # on either process's partitions
                tagged = poll(lambda t=ticket_id: tag in tickets.get(f"/v1/tickets/{t}").json()["tags"], timeout=10)
                assert tagged, f"{ticket_id} was routed with the rules as they were before the change"
            assert all(tag not in tickets.get(f"/v1/tickets/{t}").json()["tags"] for t in warm)
        finally:
            one.delete(f"/v1/rules/{tag}")
