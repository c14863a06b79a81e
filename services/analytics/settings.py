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
    # duplicate suspicion and recurring problems (issue 19; services/analytics/recurring.py); off: neither
    # is looked for and /v1/problems stays empty
    recurring: bool = Field(True, validation_alias="ANALYTICS_RECURRING")
    duplicates_window_days: int = Field(14, ge=1)  # a new ticket is compared with the customer's tickets of this period
    duplicates_max_tickets: int = Field(100_000, ge=1000)  # the index's ceiling (duplicates.py: ~1.3–2.2 KB each)
    # the defaults of the admin's rule (PUT /v1/settings/duplicates overrides both on every process, no restart):
    duplicates_threshold: float = Field(0.45, ge=0, le=1)  # a score from here on marks the ticket `duplicate_of`
    # the auto-merge rule: a suspected duplicate scoring this or more is merged into what it repeats (unset: never)
    duplicates_merge_above: float | None = Field(None, ge=0, le=1)
    problems_window_days: int = Field(7, ge=1)  # the sliding window of recurring problems
    problems_min_tickets: int = Field(3, ge=2)  # a problem is listed from this many tickets (of 2+ customers)
    problems_detect_at: int = Field(10, ge=2)  # deskstream.problem.detected once a problem has this many tickets
