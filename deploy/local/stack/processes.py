"""The stack's daemons as processes: started in process groups of their own with pid and address
files, recognised by their command lines, signalled, and waited for."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .common import StackError, atomic_write, say, status_line
from .components import service_of
from .ferretdb import ferretdb_sqlite_flag
from .paths import StatePaths


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


def _state(stat: Path) -> str:
    try:
        return stat.read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return "X"


def alive(pid: int) -> bool:
    """True for a live process; a zombie counts as dead (and is reaped if it is our child). A killed
    process's main thread turns zombie before its other threads have exited, and those still hold its
    files (its listening sockets): it is gone only when every thread is."""
    state = _state(Path(f"/proc/{pid}/stat"))
    if state in ("Z", "X", "x"):
        try:
            threads = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            threads = []
        if any(_state(t / "stat") not in ("Z", "X", "x") for t in threads):
            return True
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


def _matcher(paths: StatePaths, name: str) -> Callable[[list[str]], bool]:
    if name == "kafka":
        props = str(paths.server_properties)
        return lambda argv: "kafka.Kafka" in argv and props in argv
    if name == "ferretdb":
        flag = ferretdb_sqlite_flag(paths)
        return lambda argv: bool(argv) and Path(argv[0]).name == "ferretdb" and flag in argv
    module = f"services.{service_of(name)}"
    return lambda argv: "-m" in argv and module in argv


def running_pid(paths: StatePaths, name: str) -> int | None:
    """Pid of our live ``name`` process, or None (no/stale pid file, reused pid)."""
    pid = _read_pid(paths.pid(name))
    if pid is None or not alive(pid):
        return None
    return pid if _matcher(paths, name)(_cmdline(pid)) else None


def recorded_addr(paths: StatePaths, name: str) -> str | None:
    try:
        return paths.addr(name).read_text().strip() or None
    except OSError:
        return None


def check_same_addr(paths: StatePaths, name: str, pid: int, wanted: str) -> None:
    have = recorded_addr(paths, name)
    if have and have != wanted:
        raise StackError(
            f"{name} from {paths.root} is already running on {have} (pid {pid}), not on {wanted}; "
            "run 'stackctl.py down' first"
        )


def spawn(paths: StatePaths, name: str, cmd: list[str], *, cwd: Path, env: dict[str, str], addr: str) -> int:
    log_path = paths.log(name)
    with open(log_path, "ab") as log:
        log.write(f"\n===== stackctl {time.strftime('%Y-%m-%d %H:%M:%S')}: starting {name}: {' '.join(cmd)}\n".encode())
        log.flush()
        try:
            proc = _DaemonPopen(
                cmd,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as e:
            raise StackError(f"cannot start {name}: {e}") from None
    _CHILDREN[proc.pid] = proc
    atomic_write(paths.pid(name), f"{proc.pid}\n")
    atomic_write(paths.addr(name), f"{addr}\n")
    return proc.pid


def signal_group(pid: int, sig: int) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError as e:
        raise StackError(f"cannot signal pid {pid}: {e}") from None


def wait_gone(pids: Iterable[int], timeout: float, gone_at: dict[int, float] | None = None) -> set[int]:
    """Wait until none of the process groups led by ``pids`` has live members; return the rest."""
    pending = set(pids)
    deadline = time.monotonic() + timeout
    while pending:
        for pid in list(pending):
            if not alive(pid) and not _group_members(pid):
                pending.discard(pid)
                if gone_at is not None:
                    gone_at[pid] = time.monotonic()
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    return pending


def stop_many(paths: StatePaths, names: list[str], timeout: float, quiet: bool) -> None:
    """SIGTERM the process groups of ``names``, SIGKILL what is left after ``timeout``."""
    targets: dict[str, int] = {}
    for name in names:
        pid = running_pid(paths, name)
        if pid is not None:
            targets[name] = pid
            signal_group(pid, signal.SIGTERM)
        elif paths.pid(name).exists():
            say(quiet, status_line(name, "stopped", "(stale pid file removed)"))
    t0 = time.monotonic()
    gone_at: dict[int, float] = {}
    left = wait_gone(targets.values(), timeout, gone_at)
    killed = set()
    for name, pid in targets.items():
        if pid in left:
            killed.add(name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    if left:
        wait_gone(left, 5.0)
    for name in names:
        paths.pid(name).unlink(missing_ok=True)
        paths.addr(name).unlink(missing_ok=True)
    for name, pid in targets.items():
        how = f"killed after {timeout:.0f} s" if name in killed else f"in {gone_at.get(pid, t0) - t0:.1f} s"
        say(quiet, status_line(name, "stopped", f"(pid {pid}, {how})"))
