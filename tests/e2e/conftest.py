"""The five services as separate processes on the test stack (ports 18001..18005)."""
from __future__ import annotations

import dataclasses
import os
import uuid

import httpx
import pytest

from deploy.local import stack as stackctl
from tests.conftest import SERVICE_PORT_OFFSET, SLOT, TEST_PORTS, TEST_STATE
from tests.standins import ProviderServer

SERVICES = ("ingest", "tickets", "routing", "sla", "analytics")
TOKEN = "e2e-" + uuid.uuid4().hex
SMTP_PORT = 18025 - 1000 * SLOT
SMTP_DOOR_PORT = stackctl.smtp_port(SERVICE_PORT_OFFSET)  # ingest's SMTP door on the test stack


@dataclasses.dataclass
class Stack:
    kafka_bootstrap: str
    database: str
    urls: dict[str, str]
    token: str

    def client(self, service: str, *, auth: bool = True) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        return httpx.Client(base_url=self.urls[service], headers=headers, timeout=10)

    def restart(self, *names: str) -> None:
        stackctl.up(state_dir=TEST_STATE, port_offset=SERVICE_PORT_OFFSET, only=list(names) or None,
                    quiet=True, **TEST_PORTS)

    def kill(self, name: str) -> None:
        stackctl.kill(name, state_dir=TEST_STATE, quiet=True)


class Mailbox:
    """A real SMTP server (aiosmtpd) the services mail replies to; keeps every mail it receives.
    `down()` and `up()` take it off the network and bring it back (delivery retry tests)."""

    def __init__(self) -> None:
        self.mails: list[bytes] = []
        self.controller = None

    def up(self) -> None:
        from aiosmtpd.controller import Controller

        self.controller = Controller(self, hostname="127.0.0.1", port=SMTP_PORT)
        self.controller.start()

    def down(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.mails.append(envelope.original_content or envelope.content)
        return "250 OK"


@pytest.fixture(scope="session")
def mailbox():
    box = Mailbox()
    box.up()
    yield box
    box.down()


@pytest.fixture(scope="session")
def providers():
    """Stand-ins for Twilio, the WhatsApp Cloud API and a social webhook receiver."""
    with ProviderServer() as p:
        yield p


@pytest.fixture(scope="session")
def stack(infra, mailbox, providers):
    database = f"e2e_{uuid.uuid4().hex[:10]}"
    os.environ.update({"MONGODB_DATABASE": database, "DESKSTREAM_API_TOKEN": TOKEN,
                       "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap, "MONGODB_URL": infra.mongodb_url,
                       "SMTP_URL": f"smtp://127.0.0.1:{SMTP_PORT}", "SUPPORT_EMAIL": "help@shop.example",
                       # short SLA targets so breaches happen within a test
                       "SLA_DEFAULT_FIRST_RESPONSE_S": "3", "SLA_DEFAULT_WARN_BEFORE_S": "1",
                       "ROUTING_OFFLINE_GRACE_S": "2",
                       # replies on every channel go to the provider stand-ins; retries come quickly
                       "TWILIO_API_URL": providers.url, "TWILIO_ACCOUNT_SID": providers.twilio_sid,
                       "TWILIO_API_KEY_SID": providers.twilio_key_sid,
                       "TWILIO_API_KEY_SECRET": providers.twilio_key_secret, "TWILIO_FROM": "+15005550006",
                       "WHATSAPP_API_URL": f"{providers.url}/v21.0", "WHATSAPP_PHONE_NUMBER_ID": "106540352242922",
                       "WHATSAPP_ACCESS_TOKEN": providers.whatsapp_token,
                       "OUTBOUND_WEBHOOK_URL": f"{providers.url}/hooks/outbound",
                       "OUTBOUND_WEBHOOK_SECRET": providers.webhook_secret,
                       "DELIVERY_RETRY_BASE_S": "0.5", "DELIVERY_RETRY_MAX_S": "2",
                       # the webhook receivers of the tests listen on loopback
                       "WEBHOOKS_ALLOW_PRIVATE": "1"})
    stackctl.down(state_dir=TEST_STATE, services_only=True, quiet=True)  # services of an earlier run
    started = stackctl.up(state_dir=TEST_STATE, port_offset=SERVICE_PORT_OFFSET, quiet=True, **TEST_PORTS)
    yield Stack(kafka_bootstrap=infra.kafka_bootstrap, database=database,
                urls={name: started.service_urls[name] for name in SERVICES}, token=TOKEN)
    stackctl.down(state_dir=TEST_STATE, services_only=True, quiet=True)



AGENT = "agent-layla"


@pytest.fixture(scope="session")
def agent(stack):
    """One online agent with room for every ticket the suite creates."""
    with stack.client("routing") as routing:
        r = routing.put(f"/v1/agents/{AGENT}", json={"name": "Layla", "skills": ["general"], "languages": ["en", "ar"],
                                                     "channels": ["chat", "email", "sms", "whatsapp", "social",
                                                                  "voice", "webform"], "capacity": 500})
        assert r.status_code == 200, r.text
        r = routing.put(f"/v1/agents/{AGENT}/presence", json={"status": "online"})
        assert r.status_code == 200 and r.json()["presence"] == "online"
    return AGENT


def pytest_collection_modifyitems(items):
    """Tests marked `runs_last(order=n)` run after every other test on the shared stack, by `n`:
    they leave junk in the topics, or random agents, rules and tickets behind."""
    def rank(item) -> int:
        marker = item.get_closest_marker("runs_last")
        return 0 if marker is None else marker.kwargs.get("order", 1)

    items.sort(key=rank)
