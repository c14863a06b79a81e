"""Analytics settings."""

from pydantic import Field

from shared.settings import ServiceSettings, port_field


class AnalyticsSettings(ServiceSettings):
    service_name: str = "analytics"
    http_port: int = port_field("analytics", 8005)
    refresh_s: float = Field(2.0, gt=0)  # the numbers are recomputed at least this often
    min_refresh_s: float = Field(0.5, gt=0)  # and at most this often, sooner after an event was recorded
    window_days: int = Field(7, ge=1)  # the period of the summary's percentiles and top tags
    snapshot_s: float = Field(30.0, validation_alias="ANALYTICS_SNAPSHOT_S", gt=0)  # how often the numbers are saved
