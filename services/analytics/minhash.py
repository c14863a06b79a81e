"""MinHash signatures and a banded LSH index over them: which stored texts share enough character
shingles with a new one to be worth comparing. Pure (numpy only).

The algorithm is datasketch's (permutations `(a·h + b) mod p` of 32-bit shingle hashes, the
minimum per permutation; bands of rows, a candidate shares one band exactly). It is written here
because the package imports `scipy.integrate` at its top level for a parameter search we do not
need: ~50 MB resident and 0.4 s of CPU at every analytics start (bench: docs/benchmarks.md, ninth
session). The banding is chosen once, for `NUM_PERM` and the threshold the callers use: datasketch's
optimum for 64 permutations and a Jaccard of 0.35 is 21 bands of 3 rows."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

_PRIME = np.uint64((1 << 61) - 1)
_MAX = np.uint64((1 << 32) - 1)


class Hasher:
    """Signatures of `num_perm` values for sets of shingles; the same seed gives the same signatures."""

    def __init__(self, num_perm: int, seed: int) -> None:
        rng = np.random.RandomState(seed)
        self.a = rng.randint(1, int(_PRIME), size=num_perm, dtype=np.uint64)
        self.b = rng.randint(0, int(_PRIME), size=num_perm, dtype=np.uint64)

    def signature(self, grams: Iterable[str]) -> np.ndarray:
        hashes = np.fromiter(
            (int.from_bytes(hashlib.sha1(g.encode()).digest()[:4], "little") for g in grams), dtype=np.uint64
        )
        if not hashes.size:
            return np.full(self.a.size, _MAX, dtype=np.uint32)
        with np.errstate(over="ignore"):  # uint64 products wrap around, as in datasketch
            permuted = ((hashes[:, None] * self.a + self.b) % _PRIME) & _MAX
        return permuted.min(axis=0).astype(np.uint32)


def similarity(x: np.ndarray, y: np.ndarray) -> float:
    """The estimated Jaccard similarity of the two sets: the share of equal signature values."""
    return float(np.count_nonzero(x == y)) / x.size


class Index:
    """Signatures by key, banded: `candidates` are the keys sharing at least one whole band."""

    def __init__(self, bands: int, rows: int) -> None:
        self.bands, self.rows = bands, rows
        self._buckets: list[dict[bytes, set[str]]] = [{} for _ in range(bands)]
        self._signatures: dict[str, np.ndarray] = {}

    def _bands(self, signature: np.ndarray) -> list[bytes]:
        r = self.rows
        return [signature[i * r : (i + 1) * r].tobytes() for i in range(self.bands)]

    def insert(self, key: str, signature: np.ndarray) -> None:
        self.remove(key)
        self._signatures[key] = signature
        for bucket, band in zip(self._buckets, self._bands(signature), strict=True):
            bucket.setdefault(band, set()).add(key)

    def remove(self, key: str) -> None:
        signature = self._signatures.pop(key, None)
        if signature is None:
            return
        for bucket, band in zip(self._buckets, self._bands(signature), strict=True):
            members = bucket.get(band)
            if members is not None:
                members.discard(key)
                if not members:
                    del bucket[band]

    def get(self, key: str) -> np.ndarray | None:
        return self._signatures.get(key)

    def candidates(self, signature: np.ndarray) -> set[str]:
        found: set[str] = set()
        for bucket, band in zip(self._buckets, self._bands(signature), strict=True):
            found |= bucket.get(band, set())
        return found

    def __len__(self) -> int:
        return len(self._signatures)
