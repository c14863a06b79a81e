"""MinHash signatures and the banded index recurring problems use (services/analytics/minhash.py)."""

from __future__ import annotations

import numpy as np

from services.analytics.minhash import Hasher, Index, similarity
from services.analytics.similar import shingles

HASHER = Hasher(128, seed=7)


def grams(text: str) -> set[str]:
    return set(shingles(text))


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b)


def test_the_estimate_is_near_the_true_jaccard_similarity() -> None:
    pairs = [
        ("my kettle is leaking water all over the counter", "the kettle leaks water over my counter"),
        ("the blender stopped working after two days", "my order never arrived and tracking is stuck"),
        ("refund for the broken lamp please", "refund for the broken lamp please"),
    ]
    for x, y in pairs:
        a, b = grams(x), grams(y)
        estimate = similarity(HASHER.signature(a), HASHER.signature(b))
        assert abs(estimate - jaccard(a, b)) < 0.15, (x, y, estimate, jaccard(a, b))
    assert similarity(HASHER.signature(grams("same words")), HASHER.signature(grams("same words"))) == 1.0


def test_the_same_seed_gives_the_same_signature_in_another_process() -> None:
    text = grams("the charger gets very hot")
    assert np.array_equal(Hasher(64, seed=19).signature(text), Hasher(64, seed=19).signature(text))
    assert not np.array_equal(Hasher(64, seed=19).signature(text), Hasher(64, seed=20).signature(text))


def test_the_index_finds_near_texts_not_unrelated_ones_and_forgets_removed_ones() -> None:
    hasher, index = Hasher(64, seed=19), Index(21, 3)
    stored = {
        "t1": "my kettle is leaking water all over the counter",
        "t2": "parcel never arrived, tracking stuck for a week",
        "t3": "the vacuum cleaner makes a loud grinding noise",
    }
    for key, text in stored.items():
        index.insert(key, hasher.signature(grams(text)))
    probe = hasher.signature(grams("my kettle is leaking water on the counter"))
    assert "t1" in index.candidates(probe)
    assert "t2" not in index.candidates(probe) and "t3" not in index.candidates(probe)
    index.remove("t1")
    assert "t1" not in index.candidates(probe) and len(index) == 2
    index.remove("t1")  # twice: nothing happens
    parcel = hasher.signature(grams(stored["t2"]))
    assert index.candidates(parcel) == {"t2"}  # the others are still indexed
    index.remove("t2")
    index.remove("t3")
    assert len(index) == 0 and index.candidates(parcel) == set()
