"""How SMS, WhatsApp, social, web form and phone-call payloads become one normalised message each."""
import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from services.ingest.channels.sms import normalise_sms
from services.ingest.channels.social import SocialInbound, normalise_social
from services.ingest.channels.voice import VoiceInbound, normalise_voice
from services.ingest.channels.webform import WebformInbound, normalise_webform
from services.ingest.channels.whatsapp import WhatsAppWebhook, normalise_whatsapp
from services.ingest.domain import MAX_RECORD_BYTES, Blob, Rejected, e164, fit_for_kafka
from services.ingest.language import detect_language
from services.ingest.signatures import meta_valid, twilio_signature, twilio_valid
from shared.events import Attachment, Channel, CustomerRef, Identity, MessageReceived

NOW = datetime(2026, 11, 23, 10, 0, 5, tzinfo=UTC)


def keys(message):
    return [i.key for i in message.customer.identities]


# ------------------------------------------------------------------ SMS (Twilio)

SMS = {"MessageSid": "SM0123456789abcdef0123456789abcdef", "AccountSid": "AC1", "From": "+966 50 123 4567",
       "To": "+1 (415) 555-0100", "Body": "Hello, my parcel is late", "NumMedia": "0"}


def test_sms_is_keyed_by_the_senders_e164_number():
    m = normalise_sms(SMS, received_at=NOW)
    assert m.channel == "sms" and m.external_id == SMS["MessageSid"]
    assert keys(m) == ["phone:+966501234567"]
    assert m.thread_key == "sms:+966501234567" and m.recipient == "+14155550100"
    assert m.text == "Hello, my parcel is late" and m.sent_at == NOW
    assert normalise_sms(dict(SMS), received_at=NOW).message_id == m.message_id


def test_sms_media_are_referenced_by_their_provider_urls():
    form = {**SMS, "Body": "", "NumMedia": "2",
            "MediaUrl0": "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/SM1/Media/ME1",
            "MediaContentType0": "image/jpeg",
            "MediaUrl1": "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/SM1/Media/ME2",
            "MediaContentType1": "video/mp4"}
    m = normalise_sms(form, received_at=NOW)
    assert [(a.media_type, a.content_ref) for a in m.attachments] == [
        ("image/jpeg", form["MediaUrl0"]), ("video/mp4", form["MediaUrl1"])]
    assert m.text == "[image, video]"


@pytest.mark.parametrize(("change", "field"), [
    ({"From": "0501234567"}, "From"), ({"From": ""}, "From"), ({"MessageSid": ""}, "MessageSid"),
    ({"NumMedia": "many"}, "NumMedia"),
])
def test_sms_without_a_usable_sender_or_id_is_refused_naming_the_field(change, field):
    with pytest.raises(Rejected) as caught:
        normalise_sms({**SMS, **change}, received_at=NOW)
    assert caught.value.message.startswith(field)


def test_whatsapp_through_twilio_links_to_the_same_phone():
    m = normalise_sms({**SMS, "From": "whatsapp:+966501234567", "To": "whatsapp:+14155550100"}, received_at=NOW)
    assert m.channel == "whatsapp" and m.thread_key == "whatsapp:966501234567"
    assert keys(m) == ["whatsapp:966501234567", "phone:+966501234567"]


def test_twilio_signature_matches_twilios_documented_computation():
    token, url = "12345", "https://support.shop.example/v1/inbound/sms?tenant=eu"
    params = [("To", "+14155550100"), ("From", "+966501234567"), ("Body", "Hi & bye"), ("MessageSid", "SM1")]
    # Twilio: the full URL, then each parameter name and value, sorted by name, HMAC-SHA1, base64
    signed = url + "Body" + "Hi & bye" + "From" + "+966501234567" + "MessageSid" + "SM1" + "To" + "+14155550100"
    expected = base64.b64encode(hmac.new(b"12345", signed.encode(), hashlib.sha1).digest()).decode()
    assert twilio_signature(token, url, params) == expected
    assert twilio_valid(token, url, params, expected)
    assert not twilio_valid(token, url, params, None)
    assert not twilio_valid(token, url.replace("eu", "us"), params, expected)


def test_meta_signature_is_hmac_sha256_of_the_raw_body():
    body = b'{"object":"whatsapp_business_account"}'
    good = "sha256=" + hmac.new(b"app-secret", body, hashlib.sha256).hexdigest()
    assert meta_valid("app-secret", body, good)
    assert not meta_valid("app-secret", body + b" ", good)
    assert not meta_valid("app-secret", body, good.replace("sha256=", "sha1="))
    assert not meta_valid("app-secret", body, None)


# ------------------------------------------------------------------ WhatsApp (Cloud API)

def whatsapp(*messages, statuses=None) -> WhatsAppWebhook:
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
             "contacts": [{"profile": {"name": "Fatima"}, "wa_id": "966501234567"}],
             "messages": list(messages)}
    if statuses:
        value = {"metadata": value["metadata"], "statuses": statuses}
    return WhatsAppWebhook.model_validate(
        {"object": "whatsapp_business_account", "entry": [{"id": "WABA1", "changes": [{"field": "messages",
                                                                                        "value": value}]}]})


def wa(kind: str, wamid: str = "wamid.HBgM1", **content) -> dict:
    return {"from": "966501234567", "id": wamid, "timestamp": "1795424400", "type": kind, kind: content}


def test_whatsapp_text_links_whatsapp_and_phone_identities():
    (m,) = normalise_whatsapp(whatsapp(wa("text", body="السلام عليكم، أين طلبي؟")), received_at=NOW)
    assert m.channel == "whatsapp" and m.external_id == "wamid.HBgM1"
    assert keys(m) == ["whatsapp:966501234567", "phone:+966501234567"]
    assert m.customer.name == "Fatima" and m.thread_key == "whatsapp:966501234567"
    assert m.text == "السلام عليكم، أين طلبي؟" and m.language == "ar"
    assert m.sent_at == datetime.fromtimestamp(1795424400, UTC) and m.recipient == "+15550783881"


def test_whatsapp_image_keeps_its_caption_and_references_the_media():
    with_caption = wa("image", caption="This arrived broken", mime_type="image/jpeg", id="1234567890")
    without = wa("image", "wamid.HBgM2", mime_type="image/jpeg", id="987")
    first, second = normalise_whatsapp(whatsapp(with_caption, without), received_at=NOW)
    assert first.text == "This arrived broken"
    assert [(a.media_type, a.content_ref) for a in first.attachments] == [("image/jpeg", "whatsapp-media:1234567890")]
    assert second.text == "[image]"


@pytest.mark.parametrize(("message", "text"), [
    (wa("document", filename="invoice.pdf", mime_type="application/pdf", id="55"), "[document]"),
    (wa("location", latitude=24.7136, longitude=46.6753, name="Home"), "[location: 24.7136, 46.6753; Home]"),
    (wa("interactive", type="button_reply", button_reply={"id": "yes", "title": "Yes, refund me"}), "Yes, refund me"),
    (wa("button", text="Track my order", payload="TRACK"), "Track my order"),
    (wa("reaction", message_id="wamid.X", emoji="👍"), "[reaction 👍]"),
    (wa("unsupported"), "[unsupported]"),
])
def test_whatsapp_non_text_messages_get_a_readable_text(message, text):
    (m,) = normalise_whatsapp(whatsapp(message), received_at=NOW)
    assert m.text == text


def test_whatsapp_reply_context_is_a_threading_hint():
    message = {**wa("text", body="yes"), "context": {"from": "15550783881", "id": "wamid.OUT1"}}
    (m,) = normalise_whatsapp(whatsapp(message), received_at=NOW)
    assert m.in_reply_to == "wamid.OUT1"


def test_whatsapp_webhook_with_several_messages_gives_each_its_own_id():
    found = normalise_whatsapp(whatsapp(wa("text", "wamid.A", body="one"), wa("text", "wamid.B", body="two")),
                               received_at=NOW)
    assert [m.text for m in found] == ["one", "two"]
    assert len({m.message_id for m in found}) == 2


def test_whatsapp_status_only_webhook_has_no_messages():
    hook = whatsapp(statuses=[{"id": "wamid.OUT1", "status": "delivered", "timestamp": "1795424400"}])
    assert normalise_whatsapp(hook, received_at=NOW) == []


def test_whatsapp_rejects_another_object_and_a_sender_that_is_not_a_number():
    with pytest.raises(Rejected):
        normalise_whatsapp(WhatsAppWebhook.model_validate({"object": "page", "entry": []}), received_at=NOW)
    with pytest.raises(Rejected):
        normalise_whatsapp(whatsapp({**wa("text", body="x"), "from": "abc"}), received_at=NOW)


# ------------------------------------------------------------------ social

SOCIAL = {"network": "Twitter", "message_id": "1790000000000000001", "text": "@shop my order never came",
          "author": {"handle": "@Ana_Lopez", "name": "Ana"}, "in_reply_to": "1789999999999999999",
          "sent_at": "2026-11-23T09:00:00Z"}


def test_social_identity_is_the_network_and_bare_lowercased_handle():
    m = normalise_social(SocialInbound.model_validate(SOCIAL), received_at=NOW)
    assert keys(m) == ["twitter:ana_lopez"] and m.customer.name == "Ana"
    assert m.thread_key == "social:twitter:ana_lopez" and m.in_reply_to == "1789999999999999999"
    assert m.external_id == "1790000000000000001"


@pytest.mark.parametrize("change", [{"network": "email"}, {"network": "phone"}, {"author": {"handle": "@"}},
                                    {"sent_at": "2026-11-23T09:00:00"}, {"text": ""}])
def test_social_payloads_that_could_misidentify_someone_are_refused(change):
    with pytest.raises(ValidationError):
        SocialInbound.model_validate({**SOCIAL, **change})


# ------------------------------------------------------------------ web form

FORM = {"name": "Omar", "email": "Omar@Example.com", "subject": "Return request",
        "message": "I want to return the lamp."}


def test_webform_submission_is_its_own_conversation_and_the_same_one_twice_is_one_message():
    first = normalise_webform(WebformInbound.model_validate(FORM), received_at=NOW).message
    again = normalise_webform(WebformInbound.model_validate(FORM), received_at=NOW).message
    other = normalise_webform(WebformInbound.model_validate({**FORM, "message": "Other"}), received_at=NOW).message
    assert first.message_id == again.message_id != other.message_id
    assert first.thread_key == f"webform:{first.message_id}"
    assert keys(first) == ["email:omar@example.com"] and first.subject == "Return request"


def test_webform_files_become_attachments_and_big_ones_are_listed_but_not_kept():
    small, big = Blob(b"receipt", "image/png", "receipt.png"), Blob(b"x" * 5000, "video/mp4", "unboxing.mp4")
    result = normalise_webform(WebformInbound.model_validate(FORM), received_at=NOW, files=[small, big],
                               max_blob_bytes=1000)
    assert [(a.filename, a.content_ref) for a in result.message.attachments] == [
        ("receipt.png", small.ref), ("unboxing.mp4", None)]
    assert result.blobs == (small,)


# ------------------------------------------------------------------ voice

CALL = {"call_id": "CA42", "from": "+44 20 7946 0958", "to": "+14155550100", "started_at": "2026-11-23T09:00:00Z",
        "duration_s": 95, "recording_url": "https://recordings.example.com/CA42.wav"}


def test_call_without_transcript_says_so_and_keeps_the_recording():
    m = normalise_voice(VoiceInbound.model_validate(CALL), received_at=NOW)
    assert m.text == "Phone call, 95 s (no transcript)"
    assert keys(m) == ["phone:+442079460958"] and m.thread_key == "voice:+442079460958"
    (rec,) = m.attachments
    assert rec.media_type.startswith("audio/") and rec.content_ref == CALL["recording_url"]


def test_call_with_transcript_shows_it():
    m = normalise_voice(VoiceInbound.model_validate({**CALL, "transcript": "Hi, I need to change my address."}),
                        received_at=NOW)
    assert m.text == "Hi, I need to change my address." and m.language == "en"


def test_call_from_a_number_without_country_code_is_refused():
    with pytest.raises(Rejected) as caught:
        normalise_voice(VoiceInbound.model_validate({**CALL, "from": "020 7946 0958"}), received_at=NOW)
    assert caught.value.message.startswith("from")


# ------------------------------------------------------------------ shared rules

@pytest.mark.parametrize(("number", "expected"), [
    ("+966 50 123 4567", "+966501234567"), ("+1 (415) 555-0100", "+14155550100"), ("+999 1234567", "+9991234567"),
])
def test_phone_numbers_become_e164(number, expected):
    assert e164(number, field_name="From") == expected


@pytest.mark.parametrize(("text", "language"), [
    ("مرحبا، أين طلبي؟ لم يصل حتى الآن", "ar"), ("میرا آرڈر ابھی تک نہیں پہنچا ہے", "ur"),
    ("मेरा ऑर्डर अभी तक नहीं आया है", "hi"), ("Where is my order? It has not arrived.", "en"),
    ("Bonjour, je n'ai pas reçu ma commande", "fr"), ("Hallo, meine Bestellung ist nicht angekommen", "de"),
    ("Hola, mi pedido no ha llegado", "es"), ("Merhaba, siparişim henüz gelmedi", "tr"), ("ok", "und"), ("", "und"),
])
def test_language_is_guessed_cheaply(text, language):
    assert detect_language(text) == language


def big_message(text: str, html: str | None) -> MessageReceived:
    return MessageReceived(message_id="msg_1", channel=Channel.email, external_id="x", thread_key="email:x",
                           customer=CustomerRef(identities=[Identity(kind="email", value="a@b.example")]),
                           text=text, html=html, sent_at=NOW, received_at=NOW)


def test_a_record_always_fits_kafka_losing_html_before_text():
    fitted = fit_for_kafka(big_message("مرحبا " * 20_000, "<p>" + "مرحبا " * 20_000 + "</p>"))
    assert fitted.html is None and fitted.text.startswith("مرحبا")
    assert len(json.dumps(fitted.model_dump(mode="json"))) <= MAX_RECORD_BYTES
    huge = fit_for_kafka(big_message("ع" * 200_000, None))
    assert len(json.dumps(huge.model_dump(mode="json"))) <= MAX_RECORD_BYTES


def test_a_lone_surrogate_cannot_stop_a_message():
    fitted = fit_for_kafka(big_message("broken \ud800 char", None))
    assert fitted.text == "broken \ufffd char"
    fitted.model_dump_json().encode("utf-8")


def test_a_record_too_big_even_without_text_sheds_middle_references_then_lists_fewer_attachments_and_says_so():
    message = big_message("hello", None).model_copy(update={
        "references": [f"{i}-{'r' * 900}@x" for i in range(100)],
        "attachments": [Attachment(filename="ع" * 255, media_type="application/pdf", size=1, sha256="0" * 64,
                                   content_ref="blob:" + "0" * 64) for i in range(600)]})
    fitted = fit_for_kafka(message)
    assert len(json.dumps(fitted.model_dump(mode="json"))) <= MAX_RECORD_BYTES
    assert [r[:3] for r in fitted.references] == ["0-r", "99-"]
    listed = len(fitted.attachments)
    assert 0 < listed < 600
    assert fitted.text == f"hello\n[{600 - listed} more attachments are not listed: the message was too large]"


def test_a_record_that_cannot_fit_at_all_is_refused_not_retried():
    message = big_message("hello", None).model_copy(update={"customer": CustomerRef(
        name="n" * 900_000, identities=[Identity(kind="email", value="a@b.example")])})
    with pytest.raises(Rejected) as refused:
        fit_for_kafka(message)
    assert refused.value.code == "too_large"


def test_a_record_is_measured_as_json_writes_it_so_control_characters_count_six_times():
    just_under = big_message("a" * 150_000, None)  # 150 KB: fits whole
    assert fit_for_kafka(just_under).text == just_under.text
    controls = fit_for_kafka(big_message("\x01" * 140_000, None))  # 140 KB, but 840 KB as \u0001
    assert len(json.dumps(controls.model_dump(mode="json"))) <= MAX_RECORD_BYTES
    assert controls.text.endswith("[…cut: the original is kept]")
