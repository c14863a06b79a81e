#!/usr/bin/env python3
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

CLI::

    stackctl.py provision
    stackctl.py infra-up [--kafka-port 9092] [--controller-port 9093] [--mongo-port 27017]
    stackctl.py up       [... same ...] [--port-offset N] [--only tickets,sla]
    stackctl.py down     [--services-only]
    stackctl.py status
    stackctl.py clean
    stackctl.py kill NAME
    (every command but provision takes --state-dir DIR)

Library use (e.g. from a pytest fixture, after importing this file by path)::

    stack = stackctl.up(state_dir=tmp, kafka_port=29092, controller_port=29093,
                        mongo_port=27117, port_offset=20000)
    stack.kafka_bootstrap, stack.mongodb_url, stack.service_urls["tickets"]
    stackctl.down(state_dir=tmp)

Errors are raised as ``StackError``; the CLI prints them as one
``stackctl: ...`` line on stderr (plus a log excerpt where useful) and exits 1.
"""

import argparse
import base64
import contextlib
import dataclasses
import fcntl
import hashlib
import http.client
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Iterable, Iterator

# --------------------------------------------------------------------------------------
# constants

SCRIPT_DIR = Path(__file__).resolve().parent
REPO_ROOT = SCRIPT_DIR.parent.parent
KAFKA_POM = SCRIPT_DIR / "kafka" / "pom.xml"
KAFKA_LOG4J = SCRIPT_DIR / "kafka" / "log4j2.properties"
DEFAULT_STATE_DIR = REPO_ROOT / ".state" / "local"

FERRETDB_VERSION = "1.24.2"
FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_PACKAGE = FERRETDB_MODULE + "/cmd/ferretdb"
MIN_JAVA = 17
MIN_GO = (1, 24)  # FerretDB 1.24's go.mod says "go 1.24"

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

DEFAULT_KAFKA_PORT = 9092
DEFAULT_CONTROLLER_PORT = 9093
DEFAULT_MONGO_PORT = 27017
DEFAULT_SMTP_PORT = 2525  # ingest's SMTP door (INGEST_SMTP_PORT)
HOST = "127.0.0.1"

KAFKA_READY_TIMEOUT = 60.0
FERRETDB_READY_TIMEOUT = 30.0
SERVICE_READY_TIMEOUT = 120.0
SERVICE_STOP_TIMEOUT = 15.0
KAFKA_STOP_TIMEOUT = 30.0
FERRETDB_STOP_TIMEOUT = 10.0

KAFKA_JVM_OPTS = [
    "-Xmx1G",
    "-Xms512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-Djava.awt.headless=true",
]

INSTALL_HINTS = {
    "java": f"install a Java {MIN_JAVA}+ runtime (Debian: apt-get install openjdk-17-jre-headless)",
    "mvn": "install Maven (Debian: apt-get install maven)",
    "go": f"install Go {MIN_GO[0]}.{MIN_GO[1]} or newer (Debian: apt-get install golang-go, "
    "from backports if the release's Go is older)",
}


class StackError(Exception):
    """A failure worth one clear line to the user (no traceback)."""


# --------------------------------------------------------------------------------------
# small helpers


def _say(quiet: bool, line: str) -> None:
    if not quiet:
        print(line, flush=True)


def _line(name: str, state: str, detail: str = "") -> str:
    return f"{name:<11} {state:<8} {detail}".rstrip()


def _tail(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return f"    (no log at {path})"
    rows = data.splitlines()[-lines:]
    return "\n".join("    " + r for r in rows) if rows else "    (log is empty)"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def _flock(path: Path, what: str, quiet: bool) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (created if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say(quiet, f"waiting for another stackctl holding the {what} lock ({path}) ...")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _port_in_use(port: int) -> bool:
    """True when something listens on (or holds) 127.0.0.1:port / *:port."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def _check_port_free(port: int, name: str) -> None:
    if _port_in_use(port):
        raise StackError(f"port {port} is already in use by another process (not a deskstream {name})")


def _check_port_value(port: int, option: str) -> None:
    if not 0 < port < 65536:
        raise StackError(f"{option} {port} is not a valid TCP port")


# --------------------------------------------------------------------------------------
# paths


def _cache_dir(override: str | os.PathLike | None = None) -> Path:
    if override:
        return Path(override).expanduser().resolve()
    env = os.environ.get("DESKSTREAM_CACHE_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return Path.home() / ".cache" / "deskstream"


@dataclasses.dataclass(frozen=True)
class StatePaths:
    root: Path

    @classmethod
    def of(cls, state_dir: str | os.PathLike | None) -> "StatePaths":
        root = Path(state_dir).expanduser() if state_dir else DEFAULT_STATE_DIR
        return cls(root.resolve())

    @property
    def kafka_data(self) -> Path:
        return self.root / "kafka-data"

    @property
    def ferretdb_data(self) -> Path:
        return self.root / "ferretdb-data"

    @property
    def ferretdb_state(self) -> Path:
        return self.root / "ferretdb-state"

    @property
    def server_properties(self) -> Path:
        return self.root / "kafka-server.properties"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def pid(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def addr(self, name: str) -> Path:
        return self.run_dir / f"{name}.addr"

    def ensure(self) -> None:
        for d in (self.root, self.kafka_data, self.ferretdb_data, self.ferretdb_state, self.log_dir, self.run_dir):
            d.mkdir(parents=True, exist_ok=True)


# --------------------------------------------------------------------------------------
# provisioning


def _kafka_version() -> str:
    """Kafka version pinned in deploy/local/kafka/pom.xml (the single source of truth)."""
    try:
        root = ET.parse(KAFKA_POM).getroot()
    except (OSError, ET.ParseError) as e:
        raise StackError(f"cannot read {KAFKA_POM}: {e}") from None
    for el in root.iter():
        if el.tag.endswith("}kafka.version") or el.tag == "kafka.version":
            if el.text and el.text.strip():
                return el.text.strip()
    raise StackError(f"no <kafka.version> property in {KAFKA_POM}")


@dataclasses.dataclass(frozen=True)
class Artefacts:
    cache_dir: Path
    kafka_version: str
    kafka_home: Path  # <cache>/kafka-<v>; jars in libs/
    ferretdb_bin: Path  # <cache>/ferretdb-<v>/bin/ferretdb
    java: str | None  # java executable (None when Kafka was not asked for)

    @property
    def kafka_libs(self) -> Path:
        return self.kafka_home / "libs"


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise StackError(f"'{name}' is not installed; {INSTALL_HINTS[name]}")
    return path


_JAVA_CHECKED: dict[tuple[str, float], str] = {}


def _find_java() -> str:
    """The java launcher (JAVA_HOME first, like Maven), checked to be >= 17."""
    home = os.environ.get("JAVA_HOME")
    cand = Path(home) / "bin" / "java" if home else None
    java = str(cand) if cand and os.access(cand, os.X_OK) else _require_tool("java")
    try:
        key = (java, os.stat(java).st_mtime)
    except OSError:
        key = (java, 0.0)
    if key in _JAVA_CHECKED:
        return java
    try:
        res = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise StackError(f"cannot run '{java} -version': {e}") from None
    text = (res.stderr or "") + (res.stdout or "")
    m = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not m:
        first = text.strip().splitlines()[0] if text.strip() else "no output"
        raise StackError(f"cannot tell the Java version of {java} ({first})")
    major = int(m.group(1))
    if major == 1:  # "1.8.0_x" style
        major = int(m.group(2) or 0)
    if major < MIN_JAVA:
        raise StackError(
            f"Java {major} found at {java}, but Kafka needs Java {MIN_JAVA} or newer; {INSTALL_HINTS['java']} "
            "or point JAVA_HOME at one"
        )
    _JAVA_CHECKED[key] = java
    return java


def _check_go(go: str) -> None:
    try:
        res = subprocess.run([go, "env", "GOVERSION", "GOTOOLCHAIN"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise StackError(f"cannot run '{go} env': {e}") from None
    lines = res.stdout.split("\n")
    m = re.match(r"go(\d+)\.(\d+)", lines[0].strip()) if lines else None
    toolchain = lines[1].strip() if len(lines) > 1 else ""
    if m and (int(m.group(1)), int(m.group(2))) < MIN_GO and toolchain.startswith("local"):
        raise StackError(
            f"{lines[0].strip()} found at {go}, but FerretDB {FERRETDB_VERSION} needs Go "
            f"{MIN_GO[0]}.{MIN_GO[1]} or newer (GOTOOLCHAIN=local forbids switching); {INSTALL_HINTS['go']}"
        )


def _run_step(step: str, cmd: list[str], *, cwd: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
    with open(log_path, "a") as log:
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        try:
            rc = subprocess.run(
                cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            ).returncode
        except OSError as e:
            log.write(f"{e}\n")
            rc = -1
        log.write(f"[exit {rc}]\n")
    if rc != 0:
        raise StackError(f"{step} failed (exit {rc}); full output in {log_path}")


def _pom_digest() -> str:
    return hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()[:16]


def _kafka_ready_in(home: Path, version: str, digest: str) -> bool:
    """Jars present and resolved from the current pom.xml (a changed pom re-provisions)."""
    try:
        stamp = (home / "POM.sha256").read_text().strip()
    except OSError:
        return False
    return stamp == digest and (home / "libs" / f"kafka_2.13-{version}.jar").is_file()


def _ferretdb_ready_in(home: Path) -> bool:
    b = home / "bin" / "ferretdb"
    return b.is_file() and os.access(b, os.X_OK)


def _replace_dir(src: Path, final: Path, cache: Path) -> None:
    """Move a finished build into place; an older build there is moved aside first."""
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=".tmp-old-", dir=cache)) / final.name
        os.rename(final, old)
    os.rename(src, final)  # atomic: a half-done build is never taken as done
    if old is not None:
        shutil.rmtree(old.parent, ignore_errors=True)


def _build_kafka(cache: Path, version: str, digest: str, final: Path, log_path: Path) -> None:
    mvn = _require_tool("mvn")
    log_path.write_text(f"# stackctl: resolving Kafka {version} jars, {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-kafka-", dir=cache))
    try:
        # Maven runs on a copy of the pom so nothing (target/ etc.) lands in the repo.
        shutil.copy2(KAFKA_POM, tmp / "pom.xml")
        dist = tmp / "dist"
        libs = dist / "libs"
        _run_step(
            f"downloading the Kafka {version} jars with Maven",
            [mvn, "-B", "-ntp", "-f", str(tmp / "pom.xml"), "dependency:copy-dependencies",
             "-DincludeScope=runtime", f"-DoutputDirectory={libs}"],
            cwd=tmp, log_path=log_path,
        )
        if not (libs / f"kafka_2.13-{version}.jar").is_file():
            raise StackError(f"Maven finished but kafka_2.13-{version}.jar is missing; see {log_path}")
        (dist / "POM.sha256").write_text(f"{digest}\n")
        _replace_dir(dist, final, cache)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build_ferretdb(cache: Path, final: Path, log_path: Path) -> None:
    go = _require_tool("go")
    _check_go(go)
    log_path.write_text(f"# stackctl: building FerretDB {FERRETDB_VERSION}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-ferretdb-", dir=cache))
    try:
        src = tmp / "src"
        src.mkdir()
        dist = tmp / "dist"
        binary = dist / "bin" / "ferretdb"
        binary.parent.mkdir(parents=True)
        env = dict(os.environ, CGO_ENABLED="0", GO111MODULE="on", GOWORK="off")

        def step(what: str, *args: str) -> None:
            _run_step(f"FerretDB build: {what}", [go, *args], cwd=src, log_path=log_path, env=env)

        step("go mod init", "mod", "init", "deskstream.local/ferretdb-build")
        step(f"fetching {FERRETDB_MODULE}@v{FERRETDB_VERSION}", "get", "-tool", f"{FERRETDB_PACKAGE}@v{FERRETDB_VERSION}")
        # A plain module build panics at start: FerretDB embeds build/version/version.txt,
        # which is generated upstream and absent from the module. Vendor it and add it.
        step("go mod vendor", "mod", "vendor")
        vdir = src / "vendor" / Path(*FERRETDB_MODULE.split("/")) / "build" / "version"
        if not vdir.is_dir():
            raise StackError(f"FerretDB build: {vdir} missing after 'go mod vendor'; see {log_path}")
        (vdir / "version.txt").write_text(f"v{FERRETDB_VERSION}\n")
        step("go build", "build", "-mod=vendor", "-o", str(binary), FERRETDB_PACKAGE)
        try:
            res = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
            out = res.stdout + res.stderr
        except (OSError, subprocess.TimeoutExpired) as e:
            out = str(e)
        with open(log_path, "a") as log:
            log.write(f"\n$ {binary} --version\n{out}\n")
        if f"version: v{FERRETDB_VERSION}" not in out:
            raise StackError(f"FerretDB build: the built binary does not run; full output in {log_path}")
        _replace_dir(dist, final, cache)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def provision(
    *,
    cache_dir: str | os.PathLike | None = None,
    kafka: bool = True,
    ferretdb: bool = True,
    quiet: bool = False,
) -> Artefacts:
    """Make sure the Kafka jars and the FerretDB binary are in the cache.

    Cheap when both are there. Builds run under ``<cache>/.lock`` into temp dirs
    that are renamed into place only when complete.
    """
    cache = _cache_dir(cache_dir)
    kversion = _kafka_version()
    kdigest = _pom_digest()
    khome = cache / f"kafka-{kversion}"
    fhome = cache / f"ferretdb-{FERRETDB_VERSION}"
    java = _find_java() if kafka else None
    art = Artefacts(cache, kversion, khome, fhome / "bin" / "ferretdb", java)

    need_k = kafka and not _kafka_ready_in(khome, kversion, kdigest)
    need_f = ferretdb and not _ferretdb_ready_in(fhome)
    if not (need_k or need_f):
        return art
    # tool checks before any waiting or downloading
    if need_k:
        _require_tool("mvn")
    if need_f:
        _check_go(_require_tool("go"))

    cache.mkdir(parents=True, exist_ok=True)
    with _flock(cache / ".lock", "cache", quiet):
        need_k = kafka and not _kafka_ready_in(khome, kversion, kdigest)  # someone else may have finished
        need_f = ferretdb and not _ferretdb_ready_in(fhome)
        for stale in cache.glob(".tmp-*"):  # leftovers of interrupted builds (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        logs = cache / "logs"
        logs.mkdir(exist_ok=True)
        jobs: list[tuple[str, Callable[[], None]]] = []
        if need_k:
            jobs.append((f"Kafka {kversion} jars (Maven)",
                         lambda: _build_kafka(cache, kversion, kdigest, khome, logs / f"kafka-{kversion}.log")))
        if need_f:
            jobs.append((f"FerretDB {FERRETDB_VERSION} (Go build)",
                         lambda: _build_ferretdb(cache, fhome, logs / f"ferretdb-{FERRETDB_VERSION}.log")))
        errors: list[BaseException] = []

        def run(label: str, fn: Callable[[], None]) -> None:
            t0 = time.monotonic()
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
            else:
                _say(quiet, f"provision: {label} ready in {time.monotonic() - t0:.0f} s")

        for label, _ in jobs:
            _say(quiet, f"provision: fetching {label} into {cache} ...")
        threads = [threading.Thread(target=run, args=job, daemon=True) for job in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            for e in errors:
                if not isinstance(e, StackError):
                    raise e
            raise StackError("\n".join(str(e) for e in errors))
    return art


# --------------------------------------------------------------------------------------
# processes


class _DaemonPopen(subprocess.Popen):
    """A Popen for a daemon that is meant to outlive this object (it has a pid file).

    Only difference: no "subprocess N is still running" ResourceWarning when the
    object goes away (e.g. at the end of a pytest session that leaves the stack up).
    """

    def __del__(self, _maxsize: int = sys.maxsize, _warn: Callable[..., None] = lambda *a, **k: None) -> None:
        super().__del__(_maxsize, _warn)


# Daemons started by this interpreter, so that we can reap them: when a library
# caller (a test fixture) outlives a daemon, the dead daemon stays a zombie until reaped.
_CHILDREN: dict[int, subprocess.Popen] = {}


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    """True for a live process; a zombie counts as dead (and is reaped if it is our child)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        state = "X"
    if state in ("Z", "X", "x"):
        proc = _CHILDREN.pop(pid, None)
        if proc is not None:
            proc.poll()
        return False
    return True


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def _group_members(pgid: int) -> list[int]:
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        # fields: state ppid pgrp ...
        if len(fields) > 2 and fields[0] not in ("Z", "X", "x") and int(fields[2]) == pgid:
            out.append(int(entry.name))
    return out


def ferretdb_sqlite_flag(paths: StatePaths) -> str:
    """FerretDB's SQLite files, in WAL mode (FerretDB's default) with synchronous=NORMAL: a commit is
    not fsynced on its own but with the next checkpoint, so it survives FerretDB being killed, not
    the machine losing power — the durability of the local Kafka broker's default (it does not fsync
    per record either). With synchronous=FULL every insert command, and every statement of an update
    command, waited for its own fsync, one after another (SQLite has one writer)."""
    return f"--sqlite-url=file:{paths.ferretdb_data}/?_pragma=synchronous(normal)"


def _matcher(paths: StatePaths, name: str) -> Callable[[list[str]], bool]:
    if name == "kafka":
        props = str(paths.server_properties)
        return lambda argv: "kafka.Kafka" in argv and props in argv
    if name == "ferretdb":
        flag = ferretdb_sqlite_flag(paths)
        return lambda argv: bool(argv) and Path(argv[0]).name == "ferretdb" and flag in argv
    module = f"services.{service_of(name)}"
    return lambda argv: "-m" in argv and module in argv


def _running_pid(paths: StatePaths, name: str) -> int | None:
    """Pid of our live ``name`` process, or None (no/stale pid file, reused pid)."""
    pid = _read_pid(paths.pid(name))
    if pid is None or not _alive(pid):
        return None
    return pid if _matcher(paths, name)(_cmdline(pid)) else None


def _recorded_addr(paths: StatePaths, name: str) -> str | None:
    try:
        return paths.addr(name).read_text().strip() or None
    except OSError:
        return None


def _spawn(paths: StatePaths, name: str, cmd: list[str], *, cwd: Path, env: dict[str, str], addr: str) -> int:
    log_path = paths.log(name)
    with open(log_path, "ab") as log:
        log.write(f"\n===== stackctl {time.strftime('%Y-%m-%d %H:%M:%S')}: starting {name}: {' '.join(cmd)}\n".encode())
        log.flush()
        try:
            proc = _DaemonPopen(
                cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )
        except OSError as e:
            raise StackError(f"cannot start {name}: {e}") from None
    _CHILDREN[proc.pid] = proc
    _atomic_write(paths.pid(name), f"{proc.pid}\n")
    _atomic_write(paths.addr(name), f"{addr}\n")
    return proc.pid


def _signal_group(pid: int, sig: int) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError as e:
        raise StackError(f"cannot signal pid {pid}: {e}") from None


def _wait_gone(pids: Iterable[int], timeout: float, gone_at: dict[int, float] | None = None) -> set[int]:
    """Wait until none of the process groups led by ``pids`` has live members; return the rest."""
    pending = set(pids)
    deadline = time.monotonic() + timeout
    while pending:
        for pid in list(pending):
            if not _alive(pid) and not _group_members(pid):
                pending.discard(pid)
                if gone_at is not None:
                    gone_at[pid] = time.monotonic()
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    return pending


def _stop_many(paths: StatePaths, names: list[str], timeout: float, quiet: bool) -> None:
    """SIGTERM the process groups of ``names``, SIGKILL what is left after ``timeout``."""
    targets: dict[str, int] = {}
    for name in names:
        pid = _running_pid(paths, name)
        if pid is not None:
            targets[name] = pid
            _signal_group(pid, signal.SIGTERM)
        elif paths.pid(name).exists():
            _say(quiet, _line(name, "stopped", "(stale pid file removed)"))
    t0 = time.monotonic()
    gone_at: dict[int, float] = {}
    left = _wait_gone(targets.values(), timeout, gone_at)
    killed = set()
    for name, pid in targets.items():
        if pid in left:
            killed.add(name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    if left:
        _wait_gone(left, 5.0)
    for name in names:
        paths.pid(name).unlink(missing_ok=True)
        paths.addr(name).unlink(missing_ok=True)
    for name, pid in targets.items():
        how = f"killed after {timeout:.0f} s" if name in killed else f"in {gone_at.get(pid, t0) - t0:.1f} s"
        _say(quiet, _line(name, "stopped", f"(pid {pid}, {how})"))


# --------------------------------------------------------------------------------------
# Kafka wire protocol probe (readiness)


class ProbeError(Exception):
    pass


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ProbeError("connection closed by peer")
        buf += chunk
    return bytes(buf)


def _kafka_call(sock: socket.socket, api_key: int, version: int, corr: int, body: bytes) -> bytes:
    client = b"stackctl"
    # request header v1 (non-flexible versions only): key, version, correlation id, client id
    msg = struct.pack(">hhih", api_key, version, corr, len(client)) + client + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    data = _recv_exact(sock, size)
    (rcorr,) = struct.unpack_from(">i", data, 0)
    if rcorr != corr:
        raise ProbeError(f"correlation id mismatch ({rcorr} != {corr})")
    return data[4:]  # response header v0 is only the correlation id


def _kstr(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.off = data, 0

    def take(self, fmt: str):
        vals = struct.unpack_from(fmt, self.data, self.off)
        self.off += struct.calcsize(fmt)
        return vals[0] if len(vals) == 1 else vals

    def nstring(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        s = self.data[self.off:self.off + n].decode("utf-8", "replace")
        self.off += n
        return s


def _pick(versions: dict[int, tuple[int, int]], key: int, lo: int, hi: int) -> int | None:
    if key not in versions:
        return None
    smin, smax = versions[key]
    v = max(smin, lo)
    return v if v <= min(smax, hi) else None


def kafka_probe(host: str, port: int, *, timeout: float = 2.0, coordinator: bool = True) -> dict:
    """Ask a broker whether it is ready to serve clients.

    ApiVersions v0 must answer without error, Metadata must list at least one
    broker, and (``coordinator=True``) FindCoordinator for a group must succeed,
    which also creates ``__consumer_offsets`` so consumer groups start fast.
    Raises ProbeError/OSError when not ready.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        r = _Reader(_kafka_call(sock, 18, 0, 1, b""))
        err = r.take(">h")
        if err != 0:
            raise ProbeError(f"ApiVersions error code {err}")
        versions = {}
        for _ in range(r.take(">i")):
            k, lo, hi = r.take(">hhh")
            versions[k] = (lo, hi)

        mv = _pick(versions, 3, 1, 8)  # non-flexible Metadata versions we can encode
        if mv is None:
            raise ProbeError(f"no usable Metadata version (broker offers {versions.get(3)})")
        body = struct.pack(">i", 0)  # empty topic list: brokers only
        if mv >= 4:
            body += b"\x00"  # allow_auto_topic_creation
        if mv >= 8:
            body += b"\x00\x00"  # include cluster/topic authorized operations
        r = _Reader(_kafka_call(sock, 3, mv, 2, body))
        if mv >= 3:
            r.take(">i")  # throttle
        brokers = []
        for _ in range(r.take(">i")):
            node = r.take(">i")
            bhost = r.nstring()
            bport = r.take(">i")
            r.nstring()  # rack
            brokers.append((node, bhost, bport))
        if not brokers:
            raise ProbeError("Metadata lists no broker yet")
        info = {"brokers": brokers, "api_versions": versions}

        if coordinator:
            fv = _pick(versions, 10, 1, 2)
            if fv is not None:
                r = _Reader(_kafka_call(sock, 10, fv, 3, _kstr("stackctl-readiness") + b"\x00"))
                r.take(">i")  # throttle
                err = r.take(">h")
                if err != 0:
                    raise ProbeError(f"group coordinator not available yet (error code {err})")
        return info


# --------------------------------------------------------------------------------------
# MongoDB wire protocol probe (readiness)


def _bson_encode(doc: dict) -> bytes:
    out = bytearray()
    for k, v in doc.items():
        key = k.encode() + b"\0"
        if isinstance(v, bool):
            out += b"\x08" + key + (b"\x01" if v else b"\x00")
        elif isinstance(v, int):
            out += b"\x10" + key + struct.pack("<i", v)
        elif isinstance(v, str):
            b = v.encode() + b"\0"
            out += b"\x02" + key + struct.pack("<i", len(b)) + b
        else:
            raise TypeError(f"unsupported BSON value {v!r}")
    return struct.pack("<i", len(out) + 5) + bytes(out) + b"\0"


def _bson_decode(data: bytes) -> dict:
    """Top-level scalars of a BSON document (nested documents are skipped)."""
    (total,) = struct.unpack_from("<i", data, 0)
    off, end, out = 4, total - 1, {}
    while off < end:
        t = data[off]
        off += 1
        nul = data.index(b"\0", off)
        key = data[off:nul].decode("utf-8", "replace")
        off = nul + 1
        if t == 0x01:
            out[key] = struct.unpack_from("<d", data, off)[0]; off += 8
        elif t in (0x02, 0x0D, 0x0E):
            (n,) = struct.unpack_from("<i", data, off)
            out[key] = data[off + 4:off + 3 + n].decode("utf-8", "replace"); off += 4 + n
        elif t in (0x03, 0x04):
            (n,) = struct.unpack_from("<i", data, off); off += n
        elif t == 0x05:
            (n,) = struct.unpack_from("<i", data, off); off += 5 + n
        elif t == 0x07:
            off += 12
        elif t == 0x08:
            out[key] = data[off] != 0; off += 1
        elif t in (0x09, 0x11, 0x12):
            out[key] = struct.unpack_from("<q", data, off)[0]; off += 8
        elif t in (0x06, 0x0A, 0x7F, 0xFF):
            out[key] = None
        elif t == 0x10:
            out[key] = struct.unpack_from("<i", data, off)[0]; off += 4
        elif t == 0x13:
            off += 16
        elif t == 0x0B:  # regex: two cstrings
            off = data.index(b"\0", data.index(b"\0", off) + 1) + 1
        else:
            raise ProbeError(f"unexpected BSON type 0x{t:02x}")
    return out


def mongo_probe(host: str, port: int, *, timeout: float = 2.0) -> dict:
    """Send OP_MSG ``{hello: 1, $db: "admin"}`` and return the reply's top-level scalars.

    Raises ProbeError/OSError unless the server answers ``ok: 1``.
    """
    doc = _bson_encode({"hello": 1, "$db": "admin"})
    payload = struct.pack("<I", 0) + b"\x00" + doc  # flagBits, section kind 0 (body)
    request_id = int(time.monotonic() * 1000) & 0x7FFFFFFF
    msg = struct.pack("<iiii", 16 + len(payload), request_id, 0, 2013) + payload
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(msg)
        length, _, response_to, opcode = struct.unpack("<iiii", _recv_exact(sock, 16))
        body = _recv_exact(sock, length - 16)
    if opcode != 2013 or response_to != request_id:
        raise ProbeError(f"unexpected reply (opcode {opcode}, responseTo {response_to})")
    if body[4] != 0:
        raise ProbeError(f"unexpected OP_MSG section kind {body[4]}")
    reply = _bson_decode(body[5:])
    if reply.get("ok") != 1:
        raise ProbeError(f"hello answered {reply}")
    return reply


def http_probe(port: int, path: str = "/healthz", *, timeout: float = 2.0) -> int:
    """Status code of GET http://127.0.0.1:port/path (no proxies involved)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def _wait_ready(
    paths: StatePaths, name: str, pid: int, probe: Callable[[], object], timeout: float, tail_lines: int,
    *, deadline: float | None = None,
) -> None:
    """Poll ``probe`` until it passes; fail early if the process dies. ``deadline`` overrides ``timeout``."""
    if deadline is None:
        deadline = time.monotonic() + timeout
    last: object = "no answer"
    while True:
        if not _alive(pid):
            raise StackError(
                f"{name} exited during startup (pid {pid}); log {paths.log(name)}, last {tail_lines} lines:\n"
                + _tail(paths.log(name), tail_lines)
            )
        try:
            probe()
            return
        except (OSError, ProbeError, struct.error, ValueError, http.client.HTTPException) as e:
            last = e
        if time.monotonic() >= deadline:
            raise StackError(
                f"{name} did not become ready within {timeout:.0f} s ({last}); log {paths.log(name)}, "
                f"last {tail_lines} lines:\n" + _tail(paths.log(name), tail_lines)
            )
        time.sleep(0.2)


# --------------------------------------------------------------------------------------
# infrastructure


@dataclasses.dataclass(frozen=True)
class Infra:
    kafka_bootstrap: str
    mongodb_url: str
    kafka_external: bool
    mongodb_external: bool


@dataclasses.dataclass(frozen=True)
class Stack(Infra):
    service_urls: dict[str, str]
    api_token: str | None = None  # the admin token the services were started with


# secrets the services need, generated into the state directory when the environment has none
# (the services refuse to start without an API token; see shared/credentials.py)
GENERATED_SECRETS = {"DESKSTREAM_API_TOKEN": "api-token", "DESKSTREAM_CHAT_SECRET": "chat-secret",
                     "DESKSTREAM_SECRET_KEY": "secret-key"}


def state_secret(paths: "StatePaths", filename: str) -> tuple[str, bool]:
    """The secret kept in ``<state>/<filename>`` (mode 0600), made on first use; (value, made now)."""
    path = paths.root / filename
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value, False
    paths.root.mkdir(parents=True, exist_ok=True)
    value = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value, True


def api_token(state_dir: str | os.PathLike | None = None) -> str | None:
    """The admin token clients should use with this state directory's stack: the environment's, else
    the one ``up`` generated."""
    if os.environ.get("DESKSTREAM_API_TOKEN"):
        return os.environ["DESKSTREAM_API_TOKEN"]
    path = StatePaths.of(state_dir).root / GENERATED_SECRETS["DESKSTREAM_API_TOKEN"]
    return path.read_text().strip() or None if path.exists() else None


def _kafka_cluster_id() -> str:
    # Kafka's Uuid.randomUuid(): URL-safe base64 of 16 random bytes, never starting with '-'
    while True:
        s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not s.startswith("-"):
            return s


def _server_properties(paths: StatePaths, kafka_port: int, controller_port: int) -> str:
    k, c = kafka_port, controller_port
    return f"""\
# Generated by deploy/local/stackctl.py on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers={HOST}:{c}
listeners=PLAINTEXT://{HOST}:{k},CONTROLLER://{HOST}:{c}
advertised.listeners=PLAINTEXT://{HOST}:{k},CONTROLLER://{HOST}:{c}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={paths.kafka_data}
num.partitions=6
default.replication.factor=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# After a crash (SIGKILL) the restarted broker cannot register until the old
# registration's session expires (default 9 s); shorter makes restarts faster.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=6000
"""


def _kafka_java_cmd(art: Artefacts, paths: StatePaths, main: list[str], heap: bool = True) -> list[str]:
    opts = KAFKA_JVM_OPTS if heap else ["-Djava.awt.headless=true"]
    return [
        art.java or "java", *opts,
        f"-Dkafka.logs.dir={paths.log_dir}",
        f"-Dlog4j2.configurationFile={KAFKA_LOG4J}",
        "-cp", f"{art.kafka_libs}/*",
        *main,
    ]


def _format_kafka_storage(art: Artefacts, paths: StatePaths) -> None:
    if (paths.kafka_data / "meta.properties").is_file():
        return
    # No meta.properties: never formatted, or a format died half-way. Either way
    # there is no data to keep, and the tool wants a clean directory.
    shutil.rmtree(paths.kafka_data, ignore_errors=True)
    paths.kafka_data.mkdir(parents=True)
    cmd = _kafka_java_cmd(art, paths, ["kafka.tools.StorageTool", "format", "-t", _kafka_cluster_id(),
                                       "-c", str(paths.server_properties), "--standalone"], heap=False)
    log_path = paths.log("kafka")
    with open(log_path, "ab") as log:
        log.write(f"\n===== stackctl {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(cmd)}\n".encode())
        log.flush()
        try:
            rc = subprocess.run(cmd, cwd=paths.root, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, timeout=180).returncode
        except (OSError, subprocess.TimeoutExpired) as e:
            log.write(f"{e}\n".encode())
            rc = -1
    if rc != 0 or not (paths.kafka_data / "meta.properties").is_file():
        raise StackError(f"formatting the Kafka storage failed (exit {rc}); log {log_path}, last 20 lines:\n"
                         + _tail(log_path, 20))


def _check_same_addr(paths: StatePaths, name: str, pid: int, wanted: str) -> None:
    have = _recorded_addr(paths, name)
    if have and have != wanted:
        raise StackError(f"{name} from {paths.root} is already running on {have} (pid {pid}), not on {wanted}; "
                         "run 'stackctl.py down' first")


def _infra_up_locked(
    paths: StatePaths, *, kafka_port: int, controller_port: int, mongo_port: int, quiet: bool
) -> Infra:
    for port, opt in ((kafka_port, "--kafka-port"), (controller_port, "--controller-port"),
                      (mongo_port, "--mongo-port")):
        _check_port_value(port, opt)
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
        kpid = _running_pid(paths, "kafka")
        if kpid is not None:
            _check_same_addr(paths, "kafka", kpid, kaddr)
        else:
            _check_port_free(kafka_port, "kafka")
            _check_port_free(controller_port, "kafka")
    if not ext_mongo:
        mpid = _running_pid(paths, "ferretdb")
        if mpid is not None:
            _check_same_addr(paths, "ferretdb", mpid, maddr)
        else:
            _check_port_free(mongo_port, "ferretdb")

    # (name, pid, probe, timeout, state, address)
    waits: list[tuple[str, int, Callable[[], object], float, str, str]] = []
    if ext_kafka:
        _say(quiet, _line("kafka", "external", f"{ext_kafka} (KAFKA_BOOTSTRAP_SERVERS is set)"))
    else:
        state = "running"
        if kpid is None:
            _atomic_write(paths.server_properties, _server_properties(paths, kafka_port, controller_port))
            _format_kafka_storage(art, paths)
            cmd = _kafka_java_cmd(art, paths, ["kafka.Kafka", str(paths.server_properties)])
            kpid = _spawn(paths, "kafka", cmd, cwd=paths.root, env=dict(os.environ), addr=kaddr)
            state = "started"
        waits.append(("kafka", kpid, lambda: kafka_probe(HOST, kafka_port), KAFKA_READY_TIMEOUT, state, kaddr))

    if ext_mongo:
        _say(quiet, _line("ferretdb", "external", "MONGODB_URL is set, using that server"))
    else:
        state = "running"
        if mpid is None:
            cmd = [
                str(art.ferretdb_bin),
                "--handler=sqlite",
                ferretdb_sqlite_flag(paths),
                f"--listen-addr={maddr}",
                "--telemetry=disable",
                f"--state-dir={paths.ferretdb_state}",
                "--debug-addr=-",
                "--log-level=warn",
            ]
            mpid = _spawn(paths, "ferretdb", cmd, cwd=paths.root, env=dict(os.environ), addr=maddr)
            state = "started"
        waits.insert(0, ("ferretdb", mpid, lambda: mongo_probe(HOST, mongo_port), FERRETDB_READY_TIMEOUT,
                         state, maddr))

    t0 = time.monotonic()  # everything is launched; wait for each in turn (FerretDB is quicker)
    for name, pid, probe, timeout, state, addr in waits:
        _wait_ready(paths, name, pid, probe, timeout, 20)
        extra = f", ready after {time.monotonic() - t0:.1f} s" if state == "started" else ""
        _say(quiet, _line(name, state, f"{addr} (pid {pid}){extra}"))

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
    with _flock(paths.lock, "state", quiet):
        return _infra_up_locked(paths, kafka_port=kafka_port, controller_port=controller_port,
                                mongo_port=mongo_port, quiet=quiet)


# --------------------------------------------------------------------------------------
# services


def _parse_only(only: Iterable[str] | str | None) -> list[str]:
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


def _service_processes(paths: StatePaths) -> list[str]:
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
    names = _parse_only(only)
    count = instance_count(instances)
    for name in names:
        _check_port_value(service_port(name, port_offset), f"{name} port (offset {port_offset})")
        _check_port_value(instance_port(name, count, port_offset), f"{name} instance port (offset {port_offset})")
    paths = StatePaths.of(state_dir)
    with _flock(paths.lock, "state", quiet):
        infra = _infra_up_locked(paths, kafka_port=kafka_port, controller_port=controller_port,
                                 mongo_port=mongo_port, quiet=quiet)
        env = dict(os.environ)
        env.setdefault("KAFKA_BOOTSTRAP_SERVERS", infra.kafka_bootstrap)
        env.setdefault("MONGODB_URL", infra.mongodb_url)
        env.setdefault("PYTHONUNBUFFERED", "1")
        for var, filename in GENERATED_SECRETS.items():
            if not env.get(var) and not env.get("DESKSTREAM_INSECURE_DEV"):
                env[var], made = state_secret(paths, filename)
                if var == "DESKSTREAM_API_TOKEN":
                    where = paths.root / filename
                    _say(quiet, f"API token {'generated into' if made else 'from'} {where} "
                                f"(export DESKSTREAM_API_TOKEN=$(cat {where}) to call the agent and admin APIs)")

        plan: list[tuple[str, str, int, int, int | None]] = []
        for service in names:
            for n in range(1, count + 1):
                name = instance_name(service, n)
                port, own = service_port(service, port_offset), instance_port(service, n, port_offset)
                pid = _running_pid(paths, name)
                if pid is not None:
                    _check_same_addr(paths, name, pid, f"{HOST}:{own}")
                else:
                    _check_port_free(own, name)
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
            pid = _spawn(paths, name, [sys.executable, "-m", f"services.{service}"], cwd=REPO_ROOT, env=senv,
                         addr=f"{HOST}:{own}")
            started.append((name, pid, own, "started"))

        t0 = time.monotonic()
        deadline = t0 + timeout
        for name, pid, own, state in started:

            def healthy(port: int = own) -> None:
                code = http_probe(port)
                if code != 200:
                    raise ProbeError(f"GET /healthz answered {code}")

            _wait_ready(paths, name, pid, healthy, timeout, 30, deadline=deadline)
            extra = f", healthy after {time.monotonic() - t0:.1f} s" if state == "started" else ""
            _say(quiet, _line(name, state, f"http://{HOST}:{service_port(name, port_offset)} "
                                           f"(pid {pid}, own port {own}){extra}"))
        return Stack(
            kafka_bootstrap=infra.kafka_bootstrap,
            mongodb_url=infra.mongodb_url,
            kafka_external=infra.kafka_external,
            mongodb_external=infra.mongodb_external,
            service_urls={name: f"http://{HOST}:{service_port(name, port_offset)}" for name in names},
            api_token=env.get("DESKSTREAM_API_TOKEN") or None,
        )


# --------------------------------------------------------------------------------------
# down / status / clean / kill


def _down_locked(paths: StatePaths, services_only: bool, quiet: bool) -> None:
    if not paths.run_dir.is_dir():
        _say(quiet, "nothing is running")
        return
    had = [n for n in COMPONENTS if paths.pid(n).exists()]
    _stop_many(paths, _service_processes(paths), SERVICE_STOP_TIMEOUT, quiet)
    if not services_only:
        _stop_many(paths, ["kafka"], KAFKA_STOP_TIMEOUT, quiet)
        _stop_many(paths, ["ferretdb"], FERRETDB_STOP_TIMEOUT, quiet)
    if not had:
        _say(quiet, "nothing is running")


def down(
    *, state_dir: str | os.PathLike | None = None, services_only: bool = False, quiet: bool = False
) -> None:
    """Stop the services, then Kafka, then FerretDB (SIGTERM, then SIGKILL after a grace period)."""
    paths = StatePaths.of(state_dir)
    if not paths.root.is_dir():
        _say(quiet, "nothing is running")
        return
    with _flock(paths.lock, "state", quiet):
        _down_locked(paths, services_only, quiet)


def status(*, state_dir: str | os.PathLike | None = None, quiet: bool = False) -> dict[str, str]:
    """Print and return ``{component: state}``; state is running, external, unhealthy, crashed or stopped."""
    paths = StatePaths.of(state_dir)
    result: dict[str, str] = {}
    ext = {"kafka": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip(),
           "ferretdb": os.environ.get("MONGODB_URL", "").strip()}
    for name in [*INFRA, *(n for n in COMPONENTS if n not in INFRA and (paths.pid(n).exists() or n in SERVICES))]:
        pid = _running_pid(paths, name)
        addr = _recorded_addr(paths, name)
        if pid is None:
            if name in ext and ext[name]:
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
        _say(quiet, _line(name, state, detail))
    return result


def clean(*, state_dir: str | os.PathLike | None = None, quiet: bool = False) -> None:
    """``down``, then delete the state directory's data and logs (never the cache)."""
    paths = StatePaths.of(state_dir)
    if not paths.root.is_dir():
        _say(quiet, "nothing to clean")
        return
    with _flock(paths.lock, "state", quiet):
        _down_locked(paths, False, quiet)
        for p in (paths.kafka_data, paths.ferretdb_data, paths.ferretdb_state, paths.log_dir, paths.run_dir):
            shutil.rmtree(p, ignore_errors=True)
        paths.server_properties.unlink(missing_ok=True)
    _say(quiet, f"cleaned {paths.root}")


def kill(name: str, *, state_dir: str | os.PathLike | None = None, quiet: bool = False) -> int:
    """SIGKILL one component's process group (fault injection); its pid file stays, now stale."""
    if name not in COMPONENTS:
        raise StackError(f"unknown component {name!r} (choose from {', '.join(COMPONENTS)})")
    paths = StatePaths.of(state_dir)
    pid = _running_pid(paths, name)
    if pid is None:
        raise StackError(f"{name} is not running (state dir {paths.root})")
    _signal_group(pid, signal.SIGKILL)
    if _wait_gone([pid], 10.0):
        raise StackError(f"{name} (pid {pid}) survived SIGKILL")
    _say(quiet, _line(name, "killed", f"(pid {pid}, SIGKILL; pid file left in place)"))
    return pid


# --------------------------------------------------------------------------------------
# CLI


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stackctl.py",
        description="Provision, start, check and stop deskstream's local Kafka, FerretDB and services.",
        epilog="Cache: $DESKSTREAM_CACHE_DIR or ~/.cache/deskstream. Set KAFKA_BOOTSTRAP_SERVERS / "
        "MONGODB_URL to use external servers instead of the local ones.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def state_opt(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--state-dir", default=None,
                        help="runtime data, logs and pid files (default: <repo>/.state/local)")

    def infra_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--kafka-port", type=int, default=DEFAULT_KAFKA_PORT, help="Kafka client port (9092)")
        sp.add_argument("--controller-port", type=int, default=DEFAULT_CONTROLLER_PORT,
                        help="KRaft controller port (9093)")
        sp.add_argument("--mongo-port", type=int, default=DEFAULT_MONGO_PORT, help="FerretDB port (27017)")
        state_opt(sp)

    sub.add_parser("provision", help="fetch/build Kafka and FerretDB into the cache")
    sp = sub.add_parser("infra-up", help="start Kafka and FerretDB (unless running) and wait until ready")
    infra_opts(sp)
    sp = sub.add_parser("up", help="infra-up, then start the services and wait for their /healthz")
    infra_opts(sp)
    sp.add_argument("--port-offset", type=int, default=0, help="add N to every service's HTTP port")
    sp.add_argument("--only", default=None, metavar="NAME[,NAME]",
                    help=f"start only these services ({','.join(SERVICES)})")
    sp.add_argument("--instances", type=int, default=None,
                    help=f"processes per service (default $DESKSTREAM_INSTANCES or {DEFAULT_INSTANCES})")
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
            infra_up(state_dir=args.state_dir, kafka_port=args.kafka_port, controller_port=args.controller_port,
                     mongo_port=args.mongo_port)
            return 0
        if args.command == "up":
            up(state_dir=args.state_dir, kafka_port=args.kafka_port, controller_port=args.controller_port,
               mongo_port=args.mongo_port, port_offset=args.port_offset, only=args.only, instances=args.instances,
               timeout=args.timeout)
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


if __name__ == "__main__":
    sys.exit(main())
