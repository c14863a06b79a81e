"""Observability wired once: logging format, the per-service Prometheus registry."""

from __future__ import annotations

import logging
import sys

from prometheus_client import CollectorRegistry, Gauge, generate_latest

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every reconnect attempt at ERROR; one line per problem is enough
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # FastStream logs every record received and processed at INFO: too much for production
    logging.getLogger(f"deskstream.{service}.broker").setLevel(logging.WARNING)


class Telemetry:
    """One registry per service process; services add their own metrics to it."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        self.up = Gauge(
            "deskstream_service_ready", "1 when the service reaches Kafka and MongoDB", registry=self.registry
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
