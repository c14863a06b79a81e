"""The blob store's answer to what the server says: bytes already kept are no error, a failed write is."""
import pytest
from pymongo.errors import BulkWriteError

from services.ingest.domain import Blob
from services.ingest.store import BlobStore


class Collection:
    def __init__(self, error: dict | None = None) -> None:
        self.error, self.batches = error, []

    async def insert_many(self, docs, ordered):
        self.batches.append(([d["_id"] for d in docs], ordered))
        if self.error:
            raise BulkWriteError(self.error)


class Mongo:
    def __init__(self, collection: Collection) -> None:
        self.named = collection

    def collection(self, name: str) -> Collection:
        assert name == "ingest_blobs"
        return self.named


A, B = Blob(b"a", "text/plain", "a.txt"), Blob(b"b", "application/pdf")


async def test_a_message_s_blobs_go_in_one_unordered_insert_each_once():
    collection = Collection()
    await BlobStore(Mongo(collection)).put_many([A, B, A])
    assert collection.batches == [([A.sha256, B.sha256], False)]


async def test_nothing_to_keep_writes_nothing():
    collection = Collection()
    await BlobStore(Mongo(collection)).put_many([])
    assert collection.batches == []


async def test_bytes_already_kept_are_not_an_error():
    duplicate = {"writeErrors": [{"index": 0, "code": 11000, "errmsg": "E11000 duplicate key"}],
                 "writeConcernErrors": []}
    await BlobStore(Mongo(Collection(duplicate))).put_many([A, B])


@pytest.mark.parametrize("details", [
    {"writeErrors": [{"index": 0, "code": 11000}, {"index": 1, "code": 10334, "errmsg": "too large"}]},
    {"writeErrors": [], "writeConcernErrors": [{"code": 64, "errmsg": "waiting for replication timed out"}]},
])
async def test_a_write_that_failed_for_another_reason_is_raised(details):
    with pytest.raises(BulkWriteError):
        await BlobStore(Mongo(Collection(details))).put_many([A, B])
