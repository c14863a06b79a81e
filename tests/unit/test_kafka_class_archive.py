"""The local broker starts from its class archive once one was recorded for this Java (deploy/local/stack/kafka.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from deploy.local.stack.cache import Artefacts
from deploy.local.stack.kafka import class_archive, kafka_java_cmd
from deploy.local.stack.paths import StatePaths


def artefacts(tmp_path: Path) -> Artefacts:
    return Artefacts(tmp_path, "4.3.1", tmp_path / "kafka-4.3.1", tmp_path / "ferretdb", shutil.which("true") or "true")


def test_without_an_archive_the_broker_starts_as_before_and_with_one_maps_it(tmp_path: Path) -> None:
    art, paths = artefacts(tmp_path), StatePaths.of(tmp_path / "state")
    main = ["kafka.Kafka", "server.properties"]
    assert not any("SharedArchiveFile" in a for a in kafka_java_cmd(art, paths, main))
    archive = class_archive(art)
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"recorded")
    cmd = kafka_java_cmd(art, paths, main)
    assert f"-XX:SharedArchiveFile={archive}" in cmd
    assert cmd.index(f"-XX:SharedArchiveFile={archive}") < cmd.index("kafka.Kafka")  # a JVM option, not an argument
    # the storage tool (no heap options) and the recording run itself do not use it
    assert not any("SharedArchiveFile" in a for a in kafka_java_cmd(art, paths, main, heap=False))
    assert not any("SharedArchiveFile" in a for a in kafka_java_cmd(art, paths, main, archive=False))


def test_another_java_gets_an_archive_of_its_own(tmp_path: Path) -> None:
    art = artefacts(tmp_path)
    other = Artefacts(art.cache_dir, art.kafka_version, art.kafka_home, art.ferretdb_bin, shutil.which("false") or "false")
    assert class_archive(art) != class_archive(other)
    assert class_archive(art).parent == art.kafka_home
