"""SLA settings."""

from pydantic import Field

from shared.settings import ServiceSettings, port_field


class SlaSettings(ServiceSettings):
    service_name: str = "sla"
    http_port: int = port_field("sla", 8004)
    # the policy used when no admin-defined policy matches: "a first response within six hours"
    default_first_response_s: int = Field(6 * 3600, validation_alias="SLA_DEFAULT_FIRST_RESPONSE_S")
    default_warn_before_s: int = Field(30 * 60, validation_alias="SLA_DEFAULT_WARN_BEFORE_S")
    scheduler_max_sleep_s: float = 1.0
    # clocks held decoded (~1.5 KB each) per process; the others are held encoded (~0.3 KB)
    hot_clocks: int = Field(10_000, validation_alias="SLA_HOT_CLOCKS", ge=100)
