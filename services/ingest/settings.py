"""Ingest settings: webhook secrets, the public URL signatures are computed over, size and rate limits."""

from typing import Any, NamedTuple

from pydantic import AliasChoices, Field, SecretStr

from shared.settings import ServiceSettings, port_field


def _env(name: str, default: Any = None) -> Any:  # (a FieldInfo, typed Any as pydantic's Field is)
    return Field(default, validation_alias=AliasChoices(name, name.lower()))


class SignedDoor(NamedTuple):
    """A channel whose webhooks are signature-checked once its provider's secret is set."""

    channel: str
    provider: str
    setting: str  # the IngestSettings field holding the secret
    env: str
    paths: tuple[str, ...]


SIGNED_DOORS = (
    SignedDoor(
        "SMS", "Twilio", "twilio_auth_token", "TWILIO_AUTH_TOKEN", ("/v1/inbound/sms", "/v1/inbound/sms/status")
    ),
    SignedDoor("WhatsApp", "Meta", "meta_app_secret", "META_APP_SECRET", ("/v1/inbound/whatsapp",)),
)


class IngestSettings(ServiceSettings):
    service_name: str = "ingest"
    http_port: int = port_field("ingest", 8001)
    twilio_auth_token: SecretStr | None = _env("TWILIO_AUTH_TOKEN")  # set: SMS signatures required
    meta_app_secret: SecretStr | None = _env("META_APP_SECRET")  # set: WhatsApp signatures required
    meta_verify_token: SecretStr | None = _env("META_VERIFY_TOKEN")  # answers Meta's subscription check
    # the authserv-ids of the relays whose Authentication-Results headers are trusted (comma-separated,
    # e.g. "mx.shop.example"): a mail whose sender passed DMARC, DKIM or SPF there has a verified sender
    trusted_authserv_ids: str = _env("INGEST_TRUSTED_AUTHSERV_IDS", "")
    public_url: str = _env("INGEST_PUBLIC_URL", "http://127.0.0.1:8001")
    max_email_bytes: int = _env("INGEST_MAX_EMAIL_BYTES", 10 * 1024 * 1024)
    max_json_bytes: int = _env("INGEST_MAX_JSON_BYTES", 256 * 1024)
    max_form_upload_bytes: int = _env("INGEST_MAX_FORM_UPLOAD_BYTES", 10 * 1024 * 1024)
    # one stored document each; FerretDB and MongoDB hold at most 16 MiB a document
    max_blob_bytes: int = _env("INGEST_MAX_BLOB_BYTES", 10 * 1024 * 1024)
    # per sender identity and channel: a sustained rate a minute after a burst; 0 turns it off.
    # No person writes this fast; a mail loop with an auto-responder or a flooding bot does.
    rate_limit_per_min: float = _env("INGEST_RATE_LIMIT_PER_MIN", 120)
    rate_limit_burst: int = _env("INGEST_RATE_LIMIT_BURST", 60)
    # per client address, every request to the doors alike, before its body is read; 0 turns it off.
    # Ten a second sustained (five times the per-sender rate), after a burst of 300: far above what
    # one person, or an office or mobile carrier putting hundreds behind one address, sends, and
    # above what a mail relay or an unsigned provider sends a mid-size retailer from one of its
    # addresses; a single host flooding with ever new sender identities is held to it. Signed
    # doors (a secret set) and the exempt networks are not limited: see ratelimit.AddressLimit.
    ip_rate_limit_per_min: float = _env("INGEST_IP_RATE_LIMIT_PER_MIN", 600)
    ip_rate_limit_burst: int = _env("INGEST_IP_RATE_LIMIT_BURST", 300)
    # comma-separated networks never limited per address: loopback (the demo, tests and benchmarks
    # post from it, as does a proxy on this host that does not forward the client's address); add
    # a mail relay's or provider's addresses that send more
    ip_rate_limit_exempt: str = _env("INGEST_IP_RATE_LIMIT_EXEMPT", "127.0.0.0/8,::1")
    # the producer's wait for more records before a produce request; records queued while one
    # request is in flight share the next anyway, so this only matters when load is light
    kafka_linger_ms: int = _env("INGEST_KAFKA_LINGER_MS", 1)
    # once records have waited this long without the broker acknowledging any, new messages are
    # refused (503, Retry-After) until it acknowledges again, rather than held (0: always held)
    kafka_stall_s: float = Field(
        3.0, ge=0, validation_alias=AliasChoices("INGEST_KAFKA_STALL_S", "ingest_kafka_stall_s")
    )
    # blobs of concurrent requests share one insert_many (FerretDB charges per insert far more
    # than per document); each request still answers only once its own blobs are stored
    blob_group_commit: bool = _env("INGEST_BLOB_GROUP_COMMIT", True)
    blob_group_commit_ms: float = _env("INGEST_BLOB_GROUP_COMMIT_MS", 2.0)

    # the SMTP door (services/ingest/smtp.py): 0 turns it off; the host defaults to DESKSTREAM_HTTP_HOST
    smtp_port: int = _env("INGEST_SMTP_PORT", 2525)
    smtp_host: str | None = _env("INGEST_SMTP_HOST")
    # how long a mail may wait for Kafka's acknowledgement before the sending MTA hears 451 and retries
    smtp_ack_timeout_s: float = _env("INGEST_SMTP_ACK_TIMEOUT_S", 10.0)
    # comma-separated domains the SMTP door takes mail for (RCPT TO); empty: any recipient
    support_domains: str = _env("SUPPORT_DOMAINS", "")

    def unsigned_doors(self) -> list[SignedDoor]:
        """The signable channels whose secret is unset: they accept posts from anyone."""
        return [door for door in SIGNED_DOORS if not _secret_set(getattr(self, door.setting))]


def _secret_set(value: SecretStr | None) -> bool:
    return bool(value and value.get_secret_value())
