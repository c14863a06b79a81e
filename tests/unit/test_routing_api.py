"""Routing's admin API over HTTP (the real router, auth and error handlers; the store over in-memory
collections, the dispatcher of test_routing_dispatch answering what the API sends it; the app's
lifespan is never started)."""
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from services.routing import api
from shared.http import create_http_app, require_token
from tests.unit.test_routing_dispatch import Routing


class Runtime(SimpleNamespace):
    """What the API asks of its runtime: sending to `routing.dispatch` reaches the dispatcher at once."""

    async def send(self, records) -> None:
        await self.routing.sent.send_many(records)
        await self.routing.deliver()
        await self.routing.dispatcher.publish_view()

    async def announce_settings(self, what: str) -> None:
        self.announced.append(what)
        self.routing.store.drop(what)

ADMIN = {"Authorization": "Bearer s3cret"}
AGENT = {"Authorization": "Bearer agent-pw"}
RETURNS = {"title": "Returning an item", "language": "en", "keywords": ["return"],
           "body": "Print the return label from your account.", "questions": ["How do I return an item?"]}


@pytest.fixture
def client():
    routing = Routing()
    runtime = Runtime(settings=SimpleNamespace(api_token=SecretStr("s3cret"), agent_token=SecretStr("agent-pw")),
                      source="deskstream/routing", routing=routing, announced=[])
    app = create_http_app(runtime, title="routing", description="test",
                          routers=[api.build_router(routing.store, runtime, require_token(runtime))])
    client = TestClient(app)
    client.routing = routing
    return client


def test_the_contracts_agent_body_still_works_and_levels_and_hours_are_optional(client):
    plain = {"name": "Layla", "skills": ["returns"], "languages": ["ar"], "channels": ["chat"], "capacity": 3}
    r = client.put("/v1/agents/layla", json=plain, headers=ADMIN)
    assert r.status_code == 200 and r.json()["skills"] == ["returns"] and r.json()["working_hours"] is None
    r = client.put("/v1/agents/omar", headers=ADMIN, json={
        **plain, "skills": ["returns:4"], "team": "billing",
        "working_hours": {"timezone": "Asia/Riyadh", "hours": {"sun": [["09:00", "17:00"]]}}})
    assert r.status_code == 200 and r.json()["working_hours"]["timezone"] == "Asia/Riyadh"
    r = client.put("/v1/agents/bad", json={**plain, "skills": ["returns:9"]}, headers=ADMIN)
    assert r.status_code == 422 and "levels are 1 to 5" in r.text
    assert client.put("/v1/agents/x", json=plain, headers=AGENT).status_code == 403


def test_articles_are_stored_found_and_deleted(client):
    assert client.put("/v1/kb/articles/returns-policy", json=RETURNS, headers=ADMIN).status_code == 200
    assert client.get("/v1/kb/articles/returns-policy", headers=AGENT).json() == {"id": "returns-policy", **RETURNS}
    found = client.get("/v1/kb/search", params={"q": "how do I return an item?"}, headers=AGENT).json()["items"]
    assert found == [{"id": "returns-policy", "title": "Returning an item", "language": "en", "score": 1.0}]
    assert client.get("/v1/kb/search", params={"q": "return", "language": "ar"}, headers=AGENT).json() == {"items": []}
    assert client.put("/v1/kb/articles/x", json=RETURNS, headers=AGENT).status_code == 403
    assert client.put("/v1/kb/articles/x", json={**RETURNS, "body": ""}, headers=ADMIN).status_code == 422
    assert client.delete("/v1/kb/articles/returns-policy", headers=ADMIN).status_code == 204
    assert client.get("/v1/kb/articles/returns-policy", headers=ADMIN).status_code == 404
    assert client.delete("/v1/kb/articles/returns-policy", headers=ADMIN).status_code == 404


def test_escalations_are_stored_listed_in_order_and_deleted(client):
    late = {"name": "Breach to leads", "order": 20, "on": ["breached"], "then": {"priority": "urgent", "team": "leads"}}
    warn = {"name": "Warn", "order": 10, "on": ["warning"], "when": {"targets": ["first_response"]},
            "then": {"priority": "high"}}
    assert client.put("/v1/escalations/late", json=late, headers=ADMIN).status_code == 200
    assert client.put("/v1/escalations/warn", json=warn, headers=ADMIN).status_code == 200
    listed = client.get("/v1/escalations", headers=AGENT).json()["items"]
    assert [e["id"] for e in listed] == ["warn", "late"]
    assert client.put("/v1/escalations/none", json={**late, "then": {}}, headers=ADMIN).status_code == 422
    assert client.put("/v1/escalations/when", json={**late, "on": ["later"]}, headers=ADMIN).status_code == 422
    assert client.delete("/v1/escalations/late", headers=ADMIN).status_code == 204
    assert [e["id"] for e in client.get("/v1/escalations", headers=AGENT).json()["items"]] == ["warn"]


def test_a_rule_can_answer_from_the_knowledge_base(client):
    rule = {"name": "FAQ", "when": {"channel": ["chat"]}, "then": {"answer_from_kb": {"min_score": 0.7}}}
    r = client.put("/v1/rules/faq", json=rule, headers=ADMIN)
    assert r.status_code == 200 and r.json()["then"]["answer_from_kb"] == {"min_score": 0.7}
    bad = {**rule, "then": {"answer_from_kb": {"min_score": 2}}}
    assert client.put("/v1/rules/faq", json=bad, headers=ADMIN).status_code == 422



async def test_the_queue_lists_waiting_tickets_urgent_first(client):
    from tests.unit.test_routing_dispatch import ticket

    assert client.get("/v1/queue", headers=AGENT).json() == {"items": [], "length": 0}
    await client.routing.created(ticket("t-normal"), "hello")  # no agent yet: both wait
    await client.routing.created(ticket("t-urgent", priority="urgent", language="ar"), "مرحبا")
    body = client.get("/v1/queue", headers=AGENT).json()
    assert body["length"] == 2 and [i["ticket_id"] for i in body["items"]] == ["t-urgent", "t-normal"]
    assert body["items"][0]["needs"] == {"channel": "chat", "language": "ar", "skills": [], "team": None}
