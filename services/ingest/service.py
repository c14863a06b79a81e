"""Accepting a channel message: it is acknowledged only once Kafka holds it."""
from __future__ import annotations

from shared import topics
from shared.events import EventType, MessageReceived, make_event


class NotDurable(Exception):
    """Kafka did not take the message; the sender must retry (HTTP 503)."""


class IngestService:
    def __init__(self, *, publisher, source: str, is_connected) -> None:
        self.publisher = publisher
        self.source = source
        self.is_connected = is_connected

    async def accept(self, message: MessageReceived) -> str:
        """Publish and wait for the broker's acknowledgement (acks=all). The event id is
        the message id, so a redelivered webhook is a duplicate downstream, not a new message."""
        if not self.is_connected():
            raise NotDurable("the message broker is not reachable")
        event = make_event(EventType.MESSAGE_RECEIVED, message, source=self.source,
                           subject=message.message_id, id_=message.message_id)
        try:
            await self.publisher.publish(event.model_dump(mode="json"), key=message.thread_key.encode(),
                                         headers={"content-type": "application/cloudevents+json"})
        except Exception as exc:
            raise NotDurable(f"the message broker did not acknowledge the message: {type(exc).__name__}") from exc
        return message.message_id


TOPIC = topics.INGEST_MESSAGES
