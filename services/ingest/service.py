"""Accepting a channel message: it is acknowledged only once its bytes are stored and Kafka holds it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from services.ingest.domain import Blob, encoded_for_kafka, headers_on_one_line, reused_id_variant
from services.ingest.records import CONTENT_TYPE, RecordSink, encode_event
from shared import topics
from shared.events import DeliveryReported, EventType, MessageReceived, stable_id, utcnow


class NotDurable(Exception):
    """The store or Kafka did not take the message; the sender must retry (HTTP 503)."""


class Blobs(Protocol):
    """Where attachments and original mails are kept (store.BlobStore, or its batcher)."""

    async def put_many(self, blobs: Iterable[Blob]) -> set[str]: ...

    async def get(self, sha256: str) -> bytes | None: ...


class IngestService:
    def __init__(
        self, *, publisher: RecordSink, source: str, is_connected: Callable[[], bool], blobs: Blobs | None = None
    ) -> None:
        self.publisher = publisher  # takes encoded records; returns once Kafka acknowledged them
        self.source = source
        self.is_connected = is_connected
        self.blobs = blobs  # a BlobStore: where attachments and original mails are kept

    async def report(self, report: DeliveryReported) -> str:
        """A provider's delivery report, passed on to the tickets service; its event id
        follows from what it says, so the provider's retries are duplicates downstream."""
        if not self.is_connected():
            raise NotDurable("the message broker is not reachable")
        event_id = "dr-" + stable_id(report.channel.value, report.provider_id, report.provider_status)
        try:
            record = encode_event(
                EventType.DELIVERY_REPORTED,
                report.model_dump_json().encode(),
                id_=event_id,
                source=self.source,
                subject=report.provider_id,
                time_=utcnow(),
            )
            await self.publisher.publish(record, report.provider_id.encode(), self._headers(event_id))
        except Exception as exc:
            raise NotDurable(f"the message broker did not acknowledge the report: {type(exc).__name__}") from exc
        return event_id

    @staticmethod
    def _headers(event_id: str) -> list[tuple[str, bytes]]:
        # the event id as correlation id: a redelivered webhook's record carries the same one
        return [CONTENT_TYPE, ("correlation_id", event_id.encode())]

    async def accept(self, message: MessageReceived, blobs: Iterable[Blob] = (), claim: Blob | None = None) -> str:
        """Store the bytes, then publish and wait for the broker's acknowledgement (acks=all).
        The event id is the message id, so a redelivered webhook is a duplicate downstream,
        not a new message; blobs are content-addressed, so storing them again is a no-op.
        `claim` (domain.Normalised.claim) rides along with the blobs; found kept already with
        another digest, the message reuses another's id and gets one of its own."""
        if not self.is_connected():
            raise NotDurable("the message broker is not reachable")
        message = headers_on_one_line(message)
        message, data = encoded_for_kafka(message)  # raises Rejected: a message too large for any record
        blobs = list(blobs) + ([claim] if claim is not None and self.blobs is not None else [])
        if blobs:
            if self.blobs is None:  # (tests without a store)
                raise NotDurable("the attachment store did not take the message: there is none")
            try:
                kept = await self.blobs.put_many(blobs) or set()
                # a read only when the claim was there before: a redelivery, or a reused id
                if claim is not None and claim.id in kept and await self.blobs.get(claim.id) != claim.data:
                    message = message.model_copy(update={"message_id": reused_id_variant(message, claim)})
                    data = encoded_for_kafka(message)[1]
            except Exception as exc:
                raise NotDurable(f"the attachment store did not take the message: {type(exc).__name__}") from exc
        record = encode_event(
            EventType.MESSAGE_RECEIVED,
            data,
            id_=message.message_id,
            source=self.source,
            subject=message.message_id,
            time_=utcnow(),
        )
        try:
            await self.publisher.publish(record, message.thread_key.encode(), self._headers(message.message_id))
        except Exception as exc:
            raise NotDurable(f"the message broker did not acknowledge the message: {type(exc).__name__}") from exc
        return message.message_id


TOPIC = topics.INGEST_MESSAGES
