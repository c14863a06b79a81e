"""The body-size limit of the agent and admin API: 413 with the JSON error before a body over the
limit is read, whether it says its length or streams; endpoints that need more, or read their own
body with their own limit (the inbound doors), say so."""
import base64
import json
from types import SimpleNamespace

import httpx
import pytest
from fastapi import APIRouter, Request
from pydantic import SecretStr

from services.tickets import api as tickets_api
from shared.bodylimit import BodyLimit, BodyTooLarge, body_limit
from shared.http import create_http_app, require_token

MiB = 1024 * 1024
RUNTIME = SimpleNamespace(settings=SimpleNamespace(api_token=SecretStr("s3cret-s3cret-s3cret"), agent_token=None))


def app_with_endpoints(seen: list[int]):
    router = APIRouter()

    @router.put("/v1/rules/{rule_id}")
    async def put_rule(rule_id: str, body: dict) -> dict:
        seen.append(len(json.dumps(body)))
        return {"id": rule_id}

    @router.post("/v1/uploads")
    @body_limit(5 * MiB)
    async def upload(request: Request) -> dict:
        seen.append(len(await request.body()))
        return {"size": seen[-1]}

    @router.post("/v1/inbound/own")
    @body_limit(None)
    async def door(request: Request) -> dict:
        seen.append(len(await request.body()))
        return {"size": seen[-1]}

    return create_http_app(RUNTIME, title="t", description="t", routers=[router])


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def chunks(total: int, size: int = 64 * 1024):
    async def stream():
        for start in range(0, total, size):
            yield b"x" * min(size, total - start)
    return stream()


async def test_a_body_over_the_limit_is_refused_with_413_and_the_json_error():
    seen: list[int] = []
    async with client(app_with_endpoints(seen)) as http:
        big = await http.put("/v1/rules/r1", content=json.dumps({"x": "y" * (2 * MiB)}),
                             headers={"content-type": "application/json"})
        small = await http.put("/v1/rules/r1", json={"x": "y" * 1000})
    assert big.status_code == 413
    assert big.json() == {"error": {"code": "too_large",
                                    "message": f"the body is larger than this endpoint takes ({MiB} bytes)"}}
    assert small.status_code == 200 and seen == [len(json.dumps({"x": "y" * 1000}))]  # the big one never ran


async def test_a_streamed_body_without_a_length_is_counted_and_cut_off():
    seen: list[int] = []
    async with client(app_with_endpoints(seen)) as http:
        streamed = await http.put("/v1/rules/r1", content=chunks(3 * MiB), headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "too_large"
    assert seen == []


async def test_nothing_past_the_limit_is_pulled_from_the_client():
    pulled = []

    async def receive():
        pulled.append(1)
        return {"type": "http.request", "body": b"x" * (400 * 1024), "more_body": len(pulled) < 10}

    async def app(scope, receive, send):  # an endpoint reading its whole body
        while (await receive()).get("more_body"):
            pass

    with pytest.raises(BodyTooLarge) as refused:
        await BodyLimit(app)({"type": "http", "method": "POST", "path": "/v1/x", "headers": []}, receive, None)
    assert len(pulled) == 3  # 1.2 MB: over 1 MiB, and no further
    assert refused.value.status_code == 413


async def test_a_length_over_the_limit_is_refused_before_the_first_byte():
    pulled = []

    async def receive():
        pulled.append(1)
        return {"type": "http.request", "body": b"x", "more_body": False}

    async def app(scope, receive, send):
        await receive()

    scope = {"type": "http", "method": "POST", "path": "/v1/x", "headers": [(b"content-length", b"2000000")]}
    with pytest.raises(BodyTooLarge):
        await BodyLimit(app)(scope, receive, None)
    assert pulled == []


async def test_an_endpoint_may_take_more_or_limit_its_body_itself():
    seen: list[int] = []
    async with client(app_with_endpoints(seen)) as http:
        upload = await http.post("/v1/uploads", content=b"x" * (4 * MiB))
        streamed = await http.post("/v1/uploads", content=chunks(4 * MiB))
        too_big = await http.post("/v1/uploads", content=b"x" * (6 * MiB))
        own = await http.post("/v1/inbound/own", content=chunks(12 * MiB))
    assert [upload.status_code, streamed.status_code, too_big.status_code, own.status_code] == [200, 200, 413, 200]
    assert seen == [4 * MiB, 4 * MiB, 12 * MiB]


class Reached(Exception):
    """The reply's files got past the body limit and were decoded: the endpoint is storing them."""


class Deliveries:
    async def put_blob(self, data, *_):
        raise Reached(len(data))


async def test_a_reply_with_its_ten_megabytes_of_attachments_reaches_the_endpoint_a_note_as_big_does_not():
    router = tickets_api.build_router(None, Deliveries(), None, None, require_token(RUNTIME), publish_customer=None)
    app = create_http_app(RUNTIME, title="t", description="t", routers=[router])
    per_file = tickets_api.MAX_REPLY_FILES_BYTES // 10
    files = [{"filename": f"photo-{n}.jpg", "media_type": "image/jpeg",
              "content_base64": base64.b64encode(b"x" * per_file).decode()} for n in range(10)]
    reply = {"agent_id": "layla", "text": "t" * 100_000, "html": "<p>" + "h" * 400_000 + "</p>", "attachments": files}
    auth = {"authorization": f"Bearer {RUNTIME.settings.api_token.get_secret_value()}"}
    async with client(app) as http:
        with pytest.raises(Reached):
            await http.post("/v1/tickets/TK-1/replies", json=reply, headers=auth)
        note = await http.post("/v1/tickets/TK-1/notes", json={"author": "layla", "text": "t" * (2 * MiB)},
                               headers=auth)
    assert note.status_code == 413 and note.json()["error"]["code"] == "too_large"
