"""Observability wired once: logging format, the per-service Prometheus registry."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import signal
import sys
import threading
import time
import tracemalloc
import weakref
from collections import Counter
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Repeats(logging.Filter):
    """One line per problem, not per retry: while the broker is away every client of a process retries its
    connection every ~0.1 s and aiokafka logs each attempt (thousands of lines a second over a stack, written
    while the broker needs the CPU to start again). A message of the same logger and wording passes once per
    `every_s`; the next one that passes says how many were left out."""

    def __init__(self, prefixes: tuple[str, ...] = ("aiokafka",), every_s: float = 5.0) -> None:
        super().__init__()
        self.prefixes, self.every_s = prefixes, every_s
        self.last: dict[tuple[str, object], tuple[float, int]] = {}  # (logger, template) → (passed at, left out)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, record.msg)
        passed_at, left_out = self.last.get(key, (-self.every_s, 0))
        if record.created - passed_at < self.every_s:
            self.last[key] = (passed_at, left_out + 1)
            return False
        if len(self.last) > 1000:
            self.last.clear()
        self.last[key] = (record.created, 0)
        if left_out:
            record.msg = f"{record.msg} (and {left_out} more like it in {record.created - passed_at:.0f} s)"
        return True


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s"))
    handler.addFilter(Repeats())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every reconnect attempt at ERROR; one line per problem is enough
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # FastStream logs every record received and processed at INFO: too much for production
    logging.getLogger(f"deskstream.{service}.broker").setLevel(logging.WARNING)
    if threading.current_thread() is threading.main_thread():  # signals are for the main thread only
        signal.signal(signal.SIGUSR2, lambda *_: log_memory())
        signal.signal(signal.SIGUSR1, lambda *_: log_tasks())


def log_tasks() -> None:
    """What every asyncio task of the process awaits, logged on SIGUSR1 (`kill -USR1 <pid>`): for a
    process that is alive and healthy but does nothing (a consumer that stopped taking records)."""
    out = logging.getLogger("deskstream.tasks")
    try:
        tasks = asyncio.all_tasks()
    except RuntimeError:  # no loop running in this thread
        out.warning("no running event loop")
        return
    out.warning("%d asyncio tasks", len(tasks))
    for task in sorted(tasks, key=lambda t: t.get_name()):
        out.warning("  %s: %s", task.get_name(), " -> ".join(awaiting(task.get_coro())) or "(done)")


def awaiting(coro: Any) -> list[str]:
    """The chain of coroutines `coro` is suspended in, outermost first, down to what it waits for."""
    chain: list[str] = []
    while coro is not None and len(chain) < 40:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if frame is None:
            chain.append(type(coro).__qualname__)  # a future, a task, or a finished coroutine
            break
        chain.append(f"{frame.f_code.co_name} ({Path(frame.f_code.co_filename).name}:{frame.f_lineno})")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
    return chain


def log_memory(top: int = 25) -> None:
    """Where a process's memory is, logged on SIGUSR2 (`kill -USR2 <pid>`): the live objects by type,
    and, when the process runs with Python's PYTHONTRACEMALLOC=<frames>, the lines that allocated
    what is still held. For finding what grows in a long run; tracing slows the process."""
    out = logging.getLogger("deskstream.memory")
    census: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for obj in gc.get_objects():
        name = type(obj).__qualname__
        census[name] += 1
        sizes[name] += sys.getsizeof(obj)
    out.warning("objects tracked by the collector: %d", sum(census.values()))
    for name, size in sizes.most_common(top):
        out.warning("  %-40s %9d objects %10.1f MB (shallow)", name, census[name], size / 1e6)
    if (heap := malloc_heap()) is not None:
        in_use, free = heap
        out.warning(
            "C heap (glibc): %.1f MB in use, %.1f MB free inside it; resident %.1f MB",
            in_use / 1e6,
            free / 1e6,
            resident_bytes() / 1e6,
        )
    if tracemalloc.is_tracing():
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        stats = snapshot.statistics("traceback")
        out.warning("traced: %.1f MB in %d places", sum(s.size for s in stats) / 1e6, len(stats))
        for stat in stats[:top]:
            out.warning(
                "  %.1f MB in %d blocks, from:\n    %s",
                stat.size / 1e6,
                stat.count,
                "\n    ".join(stat.traceback.format()[-12:]),
            )


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def malloc_heap() -> tuple[int, int] | None:
    """glibc's count of the C heap: bytes in use and bytes free inside it (None off glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd, info.fordblks


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Telemetry:
    """One registry per service process; services add their own metrics to it."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        self.up = Gauge(
            "deskstream_service_ready", "1 when the service reaches Kafka and MongoDB", registry=self.registry
        )
        self.gc_seconds = Histogram(
            "deskstream_gc_seconds",
            "Python's garbage collections and how long each held the process, by generation",
            ["generation"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0),
        )
        self._gc_children = [self.gc_seconds.labels(str(g)) for g in range(3)]
        self._gc_started = 0.0
        method = weakref.WeakMethod(self._on_gc)  # a test process makes many; the dead ones do nothing

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if (bound := method()) is not None:
                bound(phase, info)

        gc.callbacks.append(on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        self._gc_children[info["generation"]].observe(time.perf_counter() - self._gc_started)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
