"""Starting the infrastructure: Kafka and FerretDB (or the external servers the environment names),
then waiting until both answer."""

import dataclasses
import os
import time
from collections.abc import Callable

from .common import StackError, atomic_write, check_port_free, check_port_value, flock, say, status_line
from .config import (
    DEFAULT_CONTROLLER_PORT,
    DEFAULT_KAFKA_PORT,
    DEFAULT_MONGO_PORT,
    FERRETDB_READY_TIMEOUT,
    HOST,
    KAFKA_READY_TIMEOUT,
)
from .ferretdb import ferretdb_cmd
from .kafka import format_kafka_storage, kafka_java_cmd, server_properties
from .paths import StatePaths
from .probes import kafka_probe, mongo_probe, wait_ready
from .processes import check_same_addr, running_pid, spawn
from .provision import provision


@dataclasses.dataclass(frozen=True)
class Infra:
    kafka_bootstrap: str
    mongodb_url: str
    kafka_external: bool
    mongodb_external: bool


def infra_up_locked(paths: StatePaths, *, kafka_port: int, controller_port: int, mongo_port: int, quiet: bool) -> Infra:
    for port, opt in (
        (kafka_port, "--kafka-port"),
        (controller_port, "--controller-port"),
        (mongo_port, "--mongo-port"),
    ):
        check_port_value(port, opt)
    if len({kafka_port, controller_port, mongo_port}) != 3:
        raise StackError("--kafka-port, --controller-port and --mongo-port must all differ")
    ext_kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    ext_mongo = os.environ.get("MONGODB_URL", "").strip()
    art = provision(kafka=not ext_kafka, ferretdb=not ext_mongo, quiet=quiet)
    paths.ensure()
    kaddr = f"{HOST}:{kafka_port}"
    maddr = f"{HOST}:{mongo_port}"

    # Decide and check everything first, so a refusal never leaves half a stack behind.
    kpid = mpid = None
    if not ext_kafka:
        kpid = running_pid(paths, "kafka")
        if kpid is not None:
            check_same_addr(paths, "kafka", kpid, kaddr)
        else:
            check_port_free(kafka_port, "kafka")
            check_port_free(controller_port, "kafka")
    if not ext_mongo:
        mpid = running_pid(paths, "ferretdb")
        if mpid is not None:
            check_same_addr(paths, "ferretdb", mpid, maddr)
        else:
            check_port_free(mongo_port, "ferretdb")

    # (name, pid, probe, timeout, state, address)
    waits: list[tuple[str, int, Callable[[], object], float, str, str]] = []
    if ext_kafka:
        say(quiet, status_line("kafka", "external", f"{ext_kafka} (KAFKA_BOOTSTRAP_SERVERS is set)"))
    else:
        state = "running"
        if kpid is None:
            atomic_write(paths.server_properties, server_properties(paths, kafka_port, controller_port))
            format_kafka_storage(art, paths)
            cmd = kafka_java_cmd(art, paths, ["kafka.Kafka", str(paths.server_properties)])
            kpid = spawn(paths, "kafka", cmd, cwd=paths.root, env=dict(os.environ), addr=kaddr)
            state = "started"
        waits.append(("kafka", kpid, lambda: kafka_probe(HOST, kafka_port), KAFKA_READY_TIMEOUT, state, kaddr))

    if ext_mongo:
        say(quiet, status_line("ferretdb", "external", "MONGODB_URL is set, using that server"))
    else:
        state = "running"
        if mpid is None:
            cmd = ferretdb_cmd(art, paths, maddr)
            mpid = spawn(paths, "ferretdb", cmd, cwd=paths.root, env=dict(os.environ), addr=maddr)
            state = "started"
        waits.insert(0, ("ferretdb", mpid, lambda: mongo_probe(HOST, mongo_port), FERRETDB_READY_TIMEOUT, state, maddr))

    t0 = time.monotonic()  # everything is launched; wait for each in turn (FerretDB is quicker)
    for name, pid, probe, timeout, state, addr in waits:
        wait_ready(paths, name, pid, probe, timeout, 20)
        extra = f", ready after {time.monotonic() - t0:.1f} s" if state == "started" else ""
        say(quiet, status_line(name, state, f"{addr} (pid {pid}){extra}"))

    return Infra(
        kafka_bootstrap=ext_kafka or kaddr,
        mongodb_url=ext_mongo or f"mongodb://{maddr}",
        kafka_external=bool(ext_kafka),
        mongodb_external=bool(ext_mongo),
    )


def infra_up(
    *,
    state_dir: str | os.PathLike | None = None,
    kafka_port: int = DEFAULT_KAFKA_PORT,
    controller_port: int = DEFAULT_CONTROLLER_PORT,
    mongo_port: int = DEFAULT_MONGO_PORT,
    quiet: bool = False,
) -> Infra:
    """Provision, then start Kafka and FerretDB unless running, and wait until both answer."""
    paths = StatePaths.of(state_dir)
    with flock(paths.lock, "state", quiet):
        return infra_up_locked(
            paths, kafka_port=kafka_port, controller_port=controller_port, mongo_port=mongo_port, quiet=quiet
        )
