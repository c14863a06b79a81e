"""Analytics settings."""
from shared.settings import ServiceSettings, port_field


class AnalyticsSettings(ServiceSettings):
    service_name: str = "analytics"
    http_port: int = port_field("analytics", 8005)
    refresh_s: float = 2.0
