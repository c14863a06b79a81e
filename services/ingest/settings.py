"""Ingest settings: webhook secrets, the public URL signatures are computed over, size and rate limits."""
from pydantic import AliasChoices, Field, SecretStr

from shared.settings import ServiceSettings, port_field


def _env(name: str, default=None):
    return Field(default, validation_alias=AliasChoices(name, name.lower()))


class IngestSettings(ServiceSettings):
    service_name: str = "ingest"
    http_port: int = port_field("ingest", 8001)
    twilio_auth_token: SecretStr | None = _env("TWILIO_AUTH_TOKEN")  # set: SMS signatures required
    meta_app_secret: SecretStr | None = _env("META_APP_SECRET")  # set: WhatsApp signatures required
    meta_verify_token: SecretStr | None = _env("META_VERIFY_TOKEN")  # answers Meta's subscription check
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
    # the producer's wait for more records before a produce request; records queued while one
    # request is in flight share the next anyway, so this only matters when load is light
    kafka_linger_ms: int = _env("INGEST_KAFKA_LINGER_MS", 1)
    # blobs of concurrent requests share one insert_many (FerretDB charges per insert far more
    # than per document); each request still answers only once its own blobs are stored
    blob_group_commit: bool = _env("INGEST_BLOB_GROUP_COMMIT", True)
    blob_group_commit_ms: float = _env("INGEST_BLOB_GROUP_COMMIT_MS", 2.0)
