"""Observability wired once: logging format, the per-service Prometheus registry."""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import sys
import threading
import tracemalloc
from collections import Counter

from prometheus_client import CollectorRegistry, Gauge, generate_latest

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every reconnect attempt at ERROR; one line per problem is enough
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # FastStream logs every record received and processed at INFO: too much for production
    logging.getLogger(f"deskstream.{service}.broker").setLevel(logging.WARNING)
    if threading.current_thread() is threading.main_thread():  # signals are for the main thread only
        signal.signal(signal.SIGUSR2, lambda *_: log_memory())


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

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
