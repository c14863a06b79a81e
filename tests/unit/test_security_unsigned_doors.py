"""Ingest names, as it starts, each channel whose webhooks anyone may post to (its secret unset)."""
import logging

from services.ingest.settings import IngestSettings
from services.ingest.signatures import UnsignedDoorsWarning
from tests.unit.test_ingest_http import Ingest


def settings(**secrets) -> IngestSettings:
    return IngestSettings(**{"twilio_auth_token": None, "meta_app_secret": None, **secrets})


async def start(ingest: Ingest) -> None:
    for hook in ingest.app.state.runtime.on_start:
        if isinstance(hook, UnsignedDoorsWarning):
            await hook()


async def test_each_channel_without_its_secret_is_named_once_at_start(caplog):
    ingest = Ingest()  # neither secret set
    with caplog.at_level(logging.WARNING, logger="services.ingest.signatures"):
        await start(ingest)
        await start(ingest)  # on_start runs again after a failed connection attempt: said once
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 2
    assert "SMS" in lines[0] and "TWILIO_AUTH_TOKEN" in lines[0] and "/v1/inbound/sms" in lines[0]
    assert "WhatsApp" in lines[1] and "META_APP_SECRET" in lines[1] and "/v1/inbound/whatsapp" in lines[1]


async def test_nothing_is_said_of_a_channel_whose_secret_is_set(caplog):
    with caplog.at_level(logging.WARNING, logger="services.ingest.signatures"):
        await start(Ingest(twilio_auth_token="tw-secret", meta_app_secret="meta-secret"))
        await start(Ingest(twilio_auth_token="tw-secret"))
    assert [r.getMessage().split()[0] for r in caplog.records] == ["WhatsApp"]


def test_an_empty_secret_counts_as_unset():
    assert [d.channel for d in settings(twilio_auth_token="", meta_app_secret="m").unsigned_doors()] == ["SMS"]
