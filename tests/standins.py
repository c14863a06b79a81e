"""Local stand-ins for the messaging providers deskstream sends through, served over real
HTTP so the adapters are exercised end to end: Twilio's Messages API, the WhatsApp Cloud
API, and a webhook receiver for social and voice replies. They check what the real
providers check (credentials, required fields, number formats) and answer with the real
providers' error shapes and codes; switches simulate outages and rate limits."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

E164_DIGITS = range(8, 16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Providers:
    """What the stand-ins received, and switches that make them fail."""

    twilio_sid: str = "AC" + "0" * 32
    twilio_token: str = "twilio-secret"
    twilio_key_sid: str = "SK" + "1" * 32
    twilio_key_secret: str = "twilio-key-secret"
    whatsapp_token: str = "whatsapp-secret"
    webhook_secret: str = "hook-secret"
    sms: list[dict[str, Any]] = field(default_factory=list)
    whatsapp: list[dict[str, Any]] = field(default_factory=list)
    hooks: list[dict[str, Any]] = field(default_factory=list)
    outage: int = 0  # answer this many more requests with 503
    rate_limited: int = 0  # answer this many more requests with 429
    # wa_ids whose 24-hour customer-service window is closed (free-form text is refused)
    closed_windows: set[str] = field(default_factory=set)
    # phone numbers that replied STOP (Twilio refuses to message them)
    unsubscribed: set[str] = field(default_factory=lambda: {"+15005550004"})
    url: str = ""

    def _trouble(self, kind: str) -> JSONResponse | None:
        if self.outage > 0:
            self.outage -= 1
            return JSONResponse({"code": 20500, "message": "Internal Server Error", "status": 503}
                                if kind == "twilio" else
                                {"error": {"message": "Service temporarily unavailable", "type": "OAuthException",
                                           "code": 131016, "fbtrace_id": secrets.token_hex(6)}}, 503)
        if self.rate_limited > 0:
            self.rate_limited -= 1
            return JSONResponse({"code": 20429, "message": "Too Many Requests", "status": 429}
                                if kind == "twilio" else
                                {"error": {"message": "(#130429) Rate limit hit", "type": "OAuthException",
                                           "code": 130429, "fbtrace_id": secrets.token_hex(6)}}, 429)
        return None

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/2010-04-01/Accounts/{sid}/Messages.json")
        async def twilio_send(sid: str, request: Request) -> JSONResponse:
            accepted = {"Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
                        for user, password in ((self.twilio_sid, self.twilio_token),
                                               (self.twilio_key_sid, self.twilio_key_secret))}
            if sid != self.twilio_sid or request.headers.get("authorization") not in accepted:
                return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, 401)
            if trouble := self._trouble("twilio"):
                return trouble
            form = await request.form()
            to, body = form.get("To"), form.get("Body")
            sender = form.get("From") or form.get("MessagingServiceSid")

            def error(code: int, message: str) -> JSONResponse:
                return JSONResponse({"code": code, "message": message, "status": 400,
                                     "more_info": f"errors/{code}"}, 400)
            if not to:
                return error(21604, "A 'To' phone number is required.")
            if not sender:
                return error(21603, "A 'From' phone number is required.")
            if not body:
                return error(21602, "Message body is required.")
            if not (str(to).startswith("+") and str(to)[1:].isdigit() and len(str(to)) - 1 in E164_DIGITS):
                return error(21211, f"The 'To' number {to} is not a valid phone number.")
            if to in self.unsubscribed:
                return error(21610, "Attempt to send to unsubscribed recipient")
            message = {"sid": "SM" + secrets.token_hex(16), "account_sid": sid, "to": to, "from": sender,
                       "body": body, "status": "queued", "direction": "outbound-api", "num_segments": "1",
                       "error_code": None, "error_message": None,
                       "status_callback": form.get("StatusCallback"),
                       "date_created": time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())}
            self.sms.append(message)
            return JSONResponse(message, 201)

        @app.post("/{version}/{phone_number_id}/messages")
        async def whatsapp_send(version: str, phone_number_id: str, request: Request) -> JSONResponse:
            def error(status: int, code: int, message: str) -> JSONResponse:
                return JSONResponse({"error": {"message": message, "type": "OAuthException", "code": code,
                                               "fbtrace_id": secrets.token_hex(6)}}, status)
            if request.headers.get("authorization") != f"Bearer {self.whatsapp_token}":
                return error(401, 190, "Invalid OAuth access token - Cannot parse access token")
            if trouble := self._trouble("whatsapp"):
                return trouble
            try:
                payload = await request.json()
            except ValueError:
                return error(400, 100, "(#100) Invalid parameter")
            if payload.get("messaging_product") != "whatsapp":
                return error(400, 100, "(#100) The parameter messaging_product is required.")
            to = str(payload.get("to") or "")
            if not to.lstrip("+").isdigit():
                return error(400, 131009, "(#131009) Parameter value is not valid")
            if payload.get("type") == "text" and not (payload.get("text") or {}).get("body"):
                return error(400, 131008, "(#131008) Required parameter is missing")
            if to.lstrip("+") in self.closed_windows and payload.get("type") != "template":
                return error(400, 131047, "Re-engagement message: more than 24 hours have passed since the "
                                          "recipient last replied")
            wamid = "wamid." + base64.b64encode(secrets.token_bytes(24)).decode()
            self.whatsapp.append({"id": wamid, "phone_number_id": phone_number_id, **payload})
            return JSONResponse({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
                                 "messages": [{"id": wamid}]})

        @app.post("/hooks/outbound")
        async def webhook(request: Request) -> JSONResponse:
            raw = await request.body()
            expected = "sha256=" + hmac.new(self.webhook_secret.encode(), raw, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(request.headers.get("x-deskstream-signature", ""), expected):
                return JSONResponse({"error": "bad signature"}, 401)
            if trouble := self._trouble("webhook"):
                return trouble
            self.hooks.append({"idempotency_key": request.headers.get("idempotency-key"),
                               **(await request.json())})
            return JSONResponse({"id": f"hook-{len(self.hooks)}"})

        return app


class ProviderServer:
    """The stand-ins on a free local port, in a thread of their own."""

    def __init__(self, providers: Providers | None = None) -> None:
        self.providers = providers or Providers()
        self.port = free_port()
        self.providers.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(self.providers.app(), host="127.0.0.1", port=self.port,
                                                     lifespan="off", log_level="warning"))
        self._thread = threading.Thread(target=lambda: asyncio.run(self._server.serve()), daemon=True)

    def __enter__(self) -> Providers:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the provider stand-ins did not start")
            time.sleep(0.02)
        return self.providers

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
