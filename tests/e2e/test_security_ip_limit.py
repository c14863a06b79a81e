"""The per-address limit at the doors, over the real stack: a host that floods them is refused with
429 and `Retry-After` before its bodies are read; other hosts, and this machine, keep getting in."""
from __future__ import annotations

import random

import pytest

from services.ingest.settings import IngestSettings

pytestmark = pytest.mark.e2e


def test_one_address_over_its_limit_gets_429_and_others_still_get_in(stack):
    settings = IngestSettings()  # what the services read from the same environment
    if settings.ip_rate_limit_per_min <= 0:
        pytest.skip("INGEST_IP_RATE_LIMIT_PER_MIN=0 on this stack")
    # uvicorn takes the client address from X-Forwarded-For when the peer is loopback (a proxy)
    flooder = {"x-forwarded-for": f"203.0.113.{random.randrange(1, 255)}", "content-type": "message/rfc822"}
    neighbour = {**flooder, "x-forwarded-for": f"198.51.100.{random.randrange(1, 255)}"}
    with stack.client("ingest", auth=False) as ingest:
        answers = []
        # empty mails: refused (422) once read, so each costs the flooder a token and files nothing
        while len(answers) < 3 * settings.ip_rate_limit_burst:
            answers.append(ingest.post("/v1/inbound/email", content=b"", headers=flooder))
            if answers[-1].status_code == 429:
                break
        refused = answers[-1]
        assert refused.status_code == 429, "the flooding address was never limited"
        assert {a.status_code for a in answers[:-1]} == {422}
        assert len(answers) > settings.ip_rate_limit_burst  # its burst first, whole
        assert refused.json()["error"]["code"] == "rate_limited" and int(refused.headers["retry-after"]) >= 1

        assert ingest.post("/v1/inbound/email", content=b"", headers=neighbour).status_code == 422
        assert ingest.post("/v1/inbound/email", content=b"",
                           headers={"content-type": "message/rfc822"}).status_code == 422  # loopback itself
