"""The admin's duplicate rule (`GET/PUT /v1/settings/duplicates` on analytics): validated, stored, announced
to every analytics process, and applied by the reader to the next new ticket without a restart (the real
router, auth and error handlers over in-memory collections; the app's lifespan is never started)."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from services.analytics import duplicate_rules
from services.analytics.duplicate_rules import DuplicateSettings, DuplicateSettingsChange, DuplicateSettingsStore
from services.analytics.recurring import SimilarTickets
from shared import topics
from shared.events import EventType
from shared.http import create_http_app, require_token
from tests.unit.memory import MemoryMongo, Records, SentRecords, run
from tests.unit.test_duplicates_problems import T0
from tests.unit.test_tickets_processor import Stack, chat

ADMIN = {"Authorization": "Bearer s3cret"}
AGENT = {"Authorization": "Bearer agent-pw"}


class Runtime(SimpleNamespace):
    async def announce_settings(self, what: str) -> None:
        self.announced.append(what)


@pytest.fixture
def client():
    runtime = Runtime(
        settings=SimpleNamespace(api_token=SecretStr("s3cret"), agent_token=SecretStr("agent-pw")),
        source="deskstream/analytics",
        announced=[],
    )
    store = DuplicateSettingsStore(MemoryMongo(), DuplicateSettings(suspect_above=0.45, merge_above=None))
    applied: list[DuplicateSettings] = []
    app = create_http_app(
        runtime,
        title="analytics",
        description="test",
        routers=[
            duplicate_rules.build_router(
                store=store,
                auth=require_token(runtime),
                apply=applied.append,
                announce=lambda: runtime.announce_settings("duplicates"),
            )
        ],
    )
    client = TestClient(app)
    client.runtime, client.store, client.applied = runtime, store, applied
    return client


def test_until_an_admin_sets_the_rule_the_environments_defaults_hold(client):
    r = client.get("/v1/settings/duplicates", headers=ADMIN)
    assert r.status_code == 200 and r.json() == {"suspect_above": 0.45, "merge_above": None}


def test_only_an_admin_reads_or_changes_the_rule(client):
    assert client.get("/v1/settings/duplicates").status_code == 401
    assert client.get("/v1/settings/duplicates", headers=AGENT).status_code == 403
    assert client.put("/v1/settings/duplicates", json={"merge_above": 0.8}, headers=AGENT).status_code == 403
    assert client.runtime.announced == []


async def test_an_admin_sets_auto_merge_and_every_process_is_told(client):
    r = client.put("/v1/settings/duplicates", json={"merge_above": 0.8}, headers=ADMIN)
    assert r.status_code == 200 and r.json() == {"suspect_above": 0.45, "merge_above": 0.8}
    assert client.runtime.announced == ["duplicates"]
    assert [a.merge_above for a in client.applied] == [0.8]  # the answering process judges by it at once
    assert (await client.store.settings()).merge_above == 0.8  # stored: a restarted process reads it
    r = client.put("/v1/settings/duplicates", json={"suspect_above": 0.5}, headers=ADMIN)
    assert r.json() == {"suspect_above": 0.5, "merge_above": 0.8}  # a field left out keeps its value
    r = client.put("/v1/settings/duplicates", json={"merge_above": None}, headers=ADMIN)
    assert r.json() == {"suspect_above": 0.5, "merge_above": None}  # null: never merge


@pytest.mark.parametrize(
    "body",
    [
        {"merge_above": 1.5},
        {"merge_above": -0.1},
        {"suspect_above": "high"},
        {"suspect_above": None},
        {"merge_above": 0.3},  # below suspect_above (0.45): only a suspected duplicate can be merged
    ],
)
def test_a_score_outside_0_to_1_or_a_merge_below_suspicion_is_refused(client, body):
    r = client.put("/v1/settings/duplicates", json=body, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert client.runtime.announced == []
    assert client.get("/v1/settings/duplicates", headers=ADMIN).json() == {"suspect_above": 0.45, "merge_above": None}


def test_a_change_names_only_what_it_changes():
    rule = DuplicateSettings(suspect_above=0.45, merge_above=0.9)
    assert rule.merged(DuplicateSettingsChange.model_validate({})) == rule
    assert rule.merged(DuplicateSettingsChange.model_validate({"merge_above": None})).merge_above is None


async def test_the_reader_merges_a_repeat_once_the_rule_says_so_without_a_restart():
    stack = Stack()
    await stack.file(chat("m1", session="s1", text="order 558812: my kettle arrived cracked"))
    await stack.file(chat("m2", session="s2", text="the kettle of order 558812 is damaged"))
    await stack.file(chat("m3", session="s3", text="order 661245: the blender leaks"))
    await stack.file(chat("m4", session="s4", text="my blender from order 661245 is leaking"))
    created = [e for e in stack.sent.events(topics.TICKETS_EVENTS) if e["type"] == EventType.TICKET_CREATED]
    now = T0 + timedelta(minutes=1)
    sent = SentRecords()
    similar = SimilarTickets(producer=sent, source="test", clock=lambda: now)
    records = Records()
    await run(similar, *(records.record(topics.TICKETS_EVENTS, e["type"], e["data"], at=now) for e in created[:2]))
    assert [c["type"] for c in sent.events(topics.TICKETS_COMMANDS)] == [EventType.SUSPECT_DUPLICATE]

    similar.apply(DuplicateSettings(suspect_above=0.45, merge_above=0.5))  # what an announcement makes it read
    await run(similar, *(records.record(topics.TICKETS_EVENTS, e["type"], e["data"], at=now) for e in created[2:]))
    assert [c["type"] for c in sent.events(topics.TICKETS_COMMANDS)][1:] == [
        EventType.SUSPECT_DUPLICATE,
        EventType.MERGE_TICKET,
        EventType.CLOSE_MERGED_TICKET,
    ]
