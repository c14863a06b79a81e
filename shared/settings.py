"""Settings every service reads from the environment (names as in CONTRACT.md)."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Common settings; each service subclasses it and adds its own port and knobs."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    service_name: str = "deskstream"
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers")
    )
    mongodb_url: str = Field("mongodb://127.0.0.1:27017", validation_alias=AliasChoices("MONGODB_URL", "mongodb_url"))
    mongodb_database: str = Field("deskstream", validation_alias=AliasChoices("MONGODB_DATABASE", "mongodb_database"))
    # Required (16 characters or more): a service refuses to start without it (shared/credentials.py)
    # unless `insecure_dev`, which opens the agent and admin endpoints and says so every minute.
    api_token: SecretStr | None = Field(None, validation_alias=AliasChoices("DESKSTREAM_API_TOKEN", "api_token"))
    agent_token: SecretStr | None = Field(None, validation_alias=AliasChoices("DESKSTREAM_AGENT_TOKEN", "agent_token"))
    insecure_dev: bool = Field(False, validation_alias=AliasChoices("DESKSTREAM_INSECURE_DEV", "insecure_dev"))
    # the key chat tokens are signed with (ingest issues them, tickets checks them); unset: derived
    # from the API token (`make up` generates one into the state directory)
    chat_secret: SecretStr | None = Field(None, validation_alias=AliasChoices("DESKSTREAM_CHAT_SECRET", "chat_secret"))
    # the key secrets kept for later use are sealed with (mailbox passwords, webhook signing secrets;
    # shared/credentials.py Vault); `make up` generates one into the state directory
    secret_key: SecretStr | None = Field(None, validation_alias=AliasChoices("DESKSTREAM_SECRET_KEY", "secret_key"))
    http_host: str = Field("127.0.0.1", validation_alias=AliasChoices("DESKSTREAM_HTTP_HOST", "http_host"))
    http_port: int = 8000
    # which of several processes of one service this is (`make up` starts two of each): for logs, for
    # what each instance keeps of its own (analytics' snapshots) and, when set explicitly (unique per
    # service), as its static membership in its consumer groups (`names_instance`)
    instance: str = Field(
        "1", validation_alias=AliasChoices("DESKSTREAM_INSTANCE", "instance"), pattern=r"^[\w.-]{1,40}$"
    )

    # a port of this process alone, beside the service's port it shares with the other instances
    instance_port: int | None = Field(None, validation_alias=AliasChoices("DESKSTREAM_INSTANCE_PORT", "instance_port"))
    log_level: str = Field("INFO", validation_alias=AliasChoices("DESKSTREAM_LOG_LEVEL", "log_level"))
    # How long an unprocessable record is retried before it is dead-lettered is not a
    # setting: decoding failures go to `deadletter` at once, infrastructure errors retry.
    retry_backoff_s: float = 1.0

    @property
    def names_instance(self) -> bool:
        """DESKSTREAM_INSTANCE was given: the process joins its groups as a static member named by it,
        so a restart takes its partitions back without a rebalance (replicas that all share one name
        must leave it unset)."""
        return "instance" in self.model_fields_set


def port_field(service: str, default: int) -> Any:  # (a FieldInfo, typed Any as pydantic's Field is)
    """`<SERVICE>_HTTP_PORT`, e.g. TICKETS_HTTP_PORT; the defaults are CONTRACT.md's ports."""
    env = f"{service.upper()}_HTTP_PORT"
    return Field(default, validation_alias=AliasChoices(env, "http_port"))
