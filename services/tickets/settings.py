"""Tickets settings."""

from pydantic import Field, SecretStr

from shared.settings import ServiceSettings, port_field


class TicketsSettings(ServiceSettings):
    service_name: str = "tickets"
    http_port: int = port_field("tickets", 8002)
    # SMS/WhatsApp/social/phone messages join the customer's ticket on that channel if it
    # saw activity within this window; resolved tickets reopen within the reopen window
    thread_window_s: int = Field(7 * 24 * 3600, validation_alias="TICKETS_THREAD_WINDOW_S")
    reopen_window_s: int = Field(14 * 24 * 3600, validation_alias="TICKETS_REOPEN_WINDOW_S")
    # a resolved ticket the customer does not come back to is closed after this long
    auto_close_s: float = Field(72 * 3600, validation_alias="TICKETS_AUTO_CLOSE_S", gt=0)
    # the lists (GET /v1/tickets) are written by the owning process in coalesced batches: a new ticket once
    # it is this old (its first assignment is known by then: one write instead of two), a changed one once
    # its change is this old. A list read first asks every partition to write what it has, so a list shows
    # every change acknowledged before it was asked for whatever these are.
    list_new_delay_s: float = Field(2.0, validation_alias="TICKETS_LIST_NEW_DELAY_S", ge=0, le=600)
    list_changed_delay_s: float = Field(10.0, validation_alias="TICKETS_LIST_CHANGED_DELAY_S", ge=0, le=3600)
    # closed (and spam, deleted, merged) tickets are let go of from memory after this long without activity
    # (a command for one later reads it back from its list document)
    keep_closed_s: float = Field(24 * 3600.0, validation_alias="TICKETS_KEEP_CLOSED_S", gt=0)
    # tickets held decoded (~6.5 KB each) per process; the others it owns are held as their changelog
    # record (~0.9 KB), decoded when a message or command reaches them
    hot_tickets: int = Field(5000, validation_alias="TICKETS_HOT_TICKETS", ge=100)
    # tickets a process holds at most; beyond it the least recently changed ones whose list document is
    # current are let go of (their conversation's thread key stays, ~0.15 KB) and read back from their list
    # document, one read, when a message, command or SLA event reaches them. Tickets with a clock running
    # (postponed, resolved awaiting its close) and ones whose list document is behind stay meanwhile.
    hold_tickets: int = Field(10_000, validation_alias="TICKETS_HOLD_TICKETS", ge=100)
    # outbound mail for email replies (CONTRACT.md): unset means replies are not mailed
    smtp_url: str | None = Field(None, validation_alias="SMTP_URL")
    support_email: str = Field("support@deskstream.local", validation_alias="SUPPORT_EMAIL")

    # where customers reach this service (the links of customer confirmation requests point here); unset:
    # http://<DESKSTREAM_HTTP_HOST>:<TICKETS_HTTP_PORT>
    public_url: str | None = Field(None, validation_alias="TICKETS_PUBLIC_URL", pattern=r"^https?://[^\s/]+(/\S*)?$")

    # delivery of agents' replies: back-off between attempts, and when to give up
    delivery_retry_base_s: float = Field(2.0, validation_alias="DELIVERY_RETRY_BASE_S", gt=0)
    delivery_retry_max_s: float = Field(300.0, validation_alias="DELIVERY_RETRY_MAX_S", gt=0)
    delivery_give_up_s: float = Field(24 * 3600.0, validation_alias="DELIVERY_GIVE_UP_S", gt=0)
    # SMS through Twilio's Messages API, authenticated with an API key (recommended: revocable)
    # or with the account's auth token (the one that also signs Twilio's webhooks)
    twilio_api_url: str = Field("https://api.twilio.com", validation_alias="TWILIO_API_URL")
    twilio_account_sid: str | None = Field(None, validation_alias="TWILIO_ACCOUNT_SID")
    twilio_api_key_sid: str | None = Field(None, validation_alias="TWILIO_API_KEY_SID")
    twilio_api_key_secret: SecretStr | None = Field(None, validation_alias="TWILIO_API_KEY_SECRET")
    twilio_auth_token: SecretStr | None = Field(None, validation_alias="TWILIO_AUTH_TOKEN")
    twilio_from: str | None = Field(
        None, validation_alias="TWILIO_FROM", description="sender number (E.164) or Messaging Service sid (MG...)"
    )
    twilio_status_callback: str | None = Field(None, validation_alias="TWILIO_STATUS_CALLBACK_URL")
    # WhatsApp through the Cloud API
    whatsapp_api_url: str = Field("https://graph.facebook.com/v21.0", validation_alias="WHATSAPP_API_URL")
    whatsapp_phone_number_id: str | None = Field(None, validation_alias="WHATSAPP_PHONE_NUMBER_ID")
    whatsapp_access_token: SecretStr | None = Field(None, validation_alias="WHATSAPP_ACCESS_TOKEN")
    # social and voice replies are posted to the system that owns the channel
    outbound_webhook_url: str | None = Field(None, validation_alias="OUTBOUND_WEBHOOK_URL")
    outbound_webhook_secret: SecretStr | None = Field(None, validation_alias="OUTBOUND_WEBHOOK_SECRET")

    # webhook subscriptions (services/tickets/webhooks): targets inside our own network (loopback,
    # private, link-local) are refused unless this is set (tests, a receiver on the same host)
    webhooks_allow_private: bool = Field(False, validation_alias="WEBHOOKS_ALLOW_PRIVATE")
    # back-off between attempts of one delivery (exponential with jitter, capped) and when it has failed
    webhooks_retry_base_s: float = Field(5.0, validation_alias="WEBHOOKS_RETRY_BASE_S", gt=0)
    webhooks_retry_max_s: float = Field(1800.0, validation_alias="WEBHOOKS_RETRY_MAX_S", gt=0)
    webhooks_give_up_s: float = Field(24 * 3600.0, validation_alias="WEBHOOKS_GIVE_UP_S", gt=0)
    webhooks_timeout_s: float = Field(10.0, validation_alias="WEBHOOKS_TIMEOUT_S", gt=0, le=60)
    # requests in flight per subscriber (each to a different ticket): its share, whatever state it is in
    webhooks_per_subscriber: int = Field(8, validation_alias="WEBHOOKS_PER_SUBSCRIBER", ge=1, le=100)
    # deliveries a process holds in memory (~1 KB each plus the event); beyond it, during a long outage of a
    # busy subscriber, they wait in the durable queue and are read back in pages as the lanes drain
    webhooks_max_pending: int = Field(50_000, validation_alias="WEBHOOKS_MAX_PENDING", ge=100)
    # a subscriber failing this many times in a row is probed with one delivery at a time (its lanes wait),
    # the probes WEBHOOKS_RETRY_BASE_S doubling to this far apart
    webhooks_breaker_failures: int = Field(5, validation_alias="WEBHOOKS_BREAKER_FAILURES", ge=1, le=1000)
    webhooks_probe_max_s: float = Field(300.0, validation_alias="WEBHOOKS_PROBE_MAX_S", gt=0)
    # how long the delivery log keeps attempts
    webhooks_keep_log_s: float = Field(7 * 24 * 3600.0, validation_alias="WEBHOOKS_KEEP_LOG_S", gt=0)
