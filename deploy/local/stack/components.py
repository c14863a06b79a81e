"""The processes a stack is made of and where they listen: Kafka, FerretDB and the five services,
each service run as one or more instances."""

import os
from collections.abc import Iterable

from .common import StackError

SERVICES: dict[str, int] = {
    "ingest": 8001,
    "tickets": 8002,
    "routing": 8003,
    "sla": 8004,
    "analytics": 8005,
}
INFRA = ("kafka", "ferretdb")
# every service runs as this many processes (DESKSTREAM_INSTANCES), all serving its port (SO_REUSEPORT)
# and sharing its work through Kafka's consumer groups; instance 1 is named after the service, the
# others `<service>-<n>`, each also on a port of its own (the service's + 100 * n) for health checks
DEFAULT_INSTANCES = 2
MAX_INSTANCES = 4
COMPONENTS = INFRA + tuple(f"{s}-{i}" if i > 1 else s for s in SERVICES for i in range(1, MAX_INSTANCES + 1))

DEFAULT_SMTP_PORT = 2525  # ingest's SMTP door (INGEST_SMTP_PORT)


def parse_only(only: Iterable[str] | str | None) -> list[str]:
    if only is None:
        return list(SERVICES)
    items = only.split(",") if isinstance(only, str) else list(only)
    names = [n.strip() for n in items if n and n.strip()]
    bad = [n for n in names if n not in SERVICES]
    if bad:
        raise StackError(f"unknown service {', '.join(bad)} (choose from {', '.join(SERVICES)})")
    return [n for n in SERVICES if n in names]


def service_port(name: str, port_offset: int = 0) -> int:
    return SERVICES[service_of(name)] + port_offset


def service_of(name: str) -> str:
    """The service a process name belongs to: `tickets-2` is the second tickets instance."""
    return name.rsplit("-", 1)[0] if name.rsplit("-", 1)[-1].isdigit() else name


def instance_name(service: str, n: int) -> str:
    return service if n == 1 else f"{service}-{n}"


def smtp_port(port_offset: int = 0) -> int:
    """Ingest's SMTP door (all of its processes share it): 2525, shifted like the HTTP ports."""
    return DEFAULT_SMTP_PORT + port_offset


def instance_port(service: str, n: int, port_offset: int = 0) -> int:
    return SERVICES[service] + port_offset + 100 * n


def instance_count(instances: int | None = None) -> int:
    count = instances if instances is not None else int(os.environ.get("DESKSTREAM_INSTANCES", DEFAULT_INSTANCES))
    if not 1 <= count <= MAX_INSTANCES:
        raise StackError(f"DESKSTREAM_INSTANCES must be 1 to {MAX_INSTANCES}, not {count}")
    return count
