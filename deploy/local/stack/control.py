"""Stopping, inspecting and cleaning a stack: down, status, clean, and kill (fault injection)."""

import http.client
import os
import shutil
import signal
import struct

from .common import StackError, flock, say, status_line
from .components import COMPONENTS, INFRA, SERVICES
from .config import FERRETDB_STOP_TIMEOUT, HOST, KAFKA_STOP_TIMEOUT, SERVICE_STOP_TIMEOUT
from .paths import StatePaths
from .probes import ProbeError, http_probe, kafka_probe, mongo_probe
from .processes import recorded_addr, running_pid, signal_group, stop_many, wait_gone
from .services import service_processes


def _down_locked(paths: StatePaths, services_only: bool, quiet: bool) -> None:
    if not paths.run_dir.is_dir():
        say(quiet, "nothing is running")
        return
    had = [n for n in COMPONENTS if paths.pid(n).exists()]
    stop_many(paths, service_processes(paths), SERVICE_STOP_TIMEOUT, quiet)
    if not services_only:
        stop_many(paths, ["kafka"], KAFKA_STOP_TIMEOUT, quiet)
        stop_many(paths, ["ferretdb"], FERRETDB_STOP_TIMEOUT, quiet)
    if not had:
        say(quiet, "nothing is running")


def down(*, state_dir: str | os.PathLike | None = None, services_only: bool = False, quiet: bool = False) -> None:
    """Stop the services, then Kafka, then FerretDB (SIGTERM, then SIGKILL after a grace period)."""
    paths = StatePaths.of(state_dir)
    if not paths.root.is_dir():
        say(quiet, "nothing is running")
        return
    with flock(paths.lock, "state", quiet):
        _down_locked(paths, services_only, quiet)


def status(*, state_dir: str | os.PathLike | None = None, quiet: bool = False) -> dict[str, str]:
    """Print and return ``{component: state}``; state is running, external, unhealthy, crashed or stopped."""
    paths = StatePaths.of(state_dir)
    result: dict[str, str] = {}
    ext = {
        "kafka": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip(),
        "ferretdb": os.environ.get("MONGODB_URL", "").strip(),
    }
    for name in [*INFRA, *(n for n in COMPONENTS if n not in INFRA and (paths.pid(n).exists() or n in SERVICES))]:
        pid = running_pid(paths, name)
        addr = recorded_addr(paths, name)
        if pid is None:
            if ext.get(name):
                state, detail = "external", ext[name]
            elif paths.pid(name).exists():
                state, detail = "crashed", f"{addr or ''} (stale pid file; log {paths.log(name)})".lstrip()
            else:
                state, detail = "stopped", ""
        else:
            host, _, port_s = (addr or "").rpartition(":")
            try:
                port = int(port_s)
                if name == "kafka":
                    kafka_probe(host or HOST, port, timeout=1.0, coordinator=False)
                elif name == "ferretdb":
                    mongo_probe(host or HOST, port, timeout=1.0)
                elif http_probe(port, timeout=1.0) != 200:
                    raise ProbeError("healthz not 200")
                state = "running"
            except (OSError, ProbeError, struct.error, ValueError, http.client.HTTPException):
                state = "unhealthy"
            shown = addr if name in INFRA else f"http://{addr}"
            detail = f"{shown} (pid {pid})"
        result[name] = state
        say(quiet, status_line(name, state, detail))
    return result


def clean(*, state_dir: str | os.PathLike | None = None, quiet: bool = False) -> None:
    """``down``, then delete the state directory's data and logs (never the cache)."""
    paths = StatePaths.of(state_dir)
    if not paths.root.is_dir():
        say(quiet, "nothing to clean")
        return
    with flock(paths.lock, "state", quiet):
        _down_locked(paths, False, quiet)
        for p in (paths.kafka_data, paths.ferretdb_data, paths.ferretdb_state, paths.log_dir, paths.run_dir):
            shutil.rmtree(p, ignore_errors=True)
        paths.server_properties.unlink(missing_ok=True)
    say(quiet, f"cleaned {paths.root}")


def kill(name: str, *, state_dir: str | os.PathLike | None = None, quiet: bool = False) -> int:
    """SIGKILL one component's process group (fault injection); its pid file stays, now stale."""
    if name not in COMPONENTS:
        raise StackError(f"unknown component {name!r} (choose from {', '.join(COMPONENTS)})")
    paths = StatePaths.of(state_dir)
    pid = running_pid(paths, name)
    if pid is None:
        raise StackError(f"{name} is not running (state dir {paths.root})")
    signal_group(pid, signal.SIGKILL)
    if wait_gone([pid], 10.0):
        raise StackError(f"{name} (pid {pid}) survived SIGKILL")
    say(quiet, status_line(name, "killed", f"(pid {pid}, SIGKILL; pid file left in place)"))
    return pid
