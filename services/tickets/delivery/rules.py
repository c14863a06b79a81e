"""Where a reply goes and when to try again. Pure rules: no I/O, no framework."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from services.tickets.domain import Direction, Ticket
from shared.events import Channel

# the way out for each channel a ticket can be on (a web form is answered by mail)
ADAPTER_OF: dict[Channel, str] = {
    Channel.email: "email",
    Channel.webform: "email",
    Channel.chat: "chat",
    Channel.sms: "sms",
    Channel.whatsapp: "whatsapp",
    Channel.social: "webhook",
    Channel.voice: "webhook",
}
# which of the customer's identities each way out can reach, best first
REACHES: dict[str, tuple[str, ...]] = {
    "email": ("email",),
    "sms": ("phone",),
    "whatsapp": ("whatsapp", "phone"),
}


class Route(NamedTuple):
    adapter: str
    to: str | None  # the address on that channel; None when the customer cannot be reached there


def route(ticket: Ticket) -> Route:
    """Answer where the customer last wrote from: the sender of their newest message on a
    kind this channel reaches, else the conversation's own address, else any identity."""
    adapter = ADAPTER_OF[ticket.channel]
    if adapter == "chat":  # the chat session the conversation lives in
        return Route(
            adapter, ticket.thread_key.removeprefix("chat:").split("#", 1)[0]
        )  # (a thread of its own: #customer)
    if adapter == "webhook":  # social handle or phone number: the receiving system decides
        return Route(adapter, ticket.thread_key)
    kinds = REACHES[adapter]
    senders = [m.sender for m in reversed(ticket.messages) if m.direction == Direction.inbound and m.sender]
    thread_kind, _, thread_value = ticket.thread_key.partition(":")
    candidates = [
        *senders,
        *([f"{thread_kind}:{thread_value}"] if thread_kind in kinds else []),
        *ticket.customer.identities,
    ]
    for kind in kinds:
        for key in candidates:
            if key.startswith(kind + ":"):
                value = key.split(":", 1)[1]
                # WhatsApp addresses people by their wa_id: the phone number's digits
                return Route(adapter, value.lstrip("+") if adapter == "whatsapp" else value)
    return Route(adapter, None)


class RetryPolicy(NamedTuple):
    """Exponential back-off, capped, until the message is too old to be worth sending."""

    base_s: float = 2.0
    cap_s: float = 300.0
    give_up_after_s: float = 24 * 3600.0

    def next_attempt(self, attempts: int, now: datetime, first_at: datetime) -> datetime | None:
        """When to try again after `attempts` failed tries; None means give up."""
        if (now - first_at).total_seconds() >= self.give_up_after_s:
            return None
        delay = min(self.cap_s, self.base_s * 2 ** max(0, attempts - 1))
        return now + timedelta(seconds=delay)
