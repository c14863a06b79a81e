"""The memory report a process logs on SIGUSR2 (shared/telemetry.py): what an operator reads to find
what grows in a long run."""

from __future__ import annotations

import logging
import os
import re
import signal
import time
import tracemalloc

from shared.telemetry import configure_logging, log_memory, malloc_heap, resident_bytes


class Kept:
    pass


def test_the_report_names_the_types_that_hold_memory_and_the_c_heap(caplog):
    held = [Kept() for _ in range(50_000)]  # noqa: F841  # alive while the report is taken
    with caplog.at_level(logging.WARNING, logger="deskstream.memory"):
        log_memory(top=40)
    text = caplog.text
    assert re.search(r"Kept +50000 objects", text)
    in_use, free = malloc_heap()
    assert in_use > 0 and free >= 0
    assert "C heap (glibc)" in text and resident_bytes() > in_use / 10


def test_with_tracing_the_report_names_the_line_that_allocated(caplog):
    tracemalloc.start(4)
    try:
        blob = [bytes(2000) + bytes([i % 256]) for i in range(5_000)]  # noqa: F841  # ~10 MB from this line
        with caplog.at_level(logging.WARNING, logger="deskstream.memory"):
            log_memory(top=5)
    finally:
        tracemalloc.stop()
    assert "traced:" in caplog.text and "test_memory_report.py" in caplog.text


def test_sigusr2_asks_for_the_report(caplog):
    configure_logging("unit")
    logging.getLogger().handlers.append(caplog.handler)
    try:
        os.kill(os.getpid(), signal.SIGUSR2)
        time.sleep(0.1)  # the handler runs between bytecodes of the main thread
    finally:
        logging.getLogger().handlers.remove(caplog.handler)
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    assert "objects tracked by the collector" in caplog.text
