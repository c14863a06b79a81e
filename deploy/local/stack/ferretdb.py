"""FerretDB (the MongoDB wire protocol on an embedded SQLite store): built from source with Go into the
cache, and its command line."""

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .cache import Artefacts, replace_dir, require_tool, run_step
from .common import StackError
from .config import FERRETDB_MODULE, FERRETDB_PACKAGE, FERRETDB_VERSION, INSTALL_HINTS, MIN_GO
from .paths import StatePaths


def check_go(go: str) -> None:
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


def ferretdb_ready_in(home: Path) -> bool:
    b = home / "bin" / "ferretdb"
    return b.is_file() and os.access(b, os.X_OK)


def build_ferretdb(cache: Path, final: Path, log_path: Path) -> None:
    go = require_tool("go")
    check_go(go)
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
            run_step(f"FerretDB build: {what}", [go, *args], cwd=src, log_path=log_path, env=env)

        step("go mod init", "mod", "init", "deskstream.local/ferretdb-build")
        step(
            f"fetching {FERRETDB_MODULE}@v{FERRETDB_VERSION}", "get", "-tool", f"{FERRETDB_PACKAGE}@v{FERRETDB_VERSION}"
        )
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
        replace_dir(dist, final, cache)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ferretdb_sqlite_flag(paths: StatePaths) -> str:
    """FerretDB's SQLite files, in WAL mode (FerretDB's default) with synchronous=NORMAL: a commit is
    not fsynced on its own but with the next checkpoint, so it survives FerretDB being killed, not
    the machine losing power — the durability of the local Kafka broker's default (it does not fsync
    per record either). With synchronous=FULL every insert command, and every statement of an update
    command, waited for its own fsync, one after another (SQLite has one writer)."""
    return f"--sqlite-url=file:{paths.ferretdb_data}/?_pragma=synchronous(normal)"


def ferretdb_cmd(art: Artefacts, paths: StatePaths, addr: str) -> list[str]:
    """FerretDB serving its SQLite files in the state directory on ``addr``."""
    return [
        str(art.ferretdb_bin),
        "--handler=sqlite",
        ferretdb_sqlite_flag(paths),
        f"--listen-addr={addr}",
        "--telemetry=disable",
        f"--state-dir={paths.ferretdb_state}",
        # FerretDB's metrics and Go profiles (pprof) on a port of your choice, for measuring it: off by default
        f"--debug-addr={os.environ.get('DESKSTREAM_FERRETDB_DEBUG_ADDR', '-')}",
        "--log-level=warn",
    ]
