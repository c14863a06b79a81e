"""Providers' delivery reports become deskstream's delivery states."""
from datetime import UTC, datetime

from services.ingest.channels.receipts import WaStatus, twilio_report, whatsapp_reports

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def test_twilio_status_words_map_to_delivery_states_and_early_ones_say_nothing():
    delivered = twilio_report({"MessageSid": "SM1", "MessageStatus": "delivered"}, received_at=NOW)
    assert (delivered.state, delivered.provider_id, delivered.provider_status) == ("delivered", "SM1", "delivered")
    failed = twilio_report({"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "30003",
                            "ErrorMessage": "Unreachable destination handset"}, received_at=NOW)
    assert failed.state == "failed" and failed.error == "code 30003 Unreachable destination handset"
    assert twilio_report({"MessageSid": "SM1", "MessageStatus": "queued"}, received_at=NOW) is None
    assert twilio_report({"MessageStatus": "delivered"}, received_at=NOW) is None


def test_whatsapp_statuses_read_counts_as_delivered_and_failures_keep_the_error():
    reports = whatsapp_reports([
        WaStatus(id="wamid.A", status="read", timestamp=1795424400),
        WaStatus(id="wamid.B", status="failed", errors=[{"code": 131026, "title": "Message undeliverable"}]),
        WaStatus(id="wamid.C", status="deleted"),
    ], received_at=NOW)
    assert [(r.provider_id, r.state) for r in reports] == [("wamid.A", "delivered"), ("wamid.B", "failed")]
    assert reports[0].at == datetime.fromtimestamp(1795424400, UTC)
    assert reports[1].error == "code 131026 Message undeliverable"
