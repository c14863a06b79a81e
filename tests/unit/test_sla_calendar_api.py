"""The calendar endpoints of SLA over HTTP, with the calendars kept in memory (no Kafka, no MongoDB):
the real router, auth and JSON error handlers; the app's lifespan is never started."""
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from services.sla import api
from shared.http import create_http_app, require_token

TOKEN = {"Authorization": "Bearer s3cret"}
RIYADH = {"timezone": "Asia/Riyadh", "hours": {"thu": [["09:00", "17:00"]], "sun": [["09:00", "17:00"]]},
          "holidays": ["2026-12-25"]}


class CalendarsInMemory:
    def __init__(self):
        self.calendars = {}

    async def put_calendar(self, calendar_id, calendar):
        self.calendars[calendar_id] = calendar

    async def get_calendar(self, calendar_id):
        return self.calendars.get(calendar_id)


@pytest.fixture
def client():
    runtime = SimpleNamespace(settings=SimpleNamespace(api_token=SecretStr("s3cret"), agent_token=SecretStr("agent-pw")))
    router = api.build_router(service=None, store=CalendarsInMemory(), auth=require_token(runtime))
    app = create_http_app(runtime, title="sla", description="test", routers=[router])
    client = TestClient(app)  # not entered: no lifespan, so nothing connects to Kafka or MongoDB
    assert client.put("/v1/calendars/riyadh", json=RIYADH, headers=TOKEN).status_code == 200
    return client


def test_a_stored_calendar_is_answered_back(client):
    answer = client.get("/v1/calendars/riyadh", headers=TOKEN)
    assert answer.status_code == 200
    # stored in week order: Sunday first
    assert answer.json() == {"id": "riyadh", **RIYADH,
                             "hours": {"sun": [["09:00", "17:00"]], "thu": [["09:00", "17:00"]]}}


def test_due_tells_when_a_friday_evening_request_will_be_answered(client):
    answer = client.get("/v1/calendars/riyadh/due", params={"start": "2026-03-27T18:00:00+03:00", "seconds": 3600},
                        headers=TOKEN)
    assert answer.status_code == 200
    assert answer.json() == {"due": "2026-03-29T10:00:00+03:00"}


def test_due_accepts_a_utc_start_and_answers_in_the_calendars_zone(client):
    answer = client.get("/v1/calendars/riyadh/due", params={"start": "2026-03-27T15:00:00Z", "seconds": 0},
                        headers=TOKEN)
    assert answer.json() == {"due": "2026-03-29T09:00:00+03:00"}


@pytest.mark.parametrize("query, code", [
    ({"start": "2026-03-27T18:00:00", "seconds": 60}, "invalid_start"),  # no time zone
    ({"start": "2026-03-27T18:00:00 03:00", "seconds": 60}, "invalid_start"),  # '+' sent unescaped
    ({"start": "next friday", "seconds": 60}, "invalid_start"),
    ({"start": "2026-03-27T18:00:00Z", "seconds": -1}, "invalid_request"),
    ({"start": "2026-03-27T18:00:00Z", "seconds": "an hour"}, "invalid_request"),
    ({"start": "2026-03-27T18:00:00Z"}, "invalid_request"),
    ({"start": "2026-03-27T18:00:00Z", "seconds": 10**15}, "invalid_request"),
])
def test_a_bad_start_or_seconds_is_a_422_json_error(client, query, code):
    answer = client.get("/v1/calendars/riyadh/due", params=query, headers=TOKEN)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == code


def test_an_unknown_calendar_is_a_404_json_error(client):
    for path in ("/v1/calendars/nowhere", "/v1/calendars/nowhere/due?start=2026-03-27T18:00:00Z&seconds=1"):
        answer = client.get(path, headers=TOKEN)
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"


def test_an_invalid_calendar_is_refused_with_the_reason(client):
    answer = client.put("/v1/calendars/bad", json={"timezone": "Mars/Base", "hours": {"mon": [["09:00", "17:00"]]}},
                        headers=TOKEN)
    assert answer.status_code == 422
    assert "unknown time zone 'Mars/Base'" in str(answer.json()["error"]["details"])


def test_calendars_need_the_bearer_token(client):
    assert client.get("/v1/calendars/riyadh").json()["error"]["code"] == "unauthorized"
    assert client.put("/v1/calendars/riyadh", json=RIYADH).status_code == 401


def test_an_agent_token_reads_calendars_but_only_the_admin_token_changes_them(client):
    agent = {"Authorization": "Bearer agent-pw"}
    assert client.get("/v1/calendars/riyadh", headers=agent).status_code == 200
    r = client.put("/v1/calendars/riyadh", json=RIYADH, headers=agent)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert client.put("/v1/calendars/riyadh", json=RIYADH, headers={"Authorization": "Bearer nope"}).status_code == 401
