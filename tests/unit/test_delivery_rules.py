"""Where a reply goes and when delivery tries again (pure rules)."""
from datetime import UTC, datetime, timedelta

from services.tickets.delivery.rules import RetryPolicy, route
from services.tickets.domain import CustomerInfo, DeliveryState, Ticket
from shared.events import Channel, CustomerRef, Identity, MessageReceived

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def ticket_on(channel: Channel, thread_key: str, identities: list[Identity], customer_ids: list[str]) -> Ticket:
    msg = MessageReceived(message_id="m1", channel=channel, external_id="x1", thread_key=thread_key,
                          customer=CustomerRef(identities=identities), text="Hi", sent_at=T0, received_at=T0)
    ticket, _ = Ticket.open_from(msg, ticket_id="TK-1", customer=CustomerInfo(id="CU-1", identities=customer_ids),
                                 now=T0)
    return ticket


def test_mail_goes_to_the_address_the_customer_last_wrote_from():
    ticket = ticket_on(Channel.email, "email:x1", [Identity(kind="email", value="new@example.com")],
                       ["email:old@example.com", "email:new@example.com"])
    assert route(ticket) == ("email", "new@example.com")


def test_a_web_form_is_answered_by_mail_and_a_customer_without_an_address_cannot_be():
    ticket = ticket_on(Channel.webform, "webform:m1", [Identity(kind="email", value="ana@example.com")],
                       ["email:ana@example.com"])
    assert route(ticket) == ("email", "ana@example.com")
    ticket.customer.identities, ticket.messages[0].sender = ["phone:+966500000001"], None
    assert route(ticket) == ("email", None)


def test_sms_whatsapp_chat_and_social_are_answered_where_the_conversation_is():
    sms = ticket_on(Channel.sms, "sms:+966500000001", [Identity(kind="phone", value="+966500000001")],
                    ["phone:+966500000001"])
    assert route(sms) == ("sms", "+966500000001")
    wa = ticket_on(Channel.whatsapp, "whatsapp:966500000001",
                   [Identity(kind="whatsapp", value="966500000001"), Identity(kind="phone", value="+966500000001")],
                   ["whatsapp:966500000001", "phone:+966500000001"])
    assert route(wa) == ("whatsapp", "966500000001")
    chat = ticket_on(Channel.chat, "chat:s-42", [Identity(kind="chat", value="v-1")], ["chat:v-1"])
    assert route(chat) == ("chat", "s-42")
    social = ticket_on(Channel.social, "social:x:@noura", [Identity(kind="x", value="@noura")], ["x:@noura"])
    assert route(social) == ("webhook", "social:x:@noura")


def test_retries_back_off_exponentially_up_to_a_cap_and_stop_when_too_old():
    policy = RetryPolicy(base_s=2, cap_s=60, give_up_after_s=3600)
    now = T0 + timedelta(minutes=1)
    delays = [(policy.next_attempt(n, now, T0) - now).total_seconds() for n in range(1, 8)]
    assert delays == [2, 4, 8, 16, 32, 60, 60]
    assert policy.next_attempt(3, T0 + timedelta(hours=1), T0) is None


def test_a_reply_starts_queued_and_delivery_reports_never_step_back():
    ticket = ticket_on(Channel.chat, "chat:s-42", [Identity(kind="chat", value="v-1")], ["chat:v-1"])
    ticket.reply(agent_id="a1", text="Hello", message_id="out_1", now=T0)
    assert ticket.messages[-1].delivery.state == DeliveryState.queued
    assert ticket.record_delivery("out_1", state=DeliveryState.delivered, detail="pushed", provider_id=None,
                                  attempts=1, now=T0)
    # the worker's late "sent" must not undo "delivered"
    assert ticket.record_delivery("out_1", state=DeliveryState.sent, detail="in session", provider_id=None,
                                  attempts=1, now=T0) == []
    assert ticket.messages[-1].delivery.state == DeliveryState.delivered
    assert ticket.record_delivery("out_1", state=DeliveryState.delivered, detail="again", provider_id=None,
                                  attempts=1, now=T0) == []
