"""Every agent and admin endpoint of tickets, routing, SLA and analytics, fuzzed from its own
OpenAPI document (schemathesis) against the running services on real Kafka and FerretDB: whatever
a client sends, the answer is never a 5xx and every refusal is our JSON error naming the problem.

Runs after the rest of the suite (it creates agents, rules and tickets at random, which would
disturb tests that count them). `API_FUZZ_SCALE=10` explores ten times as many examples."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

SCALE = int(os.environ.get("API_FUZZ_SCALE", "1"))
FUZZ = settings(max_examples=15 * SCALE, deadline=None, database=None, derandomize=SCALE == 1,
                suppress_health_check=list(HealthCheck))

pytestmark = pytest.mark.runs_last(order=2)  # after the poison records: it leaves random rules and agents


DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi"  # the same as each app's /openapi.json (test_contract_documents)


def schema(service: str):
    return schemathesis.openapi.from_path(DOCS / f"{service}.json")


def answered_well(case, stack, service: str) -> None:
    response = case.call(base_url=stack.urls[service], headers={"Authorization": f"Bearer {stack.token}"}, timeout=60)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:500]}"
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["code"] and error["message"], response.text


def fuzzed(service: str):
    """One test per service: each operation of its OpenAPI document, as schemathesis generates it."""
    @schema(service).parametrize()
    @FUZZ
    def test(case, stack):
        answered_well(case, stack, service)

    return test


test_tickets_api_never_answers_5xx = fuzzed("tickets")
test_routing_api_never_answers_5xx = fuzzed("routing")
test_sla_api_never_answers_5xx = fuzzed("sla")
test_analytics_api_never_answers_5xx = fuzzed("analytics")
