"""The provider adapters against local stand-ins of Twilio, the WhatsApp Cloud API and a
webhook receiver, over real HTTP, including the providers' error answers."""
from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from services.tickets.delivery.channels import (
    Outgoing, TryLater, TwilioSms, Undeliverable, WebhookOut, WhatsAppCloud,
)
from services.tickets.domain import CustomerInfo, Ticket
from shared.events import Channel, CustomerRef, Identity, MessageReceived
from tests.standins import ProviderServer

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def providers():
    with ProviderServer() as p:
        yield p


@pytest.fixture(autouse=True)
def calm(providers):
    providers.outage = providers.rate_limited = 0
    providers.closed_windows.clear()


def outgoing(channel: Channel, to: str, text: str = "Your refund is on its way.") -> Outgoing:
    msg = MessageReceived(message_id="m1", channel=channel, external_id="x1", thread_key=f"{channel.value}:{to}",
                          customer=CustomerRef(identities=[Identity(kind="phone", value=to)]), text="Hi",
                          sent_at=T0, received_at=T0)
    ticket, _ = Ticket.open_from(msg, ticket_id="TK-1", customer=CustomerInfo(id="CU-1"), now=T0)
    ticket.reply(agent_id="a1", text=text, message_id="out_1", now=T0)
    return Outgoing(ticket=ticket, message=ticket.messages[-1], to=to, idempotency_key="out_1")


def twilio(client, providers, token=None) -> TwilioSms:
    return TwilioSms(client, base_url=providers.url, account_sid=providers.twilio_sid,
                     auth=(providers.twilio_key_sid, token or providers.twilio_key_secret), sender="+15005550006")


async def test_twilio_sends_and_returns_the_message_sid(providers):
    async with httpx.AsyncClient() as client:
        sent = await twilio(client, providers).send(outgoing(Channel.sms, "+966500000001"))
    assert sent.provider_id.startswith("SM") and sent.provider_id == providers.sms[-1]["sid"]
    assert providers.sms[-1]["to"] == "+966500000001" and providers.sms[-1]["body"] == "Your refund is on its way."


async def test_twilio_refusals_are_permanent_and_outages_rate_limits_and_bad_credentials_transient(providers):
    async with httpx.AsyncClient() as client:
        with pytest.raises(Undeliverable, match="21211"):
            await twilio(client, providers).send(outgoing(Channel.sms, "0500"))
        with pytest.raises(Undeliverable, match="21610"):
            await twilio(client, providers).send(outgoing(Channel.sms, "+15005550004"))
        providers.outage = 1
        with pytest.raises(TryLater, match="503"):
            await twilio(client, providers).send(outgoing(Channel.sms, "+966500000001"))
        providers.rate_limited = 1
        with pytest.raises(TryLater, match="20429"):
            await twilio(client, providers).send(outgoing(Channel.sms, "+966500000001"))
        with pytest.raises(TryLater, match="20003"):
            await twilio(client, providers, token="wrong").send(outgoing(Channel.sms, "+966500000001"))
        unreachable = TwilioSms(client, base_url="http://127.0.0.1:1", account_sid="AC1", auth=("AC1", "t"),
                                sender="+1")
        with pytest.raises(TryLater, match="ConnectError"):
            await unreachable.send(outgoing(Channel.sms, "+966500000001"))


def whatsapp(client, providers) -> WhatsAppCloud:
    return WhatsAppCloud(client, base_url=f"{providers.url}/v21.0", phone_number_id="106540352242922",
                         access_token=providers.whatsapp_token)


async def test_whatsapp_sends_text_and_returns_the_wamid(providers):
    async with httpx.AsyncClient() as client:
        sent = await whatsapp(client, providers).send(outgoing(Channel.whatsapp, "966500000001"))
    assert sent.provider_id.startswith("wamid.")
    assert providers.whatsapp[-1]["to"] == "966500000001"
    assert providers.whatsapp[-1]["text"]["body"] == "Your refund is on its way."


async def test_whatsapp_closed_window_is_permanent_and_throttling_transient(providers):
    async with httpx.AsyncClient() as client:
        providers.closed_windows.add("966500000002")
        with pytest.raises(Undeliverable, match="131047"):
            await whatsapp(client, providers).send(outgoing(Channel.whatsapp, "966500000002"))
        providers.rate_limited = 1
        with pytest.raises(TryLater, match="130429"):
            await whatsapp(client, providers).send(outgoing(Channel.whatsapp, "966500000001"))
        providers.outage = 1
        with pytest.raises(TryLater, match="131016"):
            await whatsapp(client, providers).send(outgoing(Channel.whatsapp, "966500000001"))


async def test_social_replies_are_posted_signed_with_an_idempotency_key(providers):
    async with httpx.AsyncClient() as client:
        hook = WebhookOut(client, url=f"{providers.url}/hooks/outbound", secret=providers.webhook_secret)
        sent = await hook.send(outgoing(Channel.social, "social:x:@noura"))
        assert sent.provider_id == f"hook-{len(providers.hooks)}"
        assert providers.hooks[-1]["idempotency_key"] == "out_1" and providers.hooks[-1]["to"] == "social:x:@noura"
        unsigned = WebhookOut(client, url=f"{providers.url}/hooks/outbound", secret="not-the-secret")
        with pytest.raises(TryLater, match="401"):
            await unsigned.send(outgoing(Channel.social, "social:x:@noura"))


