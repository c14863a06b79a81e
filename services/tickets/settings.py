"""Tickets settings."""
from shared.settings import ServiceSettings, port_field


class TicketsSettings(ServiceSettings):
    service_name: str = "tickets"
    http_port: int = port_field("tickets", 8002)
