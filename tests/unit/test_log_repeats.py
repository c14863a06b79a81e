"""The log filter every service's handler has (shared/telemetry.py): a broker that is away makes aiokafka log
each reconnect attempt of each client; an operator reads one line per problem and how many were left out."""
from __future__ import annotations

import logging

from shared.telemetry import Repeats


def record(name: str, msg: str, at: float, *args: object) -> logging.LogRecord:
    r = logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)
    r.created = at
    return r


def test_a_repeated_client_error_passes_once_per_interval_and_then_says_how_many_were_left_out():
    repeats = Repeats(every_s=5.0)
    passed = [r for r in (record("aiokafka", "Unable connect to node with id %s: %s", 100.0 + i * 0.1, 1, "refused")
                          for i in range(60)) if repeats.filter(r)]
    # 6 s of attempts every 0.1 s: the first, then the one 5 s later with the 49 left out between
    assert len(passed) == 2
    assert passed[0].getMessage() == "Unable connect to node with id 1: refused"
    assert passed[1].getMessage() == "Unable connect to node with id 1: refused (and 49 more like it in 5 s)"


def test_other_messages_and_our_own_loggers_are_never_held_back():
    repeats = Repeats(every_s=5.0)
    assert repeats.filter(record("aiokafka", "Unable connect to node with id %s", 1.0, 1))
    assert repeats.filter(record("aiokafka.consumer.group_coordinator", "Heartbeat failed", 1.1))
    assert repeats.filter(record("aiokafka", "Unable to update metadata from %s", 1.2, [1]))
    assert all(repeats.filter(record("deskstream.tickets", "a batch will be processed again", 1.0 + i)) for i in range(5))
