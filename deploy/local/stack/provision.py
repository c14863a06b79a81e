"""Filling the cache: the Kafka jars and the FerretDB binary, built in parallel when missing."""

import os
import shutil
import threading
import time
from collections.abc import Callable

from .cache import Artefacts, require_tool, resolve_cache_dir
from .common import StackError, flock, say
from .config import FERRETDB_VERSION
from .ferretdb import build_ferretdb, check_go, ferretdb_ready_in
from .kafka import (
    build_kafka,
    class_archive,
    find_java,
    kafka_ready_in,
    kafka_version,
    pom_digest,
    train_class_archive,
)


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
    cache = resolve_cache_dir(cache_dir)
    kversion = kafka_version()
    kdigest = pom_digest()
    khome = cache / f"kafka-{kversion}"
    fhome = cache / f"ferretdb-{FERRETDB_VERSION}"
    java = find_java() if kafka else None
    art = Artefacts(cache, kversion, khome, fhome / "bin" / "ferretdb", java)

    need_k = kafka and not kafka_ready_in(khome, kversion, kdigest)
    need_f = ferretdb and not ferretdb_ready_in(fhome)
    if not (need_k or need_f):
        if kafka and archive_wanted(art):
            with flock(cache / ".lock", "cache", quiet):
                make_class_archive(art, quiet)
        return art
    # tool checks before any waiting or downloading
    if need_k:
        require_tool("mvn")
    if need_f:
        check_go(require_tool("go"))

    cache.mkdir(parents=True, exist_ok=True)
    with flock(cache / ".lock", "cache", quiet):
        need_k = kafka and not kafka_ready_in(khome, kversion, kdigest)  # someone else may have finished
        need_f = ferretdb and not ferretdb_ready_in(fhome)
        for stale in cache.glob(".tmp-*"):  # leftovers of interrupted builds (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        logs = cache / "logs"
        logs.mkdir(exist_ok=True)
        jobs: list[tuple[str, Callable[[], None]]] = []
        if need_k:
            jobs.append(
                (
                    f"Kafka {kversion} jars (Maven)",
                    lambda: build_kafka(cache, kversion, kdigest, khome, logs / f"kafka-{kversion}.log"),
                )
            )
        if need_f:
            jobs.append(
                (
                    f"FerretDB {FERRETDB_VERSION} (Go build)",
                    lambda: build_ferretdb(cache, fhome, logs / f"ferretdb-{FERRETDB_VERSION}.log"),
                )
            )
        errors: list[BaseException] = []

        def run(label: str, fn: Callable[[], None]) -> None:
            t0 = time.monotonic()
            try:
                fn()
            except BaseException as e:  # reported below
                errors.append(e)
            else:
                say(quiet, f"provision: {label} ready in {time.monotonic() - t0:.0f} s")

        for label, _ in jobs:
            say(quiet, f"provision: fetching {label} into {cache} ...")
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
        if kafka and archive_wanted(art):
            make_class_archive(art, quiet)
    return art


def archive_wanted(art: Artefacts) -> bool:
    """No class archive for this Java yet, and no failed attempt at one."""
    archive = class_archive(art)
    return not archive.is_file() and not archive.with_suffix(".failed").exists()


def make_class_archive(art: Artefacts, quiet: bool) -> None:
    """Once per Java and Kafka version (under the cache lock): see kafka.train_class_archive."""
    if not archive_wanted(art):
        return
    t0 = time.monotonic()
    say(quiet, "provision: recording the Kafka broker's class archive (once, ~10 s) ...")
    logs = art.cache_dir / "logs"
    logs.mkdir(exist_ok=True)
    if train_class_archive(art, logs / f"kafka-{art.kafka_version}-cds.log"):
        say(quiet, f"provision: Kafka class archive ready in {time.monotonic() - t0:.0f} s")
    else:
        class_archive(art).with_suffix(".failed").touch()
        say(quiet, f"provision: no Kafka class archive (see {logs}); brokers start without one")
