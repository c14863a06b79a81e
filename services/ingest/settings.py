"""Ingest settings."""
from shared.settings import ServiceSettings, port_field


class IngestSettings(ServiceSettings):
    service_name: str = "ingest"
    http_port: int = port_field("ingest", 8001)
