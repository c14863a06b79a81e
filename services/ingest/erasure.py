"""Ingest's part of a purge or a customer's erasure: deleting the files it keeps (`ingest_blobs`:
the customers' attachments and original mails) once the tickets service says no ticket refers to
them any more.

The request comes on a topic of its own, `privacy.erasures` (one partition, a handful of records a
day), read by one ingest process at a time (its consumer group). Ingest's hot path is the webhooks:
following `tickets.events` for the few erasures on it would mean fetching every ticket change of
the whole system into every ingest process; this topic costs ingest nothing while nobody is erased.
Tickets decides which files may go (it holds the journal that says who refers to them); deleting
the same files twice changes nothing, so a redelivered request is harmless."""

from __future__ import annotations

import logging

from services.ingest.store import BlobStore
from shared import topics
from shared.events import EraseBlobs, EventType, PrivacyErasureRecord
from shared.runtime import Runtime
from shared.stream import EachRecord

log = logging.getLogger(__name__)


def follow_erasures(rt: Runtime, blobs: BlobStore) -> None:
    """Delete the files each request on `privacy.erasures` names."""

    async def erase(data: dict) -> None:
        request = EraseBlobs.model_validate(data)
        deleted = await blobs.delete([ref.removeprefix("blob:") for ref in request.blob_refs])
        log.info("%s: %d of %d kept file(s) deleted", request.reason, deleted, len(request.blob_refs))

    rt.stream(
        name="erase",
        group_id=topics.GROUP_INGEST_ERASURE,
        types={EventType.ERASE_BLOBS},
        processor=EachRecord({EventType.ERASE_BLOBS: erase}),
        inputs={topics.PRIVACY_ERASURES: PrivacyErasureRecord},
        description="Delete kept files (attachments, original mails) no ticket refers to any more, after a "
        "purge or a customer's erasure",
    )
