"""The storage seam on the real MongoDB-wire server: with FerretDB's SQLite side indexes when the
server is the local test stack's FerretDB (as deployed), else plain queries."""
from __future__ import annotations

import pytest

from shared.mongo import SQLITE_DIR_ENV
from shared.storage import Storage
from tests.conftest import TEST_STATE


@pytest.fixture
async def storage(mongo, infra, monkeypatch):
    if infra.kind == "local":  # the services started by stackctl are told where FerretDB's files are
        monkeypatch.setenv(SQLITE_DIR_ENV, str(TEST_STATE / "ferretdb-data"))
    await mongo.detect()
    handle = Storage(mongo)
    handle.learn()
    return handle
