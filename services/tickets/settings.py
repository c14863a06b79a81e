"""Tickets settings."""
from pydantic import Field

from shared.settings import ServiceSettings, port_field


class TicketsSettings(ServiceSettings):
    service_name: str = "tickets"
    http_port: int = port_field("tickets", 8002)
    # SMS/WhatsApp/social/phone messages join the customer's ticket on that channel if it
    # saw activity within this window; resolved tickets reopen within the reopen window
    thread_window_s: int = Field(7 * 24 * 3600, validation_alias="TICKETS_THREAD_WINDOW_S")
    reopen_window_s: int = Field(14 * 24 * 3600, validation_alias="TICKETS_REOPEN_WINDOW_S")
    # outbound mail for email replies (CONTRACT.md): unset means replies are not mailed
    smtp_url: str | None = Field(None, validation_alias="SMTP_URL")
    support_email: str = Field("support@deskstream.local", validation_alias="SUPPORT_EMAIL")
