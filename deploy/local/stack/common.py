"""StackError and the small helpers every part of the stack uses: status lines, log tails, atomic
writes, advisory locks, port checks."""

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from .config import HOST


class StackError(Exception):
    """A failure worth one clear line to the user (no traceback)."""


def say(quiet: bool, line: str) -> None:
    if not quiet:
        print(line, flush=True)


def status_line(name: str, state: str, detail: str = "") -> str:
    return f"{name:<11} {state:<8} {detail}".rstrip()


def tail(path: Path, lines: int) -> str:
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


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def flock(path: Path, what: str, quiet: bool) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (created if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(quiet, f"waiting for another stackctl holding the {what} lock ({path}) ...")
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


def check_port_free(port: int, name: str) -> None:
    if _port_in_use(port):
        raise StackError(f"port {port} is already in use by another process (not a deskstream {name})")


def check_port_value(port: int, option: str) -> None:
    if not 0 < port < 65536:
        raise StackError(f"{option} {port} is not a valid TCP port")
