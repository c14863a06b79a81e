"""How a chat webhook becomes one normalised message."""
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from services.ingest.channels.chat import ChatInbound, normalise_chat

NOW = datetime(2026, 11, 23, 10, 0, 5, tzinfo=UTC)
PAYLOAD = {"session_id": "s-1", "message_id": "m-1", "text": "Hello, where is my order?",
           "customer": {"name": "Ana", "email": "Ana@Example.com", "visitor_id": "v-9"},
           "sent_at": "2026-11-23T10:00:00Z"}


def test_same_chat_message_gets_the_same_id_and_another_gets_another():
    first = normalise_chat(ChatInbound.model_validate(PAYLOAD), received_at=NOW)
    again = normalise_chat(ChatInbound.model_validate(PAYLOAD), received_at=NOW)
    other = normalise_chat(ChatInbound.model_validate({**PAYLOAD, "message_id": "m-2"}), received_at=NOW)
    assert first.message_id == again.message_id != other.message_id


def test_chat_message_is_labelled_with_its_channel_session_and_customer_identities():
    msg = normalise_chat(ChatInbound.model_validate(PAYLOAD), received_at=NOW)
    assert msg.channel == "chat"
    assert msg.thread_key == "chat:s-1"
    assert [i.key for i in msg.customer.identities] == ["email:ana@example.com", "chat:v-9"]
    assert msg.sent_at == datetime(2026, 11, 23, 10, 0, tzinfo=UTC) and msg.received_at == NOW


@pytest.mark.parametrize("change", [
    {"text": ""}, {"sent_at": "yesterday"}, {"sent_at": "2026-11-23T10:00:00"},
    {"customer": {"name": "Ana", "visitor_id": "v", "email": "not-an-address"}}, {"session_id": None},
])
def test_invalid_chat_payloads_are_rejected(change):
    with pytest.raises(ValidationError):
        ChatInbound.model_validate({**PAYLOAD, **change})
