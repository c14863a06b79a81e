"""The analytics HTTP API with the read model in memory (no Kafka, no MongoDB): the real
router and JSON error handlers; the app's lifespan is never started."""
from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from services.analytics import api
from services.analytics.service import SERIES
from shared.http import create_http_app
from tests.unit.test_analytics_domain import T0, Story, minutes
from tests.unit.test_analytics_readmodel import a_morning, new_service, play


@pytest.fixture
def client():
    service = new_service()
    asyncio.run(play(service, a_morning()))
    runtime = SimpleNamespace(settings=SimpleNamespace(api_token=None))
    app = create_http_app(runtime, title="analytics", description="test", routers=[api.build_router(service)])
    return TestClient(app)  # not entered: no lifespan, so nothing connects to Kafka or MongoDB


def test_the_summary_keeps_its_first_keys_and_adds_the_rest(client):
    s = client.get("/v1/summary").json()
    assert s["tickets_total"] == 3 and s["tickets_by_channel"] == {"chat": 1, "email": 1, "whatsapp": 1}
    assert s["sla"]["first_response"] == {"met": 1, "warning": 1, "breached": 1}
    assert s["as_of"].startswith("2026-03-02T12:15:00")
    assert {"backlog", "first_response", "resolution", "agents", "top_tags", "sla_compliance", "channel_mix",
            "window", "last_24h"} <= set(s)
    assert set(s["window"]) == {"from", "to", "days"} and s["window"]["days"] == 7
    assert s["agents"][0]["agent_id"] == "layla" and s["agents"][0]["reopen_rate"] == 0.5


def test_series_answers_whole_buckets_with_a_value_for_each(client):
    r = client.get("/v1/series", params={"metric": "tickets_created", "dimension": "channel", "bucket": "hour",
                                         "from": "2026-03-02T09:00:00Z", "to": "2026-03-02T12:00:00Z"})
    assert r.status_code == 200
    body = r.json()
    assert body["from"].startswith("2026-03-02T09:00:00") and body["to"].startswith("2026-03-02T12:00:00")
    assert len(body["buckets"]) == 3 and body["unit"] == "tickets"
    assert {s["key"]: s["values"] for s in body["series"]} == {"chat": [1, 0, 0], "email": [1, 0, 0],
                                                               "whatsapp": [0, 1, 0]}


def test_series_take_an_offset_written_with_an_unescaped_plus(client):
    # "+03:00" in a query string written by hand arrives as " 03:00"
    r = client.get("/v1/series?metric=tickets_created&bucket=day&from=2026-03-02T03:00:00+03:00"
                   "&to=2026-03-03T03:00:00+03:00")
    assert r.status_code == 200 and r.json()["series"][0]["values"] == [3]


def test_series_default_to_the_last_day_by_hour(client):
    body = client.get("/v1/series", params={"metric": "resolution_seconds"}).json()
    assert len(body["buckets"]) == 24 and body["dimension"] == "none" and body["unit"] == "seconds"
    assert body["series"][0]["key"] == "all" and body["series"][0]["total"] == 1


@pytest.mark.parametrize("metric, dimension", [(m, d) for m, dims in SERIES.items() for d in dims])
def test_every_metric_answers_by_every_dimension_it_names(client, metric, dimension):
    r = client.get("/v1/series", params={"metric": metric, "dimension": dimension, "bucket": "day",
                                         "from": "2026-03-01T00:00:00Z", "to": "2026-03-04T00:00:00Z"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["series"], "the morning has data for every metric"
    assert all(len(s["values"]) == len(body["buckets"]) == 3 for s in body["series"])


@pytest.mark.parametrize("params, code", [
    ({"metric": "tickets_created", "dimension": "agent"}, "invalid_dimension"),
    ({"metric": "sla_compliance", "dimension": "channel"}, "invalid_dimension"),
    ({"metric": "tickets_created", "from": "2026-03-02T09:00:00"}, "invalid_time"),
    ({"metric": "tickets_created", "from": "yesterday"}, "invalid_time"),
    ({"metric": "tickets_created", "from": "2026-03-02T10:00:00Z", "to": "2026-03-02T09:00:00Z"}, "invalid_range"),
    ({"metric": "tickets_created", "bucket": "hour", "from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
     "invalid_range"),
    ({"metric": "tickets_created", "bucket": "day", "from": "0001-01-01T00:00:00+05:00"}, "invalid_range"),
    ({"metric": "tickets_created", "bucket": "day", "from": "9999-12-31T00:00:00Z", "to": "9999-12-31T12:00:00Z"},
     "invalid_range"),
    ({"metric": "tickets_in_space"}, "invalid_request"),
    ({"metric": "tickets_created", "bucket": "week"}, "invalid_request"),
    ({}, "invalid_request"),
])
def test_bad_series_requests_get_a_422_that_says_what_is_wrong(client, params, code):
    r = client.get("/v1/series", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]


def test_the_dashboard_is_a_page_with_its_own_script_and_style_and_a_strict_policy(client):
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "unsafe-inline" not in policy
    assert "<script src=\"/dashboard/app.js\"></script>" in page.text
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page.text)  # no CDN: the machines are offline
    script = client.get("/dashboard/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    # data reaches the page only as text: no HTML parsing of anything the API returned
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", script.text)
    assert "/v1/summary" in script.text and "/v1/series" in script.text
    assert client.get("/dashboard/app.css").headers["content-type"].startswith("text/css")


def test_the_openapi_document_describes_summary_and_series(client):
    doc = client.get("/openapi.json").json()
    assert "/v1/summary" in doc["paths"] and "/v1/series" in doc["paths"]
    params = {p["name"] for p in doc["paths"]["/v1/series"]["get"]["parameters"]}
    assert params == {"metric", "dimension", "bucket", "from", "to"}


def test_a_summary_with_nothing_recorded_yet_is_valid_json():
    runtime = SimpleNamespace(settings=SimpleNamespace(api_token=None))
    app = create_http_app(runtime, title="analytics", description="test", routers=[api.build_router(new_service())])
    s = TestClient(app).get("/v1/summary").json()
    assert s["tickets_total"] == 0 and s["as_of"] is None and s["backlog"]["total"] == 0


def test_tag_names_are_data_not_markup():
    service = new_service()
    story = Story("TK-X", tags=("<img src=x onerror=alert(1)>",)).assign("layla", T0 + minutes(1))
    asyncio.run(play(service, story.events))
    runtime = SimpleNamespace(settings=SimpleNamespace(api_token=None))
    app = create_http_app(runtime, title="analytics", description="test", routers=[api.build_router(service)])
    s = TestClient(app).get("/v1/summary").json()
    # JSON carries it as it is; the page writes it with textContent (checked above and in the browser test)
    assert s["top_tags"] == [{"tag": "<img src=x onerror=alert(1)>", "tickets": 1}]


def test_the_window_is_seven_days_before_as_of(client):
    w = client.get("/v1/summary").json()["window"]
    assert datetime.fromisoformat(w["to"]) - datetime.fromisoformat(w["from"]) == timedelta(days=7)
