"""Provision, start, check and stop deskstream's local real infrastructure.

No Docker needed: Apache Kafka (single-node KRaft, broker and controller in one
JVM) runs from jars resolved by Maven, and FerretDB (MongoDB wire protocol on an
embedded SQLite store) runs from a binary built with the Go toolchain. Both are
cached outside the repository (``$DESKSTREAM_CACHE_DIR`` or
``~/.cache/deskstream``), so a fresh clone on the same machine reuses them.

Runtime state lives in the state directory (default ``<repo>/.state/local``)::

    kafka-data/  ferretdb-data/  ferretdb-state/  kafka-server.properties
    log/<name>.log   run/<name>.pid   run/<name>.addr

Standard library only; run it with the project's virtualenv interpreter, because
the five services are started with the same interpreter (``sys.executable``).

Modules, each importing only the ones above it::

    config.py      every path, version, port and timeout
    common.py      StackError; status lines, log tails, atomic writes, locks, port checks
    components.py  the processes of a stack (Kafka, FerretDB, service instances) and their ports
    paths.py       the layout of a state directory (StatePaths)
    cache.py       the download cache and the helpers that build into it
    kafka.py       Kafka: jars via Maven, the Java check, broker configuration, storage, command line
    ferretdb.py    FerretDB: the Go build, its command line
    provision.py   provision(): fill the cache
    processes.py   daemons: spawn with pid files, recognise, signal, wait for them to go
    probes.py      readiness probes (Kafka and MongoDB wire protocols, HTTP) and wait_ready()
    tokens.py      the API token and the other secrets kept in the state directory
    infra.py       infra_up(): Kafka and FerretDB
    services.py    up(): infra_up() plus the services
    control.py     down(), status(), clean(), kill()
    cli.py         the command line

CLI (``python deploy/local/stackctl.py`` or ``python -m deploy.local.stack``)::

    stackctl.py provision
    stackctl.py infra-up [--kafka-port 9092] [--controller-port 9093] [--mongo-port 27017]
    stackctl.py up       [... same ...] [--port-offset N] [--only tickets,sla]
    stackctl.py down     [--services-only]
    stackctl.py status
    stackctl.py clean
    stackctl.py kill NAME
    (every command but provision takes --state-dir DIR)

Library use (e.g. from a pytest fixture; the repository root must be importable)::

    from deploy.local import stack as stackctl

    stack = stackctl.up(state_dir=tmp, kafka_port=29092, controller_port=29093,
                        mongo_port=27117, port_offset=20000)
    stack.kafka_bootstrap, stack.mongodb_url, stack.service_urls["tickets"]
    stackctl.down(state_dir=tmp)

Errors are raised as ``StackError``; the CLI prints them as one
``stackctl: ...`` line on stderr (plus a log excerpt where useful) and exits 1.
"""

from .cache import Artefacts
from .cli import main
from .common import StackError
from .components import (
    COMPONENTS,
    DEFAULT_INSTANCES,
    DEFAULT_SMTP_PORT,
    INFRA,
    MAX_INSTANCES,
    SERVICES,
    instance_count,
    instance_name,
    instance_port,
    service_of,
    service_port,
    smtp_port,
)
from .config import (
    DEFAULT_CONTROLLER_PORT,
    DEFAULT_KAFKA_PORT,
    DEFAULT_MONGO_PORT,
    DEFAULT_STATE_DIR,
    FERRETDB_VERSION,
    HOST,
    REPO_ROOT,
)
from .control import clean, down, kill, status
from .ferretdb import ferretdb_sqlite_flag
from .infra import Infra, infra_up
from .paths import StatePaths
from .probes import ProbeError, http_probe, kafka_probe, mongo_probe
from .processes import running_pid
from .provision import provision
from .services import Stack, up
from .tokens import GENERATED_SECRETS, api_token, state_secret

__all__ = [
    "COMPONENTS",
    "DEFAULT_CONTROLLER_PORT",
    "DEFAULT_INSTANCES",
    "DEFAULT_KAFKA_PORT",
    "DEFAULT_MONGO_PORT",
    "DEFAULT_SMTP_PORT",
    "DEFAULT_STATE_DIR",
    "FERRETDB_VERSION",
    "GENERATED_SECRETS",
    "HOST",
    "INFRA",
    "MAX_INSTANCES",
    "REPO_ROOT",
    "SERVICES",
    "Artefacts",
    "Infra",
    "ProbeError",
    "Stack",
    "StackError",
    "StatePaths",
    "api_token",
    "clean",
    "down",
    "ferretdb_sqlite_flag",
    "http_probe",
    "infra_up",
    "instance_count",
    "instance_name",
    "instance_port",
    "kafka_probe",
    "kill",
    "main",
    "mongo_probe",
    "provision",
    "running_pid",
    "service_of",
    "service_port",
    "smtp_port",
    "state_secret",
    "status",
    "up",
]
