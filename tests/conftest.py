"""Where the tests find real infrastructure.

In order: `KAFKA_BOOTSTRAP_SERVERS` / `MONGODB_URL` when both are set; testcontainers
(real Kafka and MongoDB images) when `DESKSTREAM_INFRA=containers` and a Docker engine
answers; otherwise the project's own local stack (deploy/local/stackctl.py) on test
ports, so it can run beside a `make run` stack."""
from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path

import pytest

from deploy.local import stack as stackctl

ROOT = Path(__file__).resolve().parent.parent
# DESKSTREAM_TEST_SLOT=n (1..5) runs the suite on a test stack of its own beside slot 0's (two people or
# two branches on one machine): its own state directory and ports
SLOT = int(os.environ.get("DESKSTREAM_TEST_SLOT") or 0)
TEST_STATE = ROOT / ".state" / ("test" if not SLOT else f"test-{SLOT}")
TEST_PORTS = {"kafka_port": 19092 + 10 * SLOT, "controller_port": 19093 + 10 * SLOT, "mongo_port": 27019 + 10 * SLOT}
SERVICE_PORT_OFFSET = 10000 - 1000 * SLOT  # services on 18001..18005 (slot 1: 17001..17005)


@dataclasses.dataclass(frozen=True)
class Infra:
    kafka_bootstrap: str
    mongodb_url: str
    kind: str


def _containers() -> Infra | None:
    try:
        import docker

        docker.from_env().ping()
    except Exception:
        return None
    from testcontainers.kafka import KafkaContainer
    from testcontainers.mongodb import MongoDbContainer

    kafka = KafkaContainer().with_kraft()
    mongo = MongoDbContainer("mongo:7")
    kafka.start()
    mongo.start()
    return Infra(kafka.get_bootstrap_server(), mongo.get_connection_url(), "containers")


@pytest.fixture(scope="session")
def infra() -> Infra:
    kafka, mongo = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("MONGODB_URL")
    if kafka and mongo:
        return Infra(kafka, mongo, "external")
    if os.environ.get("DESKSTREAM_INFRA") == "containers":
        found = _containers()
        if found is None:
            pytest.exit("DESKSTREAM_INFRA=containers but no Docker engine answers", returncode=2)
        os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["MONGODB_URL"] = found.kafka_bootstrap, found.mongodb_url
        return found
    stack = stackctl.infra_up(state_dir=TEST_STATE, quiet=True, **TEST_PORTS)
    return Infra(stack.kafka_bootstrap, stack.mongodb_url, "local")


@pytest.fixture
async def mongo(infra):
    """A connected `shared.mongo.Mongo` on a database of its own, dropped afterwards."""
    from shared.mongo import Mongo

    name = f"test_{uuid.uuid4().hex[:12]}"
    handle = Mongo(infra.mongodb_url, name, app_name="deskstream-tests")
    yield handle
    await handle.client.drop_database(name)
    handle.close()


def pytest_sessionfinish(session, exitstatus):
    """In CI (`CI=true`) a skipped test fails the run: a check that could not run has not passed.
    Outside CI a skip stays a skip, with the reason saying what to install."""
    if os.environ.get("CI", "").lower() not in ("true", "1") or exitstatus != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        session.exitstatus = 1
        if reporter:
            reporter.write_line(f"CI: {skipped} test(s) skipped; a check that cannot run fails CI "
                                "(see the skip reasons above: -rs)", red=True)
