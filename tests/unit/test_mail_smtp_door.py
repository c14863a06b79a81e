"""The SMTP door as a sending MTA sees it (smtplib against the real aiosmtpd server, Kafka faked)."""
import asyncio
import smtplib
import socket

import pytest

from services.ingest.service import IngestService
from services.ingest.settings import IngestSettings
from services.ingest.smtp import SmtpServer
from tests.unit.test_ingest_http import MemoryBlobs, RecordingPublisher

MAIL = (b"From: Ana <ana@example.com>\r\nTo: support@shop.example\r\nSubject: Late order\r\n"
        b"Message-ID: <smtp-1@example.com>\r\n\r\nMy order has not arrived.\r\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Door:
    def __init__(self, *, fail: bool = False, **settings):
        self.publisher = RecordingPublisher(fail)
        self.service = IngestService(publisher=self.publisher, source="test", blobs=MemoryBlobs(),
                                     is_connected=lambda: True)
        self.port = free_port()
        self.server = SmtpServer(self.service, IngestSettings(smtp_port=self.port, smtp_host="127.0.0.1",
                                                              rate_limit_per_min=0, **settings))

    async def __aenter__(self):
        await self.server.start()
        return self

    async def __aexit__(self, *exc):
        await self.server.stop()

    async def send(self, raw: bytes = MAIL, *, sender: str = "ana@example.com",
                   to: str = "support@shop.example") -> tuple[int, bytes]:
        """(code, text) of the answer to the mail, as the sending MTA hears it."""
        def deliver() -> tuple[int, bytes]:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
                code, text = client.ehlo()
                assert code == 250
                code, text = client.mail(sender)
                if code != 250:
                    return code, text
                code, text = client.rcpt(to)
                if code not in (250, 251):
                    return code, text
                return client.data(raw)
        return await asyncio.to_thread(deliver)


async def test_a_mail_is_answered_250_with_its_message_id_once_kafka_has_it():
    async with Door() as door:
        code, text = await door.send()
        again = await door.send()
    assert code == 250 and b"msg_" in text
    assert again == (code, text)  # the same mail delivered twice: the same message
    (record, _) = door.publisher.records
    assert record["data"]["customer"]["identities"][0]["value"] == "ana@example.com"


async def test_kafka_away_is_a_4xx_so_the_mta_retries():
    async with Door(fail=True) as door:
        code, _ = await door.send()
    assert 400 <= code < 500


async def test_a_slow_acknowledgement_is_a_4xx_too():
    async with Door(smtp_ack_timeout_s=0.2) as door:
        async def never(*_):
            await asyncio.sleep(5)
        door.publisher.publish = never
        code, _ = await door.send()
    assert code == 451


async def test_a_mail_over_the_size_limit_is_552():
    async with Door(max_email_bytes=1000) as door:
        code, _ = await door.send(MAIL + b"a line of text\r\n" * 200)
    assert code == 552 and door.publisher.records == []


async def test_recipients_outside_the_support_domains_are_refused_at_rcpt():
    async with Door(support_domains="shop.example, Other.Example") as door:
        refused, _ = await door.send(to="someone@elsewhere.example")
        taken, _ = await door.send(to="help@other.example")
    assert refused == 550 and taken == 250


async def test_the_envelope_sender_is_used_when_the_mail_names_none():
    async with Door() as door:
        code, _ = await door.send(b"Subject: forwarded\r\n\r\nhello\r\n", sender="relay@example.org")
    assert code == 250
    assert door.publisher.records[0]["data"]["customer"]["identities"][0]["value"] == "relay@example.org"


@pytest.mark.parametrize("raw", [b"not a mail at all\r\n"])
async def test_what_is_not_a_mail_is_refused_for_good(raw):
    async with Door() as door:
        code, _ = await door.send(raw)
    assert code == 554 and door.publisher.records == []


async def test_two_processes_can_listen_on_the_door_at_once():
    async with Door() as first:
        second = SmtpServer(first.service, first.server.settings)
        await second.start()
        try:
            assert second.server is not None
        finally:
            await second.stop()
