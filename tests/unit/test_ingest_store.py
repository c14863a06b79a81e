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


# ------------------------------------------------------------------ group commit (BlobBatcher)

import asyncio  # noqa: E402

from services.ingest.store import BlobBatcher, NotStored  # noqa: E402


class SlowCollection(Collection):
    """Each insert takes `delay` seconds; `refuse` ids fail as FerretDB reports a bad document."""

    def __init__(self, delay: float = 0.01, refuse: frozenset[str] = frozenset(), down: bool = False) -> None:
        super().__init__()
        self.delay, self.refuse, self.down, self.running, self.most_at_once = delay, refuse, down, 0, 0

    async def insert_many(self, docs, ordered):
        self.batches.append(([d["_id"] for d in docs], ordered))
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.running -= 1
        if self.down:
            raise ConnectionError("FerretDB went away")
        errors = [{"index": i, "code": 2, "errmsg": "bad"} for i, d in enumerate(docs) if d["_id"] in self.refuse]
        if errors:
            raise BulkWriteError({"writeErrors": errors, "writeConcernErrors": []})


def blobs(n: int, prefix: str = "b") -> list[Blob]:
    return [Blob(f"{prefix}{i}".encode(), "text/plain") for i in range(n)]


async def test_blobs_of_concurrent_requests_share_one_insert():
    collection = SlowCollection()
    batcher = BlobBatcher(BlobStore(Mongo(collection)), linger_s=0.005)
    requests = [blobs(2, f"r{r}-") for r in range(10)]
    await asyncio.gather(*(batcher.put_many(b) for b in requests))
    assert len(collection.batches) == 1
    assert sorted(collection.batches[0][0]) == sorted(b.sha256 for r in requests for b in r)
    assert collection.batches[0][1] is False  # unordered: one bad document does not stop the rest


async def test_an_insert_holds_at_most_100_documents():
    collection = SlowCollection()
    batcher = BlobBatcher(BlobStore(Mongo(collection)), linger_s=0.005, max_in_flight=4)
    await asyncio.gather(*(batcher.put_many(b) for b in [blobs(30, f"r{r}-") for r in range(8)]))
    sizes = [len(ids) for ids, _ in collection.batches]
    assert sum(sizes) == 240 and max(sizes) <= 100 and len(sizes) == 3


async def test_the_same_bytes_from_two_requests_are_inserted_once_and_both_return():
    collection = SlowCollection()
    batcher = BlobBatcher(BlobStore(Mongo(collection)), linger_s=0.005)
    await asyncio.gather(batcher.put_many(blobs(1)), batcher.put_many(blobs(1)))
    assert collection.batches == [([blobs(1)[0].sha256], False)]


async def test_a_refused_blob_fails_only_the_request_it_came_with():
    bad = Blob(b"bad", "text/plain")
    collection = SlowCollection(refuse=frozenset({bad.sha256}))
    batcher = BlobBatcher(BlobStore(Mongo(collection)), linger_s=0.005)
    outcomes = await asyncio.gather(batcher.put_many([*blobs(2, "x"), bad]), batcher.put_many(blobs(2, "y")),
                                    return_exceptions=True)
    assert isinstance(outcomes[0], NotStored) and outcomes[1] == set()
    assert len(collection.batches) == 1


async def test_bytes_kept_already_are_no_error_in_a_shared_insert():
    duplicate = {"writeErrors": [{"index": 0, "code": 11000}], "writeConcernErrors": []}
    batcher = BlobBatcher(BlobStore(Mongo(Collection(duplicate))), linger_s=0.001)
    await asyncio.gather(batcher.put_many([A]), batcher.put_many([B]))


async def test_a_failed_insert_fails_every_request_in_it():
    batcher = BlobBatcher(BlobStore(Mongo(SlowCollection(down=True))), linger_s=0.005)
    outcomes = await asyncio.gather(batcher.put_many(blobs(1, "a")), batcher.put_many(blobs(1, "b")),
                                    return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes)


async def test_a_lone_request_waits_only_the_linger_time():
    collection = SlowCollection(delay=0)
    batcher = BlobBatcher(BlobStore(Mongo(collection)), linger_s=0.02)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await batcher.put_many(blobs(1))
    assert 0.015 <= loop.time() - start < 0.5 and len(collection.batches) == 1


async def test_while_inserts_run_new_blobs_wait_and_go_together():
    collection = SlowCollection(delay=0.05)
    batcher = BlobBatcher(BlobStore(Mongo(collection)), linger_s=0.001, max_in_flight=1)
    first = asyncio.create_task(batcher.put_many(blobs(1, "first")))
    await asyncio.sleep(0.01)  # the first insert is running now
    await asyncio.gather(first, *(batcher.put_many(blobs(1, f"later{i}")) for i in range(20)))
    assert [len(ids) for ids, _ in collection.batches] == [1, 20] and collection.most_at_once == 1


async def test_a_request_that_goes_away_does_not_cancel_the_insert_others_wait_for():
    collection = SlowCollection(delay=0.02)
    batcher = BlobBatcher(BlobStore(Mongo(collection)), linger_s=0.001)
    gone = asyncio.create_task(batcher.put_many(blobs(1, "gone")))
    stays = asyncio.create_task(batcher.put_many(blobs(1, "stays")))
    await asyncio.sleep(0.01)
    gone.cancel()
    await stays
    assert sorted(collection.batches[0][0]) == sorted(b.sha256 for b in [*blobs(1, "gone"), *blobs(1, "stays")])


# ------------------------------------------------------------------ chat session claims beside the blobs

from services.ingest.chat_sessions import ChatSessions, Forbidden, StoredClaims  # noqa: E402
from shared.credentials import ChatTokens  # noqa: E402


class KeptCollection(SlowCollection):
    """Keeps what it is given, refusing an `_id` it holds already as the server does (11000)."""

    def __init__(self) -> None:
        super().__init__(delay=0.005)
        self.docs: dict[str, dict] = {}

    async def insert_many(self, docs, ordered):
        await super().insert_many(docs, ordered)
        errors = []
        for i, doc in enumerate(docs):
            if doc["_id"] in self.docs:
                errors.append({"index": i, "code": 11000, "errmsg": "E11000 duplicate key"})
            else:
                self.docs[doc["_id"]] = doc
        if errors:
            raise BulkWriteError({"writeErrors": errors, "writeConcernErrors": []})

    async def find_one(self, query, projection=None):
        return self.docs.get(query["_id"])


async def test_new_chat_sessions_share_the_group_commit_of_the_blobs():
    collection = KeptCollection()
    batcher = BlobBatcher(BlobStore(Mongo(collection)), linger_s=0.005)
    sessions = ChatSessions(ChatTokens(b"k" * 32), StoredClaims(batcher))
    tokens = await asyncio.gather(
        *(sessions.admit(f"s{i}", f"visitor{i}", f"m{i}", None) for i in range(20)), batcher.put_many(blobs(3))
    )
    assert len(collection.batches) == 1 and len(collection.batches[0][0]) == 23
    assert all(isinstance(t, str) and t for t in tokens[:20])


async def test_a_stored_claim_refuses_another_visitor_and_recognises_its_own_redelivery():
    collection = KeptCollection()
    batcher = BlobBatcher(BlobStore(Mongo(collection)), linger_s=0.001)
    sessions = ChatSessions(ChatTokens(b"k" * 32), StoredClaims(batcher))
    first = await sessions.admit("s1", "alice", "m1", None)
    assert await sessions.admit("s1", "alice", "m1", None) == first  # the opening message again
    with pytest.raises(Forbidden):
        await sessions.admit("s1", "mallory", "m9", None)
    # two visitors opening one session in the same batch: exactly one of them gets it
    outcomes = await asyncio.gather(
        sessions.admit("s2", "bob", "m2", None), sessions.admit("s2", "eve", "m3", None), return_exceptions=True
    )
    assert sum(isinstance(o, Forbidden) for o in outcomes) == 1
