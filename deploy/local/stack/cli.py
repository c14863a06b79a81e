"""The command line, ``stackctl.py COMMAND [options]``: argument parsing, one ``stackctl: ...`` line per
error on stderr, and the exit codes."""

import argparse
import sys
import time

from .common import StackError
from .components import COMPONENTS, DEFAULT_INSTANCES, SERVICES
from .config import (
    DEFAULT_CONTROLLER_PORT,
    DEFAULT_KAFKA_PORT,
    DEFAULT_MONGO_PORT,
    FERRETDB_VERSION,
    SERVICE_READY_TIMEOUT,
)
from .control import clean, down, kill, status
from .infra import infra_up
from .provision import provision
from .services import up


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stackctl.py",
        description="Provision, start, check and stop deskstream's local Kafka, FerretDB and services.",
        epilog="Cache: $DESKSTREAM_CACHE_DIR or ~/.cache/deskstream. Set KAFKA_BOOTSTRAP_SERVERS / "
        "MONGODB_URL to use external servers instead of the local ones.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def state_opt(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--state-dir", default=None, help="runtime data, logs and pid files (default: <repo>/.state/local)"
        )

    def infra_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--kafka-port", type=int, default=DEFAULT_KAFKA_PORT, help="Kafka client port (9092)")
        sp.add_argument(
            "--controller-port", type=int, default=DEFAULT_CONTROLLER_PORT, help="KRaft controller port (9093)"
        )
        sp.add_argument("--mongo-port", type=int, default=DEFAULT_MONGO_PORT, help="FerretDB port (27017)")
        state_opt(sp)

    sub.add_parser("provision", help="fetch/build Kafka and FerretDB into the cache")
    sp = sub.add_parser("infra-up", help="start Kafka and FerretDB (unless running) and wait until ready")
    infra_opts(sp)
    sp = sub.add_parser("up", help="infra-up, then start the services and wait for their /healthz")
    infra_opts(sp)
    sp.add_argument("--port-offset", type=int, default=0, help="add N to every service's HTTP port")
    sp.add_argument(
        "--only", default=None, metavar="NAME[,NAME]", help=f"start only these services ({','.join(SERVICES)})"
    )
    sp.add_argument(
        "--instances",
        type=int,
        default=None,
        help=f"processes per service (default $DESKSTREAM_INSTANCES or {DEFAULT_INSTANCES})",
    )
    sp.add_argument("--timeout", type=float, default=SERVICE_READY_TIMEOUT, help=argparse.SUPPRESS)
    sp = sub.add_parser("down", help="stop services, then Kafka, then FerretDB")
    sp.add_argument("--services-only", action="store_true", help="leave Kafka and FerretDB running")
    state_opt(sp)
    sp = sub.add_parser("status", help="one line per component; exit 0 if all run, 3 otherwise")
    state_opt(sp)
    sp = sub.add_parser("clean", help="down, then delete the state dir's data and logs")
    state_opt(sp)
    sp = sub.add_parser("kill", help="SIGKILL one component (fault tests); leaves its pid file")
    sp.add_argument("name", choices=COMPONENTS, metavar="NAME", help=", ".join(COMPONENTS))
    state_opt(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "provision":
            t0 = time.monotonic()
            art = provision()
            print(f"kafka {art.kafka_version}: {art.kafka_libs}")
            print(f"ferretdb {FERRETDB_VERSION}: {art.ferretdb_bin}")
            print(f"java: {art.java}  ({time.monotonic() - t0:.2f} s)")
            return 0
        if args.command == "infra-up":
            infra_up(
                state_dir=args.state_dir,
                kafka_port=args.kafka_port,
                controller_port=args.controller_port,
                mongo_port=args.mongo_port,
            )
            return 0
        if args.command == "up":
            up(
                state_dir=args.state_dir,
                kafka_port=args.kafka_port,
                controller_port=args.controller_port,
                mongo_port=args.mongo_port,
                port_offset=args.port_offset,
                only=args.only,
                instances=args.instances,
                timeout=args.timeout,
            )
            return 0
        if args.command == "down":
            down(state_dir=args.state_dir, services_only=args.services_only)
            return 0
        if args.command == "status":
            states = status(state_dir=args.state_dir)
            return 0 if all(s in ("running", "external") for s in states.values()) else 3
        if args.command == "clean":
            clean(state_dir=args.state_dir)
            return 0
        if args.command == "kill":
            kill(args.name, state_dir=args.state_dir)
            return 0
    except StackError as e:
        print(f"stackctl: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("stackctl: interrupted", file=sys.stderr, flush=True)
        return 130
    return 2
