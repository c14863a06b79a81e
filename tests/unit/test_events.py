"""The CloudEvents envelope other systems read."""
from datetime import UTC, datetime

from shared.events import (
    EVENT_TYPES, CloudEvent, EventType, SlaTarget, SlaTargetEvent, TicketEventRecord, make_event, stable_id,
)


def test_events_are_cloudevents_1_0_in_structured_json():
    payload = SlaTargetEvent(ticket_id="TK-1", target=SlaTarget.first_response, policy_id="p",
                             due_at=datetime(2026, 1, 1, tzinfo=UTC), at=datetime(2026, 1, 1, tzinfo=UTC))
    body = make_event(EventType.SLA_BREACHED, payload, source="deskstream/sla", subject="TK-1",
                      id_="sla-TK-1-first_response-breached").model_dump(mode="json")
    assert body["specversion"] == "1.0"
    assert body["type"] == "deskstream.sla.breached" and body["subject"] == "TK-1"
    assert body["datacontenttype"] == "application/json"
    assert body["time"].endswith("Z") and body["data"]["target"] == "first_response"
    assert CloudEvent.model_validate(body).payload() == payload


def test_unknown_event_types_are_kept_not_rejected():
    event = CloudEvent.model_validate({"id": "1", "source": "x", "type": "com.example.other",
                                       "time": "2026-01-01T00:00:00Z", "data": {"a": 1}})
    assert event.payload() is None


def test_public_types_use_the_deskstream_prefixes():
    for type_ in EVENT_TYPES:
        assert type_.startswith(("deskstream.ticket.", "deskstream.sla.", "deskstream.message.",
                                 "deskstream.command.", "deskstream.deadletter", "deskstream.customer.",
                                 "deskstream.routing.", "deskstream.settings.", "deskstream.privacy.",
                                 "deskstream.problem."))  # CONTRACT.md: deskstream.problem.detected


def test_ticket_record_schema_lists_every_ticket_event_type():
    schema = TicketEventRecord.model_json_schema()
    assert set(schema["properties"]["type"]["enum"]) == {
        t for t in EVENT_TYPES if t.startswith(("deskstream.ticket.", "deskstream.customer."))}


def test_stable_ids_are_deterministic():
    assert stable_id("a", "b") == stable_id("a", "b") != stable_id("ab")
