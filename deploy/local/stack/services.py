"""Starting the five services, each as its instances, on top of the infrastructure, and waiting for
every process's ``/healthz``."""

import dataclasses
import os
import sys
import time
from collections.abc import Iterable

from .common import check_port_free, check_port_value, flock, say, status_line
from .components import (
    COMPONENTS,
    INFRA,
    instance_count,
    instance_name,
    instance_port,
    parse_only,
    service_port,
    smtp_port,
)
from .config import (
    DEFAULT_CONTROLLER_PORT,
    DEFAULT_KAFKA_PORT,
    DEFAULT_MONGO_PORT,
    HOST,
    REPO_ROOT,
    SERVICE_READY_TIMEOUT,
)
from .infra import Infra, infra_up_locked
from .paths import StatePaths
from .probes import ProbeError, http_probe, wait_ready
from .processes import check_same_addr, running_pid, spawn
from .tokens import GENERATED_SECRETS, state_secret


@dataclasses.dataclass(frozen=True)
class Stack(Infra):
    service_urls: dict[str, str]
    api_token: str | None = None  # the admin token the services were started with


def service_processes(paths: StatePaths) -> list[str]:
    """Every service process name this state dir has a pid file for."""
    return [n for n in COMPONENTS if n not in INFRA and paths.pid(n).exists()]


def up(
    *,
    state_dir: str | os.PathLike | None = None,
    kafka_port: int = DEFAULT_KAFKA_PORT,
    controller_port: int = DEFAULT_CONTROLLER_PORT,
    mongo_port: int = DEFAULT_MONGO_PORT,
    port_offset: int = 0,
    only: Iterable[str] | str | None = None,
    instances: int | None = None,
    timeout: float = SERVICE_READY_TIMEOUT,
    quiet: bool = False,
) -> Stack:
    """``infra_up`` plus the services (all, or ``only``; each as ``instances`` processes), waiting for each
    process's ``/healthz`` to answer 200. Processes already running are left as they are."""
    names = parse_only(only)
    count = instance_count(instances)
    for name in names:
        check_port_value(service_port(name, port_offset), f"{name} port (offset {port_offset})")
        check_port_value(instance_port(name, count, port_offset), f"{name} instance port (offset {port_offset})")
    paths = StatePaths.of(state_dir)
    with flock(paths.lock, "state", quiet):
        infra = infra_up_locked(
            paths, kafka_port=kafka_port, controller_port=controller_port, mongo_port=mongo_port, quiet=quiet
        )
        env = dict(os.environ)
        env.setdefault("KAFKA_BOOTSTRAP_SERVERS", infra.kafka_bootstrap)
        env.setdefault("MONGODB_URL", infra.mongodb_url)
        env.setdefault("PYTHONUNBUFFERED", "1")
        for var, filename in GENERATED_SECRETS.items():
            if not env.get(var) and not env.get("DESKSTREAM_INSECURE_DEV"):
                env[var], made = state_secret(paths, filename)
                if var == "DESKSTREAM_API_TOKEN":
                    where = paths.root / filename
                    say(
                        quiet,
                        f"API token {'generated into' if made else 'from'} {where} "
                        f"(export DESKSTREAM_API_TOKEN=$(cat {where}) to call the agent and admin APIs)",
                    )

        plan: list[tuple[str, str, int, int, int | None]] = []
        for service in names:
            for n in range(1, count + 1):
                name = instance_name(service, n)
                port, own = service_port(service, port_offset), instance_port(service, n, port_offset)
                pid = running_pid(paths, name)
                if pid is not None:
                    check_same_addr(paths, name, pid, f"{HOST}:{own}")
                else:
                    check_port_free(own, name)
                plan.append((service, name, port, own, pid))

        started: list[tuple[str, int, int, str]] = []
        for service, name, port, own, pid in plan:
            if pid is not None:
                started.append((name, pid, own, "running"))
                continue
            senv = dict(env)
            senv[f"{service.upper()}_HTTP_PORT"] = str(port)
            senv["DESKSTREAM_INSTANCE"] = name.rsplit("-", 1)[-1] if name != service else "1"
            senv["DESKSTREAM_INSTANCE_PORT"] = str(own)
            if service == "ingest":  # the SMTP door moves with the stack's ports, like HTTP
                senv.setdefault("INGEST_SMTP_PORT", str(smtp_port(port_offset)))
            if not infra.mongodb_external:  # our FerretDB: the services may index its SQLite files
                senv["DESKSTREAM_FERRETDB_SQLITE_DIR"] = str(paths.ferretdb_data)
            pid = spawn(
                paths,
                name,
                [sys.executable, "-m", f"services.{service}"],
                cwd=REPO_ROOT,
                env=senv,
                addr=f"{HOST}:{own}",
            )
            started.append((name, pid, own, "started"))

        t0 = time.monotonic()
        deadline = t0 + timeout
        for name, pid, own, state in started:

            def healthy(port: int = own) -> None:
                code = http_probe(port)
                if code != 200:
                    raise ProbeError(f"GET /healthz answered {code}")

            wait_ready(paths, name, pid, healthy, timeout, 30, deadline=deadline)
            extra = f", healthy after {time.monotonic() - t0:.1f} s" if state == "started" else ""
            say(
                quiet,
                status_line(
                    name, state, f"http://{HOST}:{service_port(name, port_offset)} (pid {pid}, own port {own}){extra}"
                ),
            )
        return Stack(
            kafka_bootstrap=infra.kafka_bootstrap,
            mongodb_url=infra.mongodb_url,
            kafka_external=infra.kafka_external,
            mongodb_external=infra.mongodb_external,
            service_urls={name: f"http://{HOST}:{service_port(name, port_offset)}" for name in names},
            api_token=env.get("DESKSTREAM_API_TOKEN") or None,
        )
