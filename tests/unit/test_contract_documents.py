"""The AsyncAPI and OpenAPI documents are generated from the code and committed; they must not drift."""
from docs.generate import render


def test_committed_documents_match_the_code():
    stale = [str(path.name) for path, text in render().items() if not path.exists() or path.read_text() != text]
    assert not stale, f"regenerate with `make docs`: {stale}"


def test_asyncapi_describes_the_public_topics():
    import json
    from docs.generate import DOCS
    doc = json.loads((DOCS / "asyncapi.json").read_text())
    addresses = {c["address"] for c in doc["channels"].values()}
    assert {"tickets.events", "sla.events", "deadletter"} <= addresses
