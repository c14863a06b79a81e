"""The download cache outside the repository (``$DESKSTREAM_CACHE_DIR`` or ``~/.cache/deskstream``):
what it holds for a stack, and the helpers that build into it."""

import dataclasses
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .common import StackError
from .config import INSTALL_HINTS


def resolve_cache_dir(override: str | os.PathLike | None = None) -> Path:
    if override:
        return Path(override).expanduser().resolve()
    env = os.environ.get("DESKSTREAM_CACHE_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return Path.home() / ".cache" / "deskstream"


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


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise StackError(f"'{name}' is not installed; {INSTALL_HINTS[name]}")
    return path


def run_step(step: str, cmd: list[str], *, cwd: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
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


def replace_dir(src: Path, final: Path, cache: Path) -> None:
    """Move a finished build into place; an older build there is moved aside first."""
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=".tmp-old-", dir=cache)) / final.name
        os.rename(final, old)
    os.rename(src, final)  # atomic: a half-done build is never taken as done
    if old is not None:
        shutil.rmtree(old.parent, ignore_errors=True)
