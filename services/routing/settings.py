"""Routing settings."""
from shared.settings import ServiceSettings, port_field


class RoutingSettings(ServiceSettings):
    service_name: str = "routing"
    http_port: int = port_field("routing", 8003)
